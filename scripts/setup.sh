#!/usr/bin/env bash
# Installs everything dockyard and its tests need on a Debian 12 machine, idempotently:
# Debian packages that are missing (apt-get), then a virtualenv in .venv with dockyard installed
# in editable mode.  A second run installs nothing.
set -euo pipefail
cd "$(dirname "$0")/.."

APT_PACKAGES=(
  ca-certificates python3 python3-venv   # the interpreter and venv on a stock Debian 12
  busybox-static                          # source of the busybox base image
  debootstrap                             # source of the debian/python base images
  skopeo podman docker-registry           # interoperability tests (and reference points of bench/)
  runc conmon catatonit tini               # OCI runtime, container monitor, --init
  netavark aardvark-dns iptables iproute2  # container networks, published ports, container DNS
  golang-github-containers-common         # seccomp.json: the base of the default seccomp profile
  util-linux e2fsprogs                    # mount, findmnt
  docker-compose                          # compose 1.29 (speaks the Engine API): compat tests of the API
)

missing=()
for p in "${APT_PACKAGES[@]}"; do
  if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed"; then
    missing+=("$p")
  fi
done
if [ ${#missing[@]} -gt 0 ]; then
  echo "setup: installing Debian packages: ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

# Debian's own interpreter: built with PGO and LTO, it starts dockyard (and every `dockyard run`)
# markedly faster than a self-built Python of the same version; PYTHON=... picks another.
PY=${PYTHON:-/usr/bin/python3}
PY_EXE=$("$PY" -c 'import os, sys; print(os.path.realpath(sys.executable))')
if [ -x .venv/bin/python ] && ! grep -qx "executable = $PY_EXE" .venv/pyvenv.cfg 2>/dev/null; then
  echo "setup: .venv was made with another interpreter; recreating it with $PY_EXE"
  rm -rf .venv
fi
if [ ! -x .venv/bin/python ]; then
  echo "setup: creating virtualenv .venv"
  "$PY" -m venv .venv
fi
stamp=.venv/.dockyard-installed
want=$(cat pyproject.toml | sha256sum | cut -d' ' -f1)
if [ ! -f "$stamp" ] || [ "$(cat "$stamp")" != "$want" ] || ! .venv/bin/python -c 'import dockyard' 2>/dev/null; then
  echo "setup: installing dockyard and its test dependencies into .venv"
  log=$(mktemp)
  ok=
  for attempt in 1 2 3; do  # the package index is reached over the network: retry a flaky download
    if .venv/bin/python -m pip install --disable-pip-version-check --upgrade pip >"$log" 2>&1 &&
       .venv/bin/python -m pip install --disable-pip-version-check -e '.[test]' >>"$log" 2>&1; then
      ok=1
      break
    fi
    echo "setup: pip failed (attempt $attempt), retrying" >&2
    sleep 5
  done
  if [ -z "$ok" ]; then
    grep -v "WARNING: Location" "$log" | tail -30 >&2
    rm -f "$log"
    exit 1
  fi
  rm -f "$log"
  echo "$want" > "$stamp"
fi

# Byte-compile dockyard once: every dockyard command (and conmon's exit callbacks) starts faster,
# also where PYTHONDONTWRITEBYTECODE is set.  Cheap when nothing changed.
.venv/bin/python -m compileall -q src/dockyard >/dev/null

# Further parts (each idempotent, each installs only what is missing): scripts/setup.d/*.sh
for part in scripts/setup.d/*.sh; do
  if [ -e "$part" ]; then
    bash "$part"
  fi
done
exit 0
