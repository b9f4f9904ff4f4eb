#!/usr/bin/env bash
# `make demo`: dockyard end to end, printing what it does.  Uses the default data root
# (/var/lib/dockyard) unless DOCKYARD_ROOT is set.
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH="$PWD/.venv/bin:$PATH"

step() { printf '\n\033[1m==> %s\033[0m\n' "$*"; }
run() { printf '$ %s\n' "$*"; "$@"; }

step "What is installed"
run dockyard version

step "A base image without Docker Hub: busybox from Debian's busybox-static"
if dockyard image inspect busybox >/dev/null 2>&1; then
  echo "(busybox:latest is already here)"
else
  run dockyard image bootstrap busybox
fi
run dockyard images busybox
run dockyard image inspect --format '{{.Id}} {{json .Config.Cmd}} {{index .Config.Labels "org.opencontainers.image.source"}}' busybox
run dockyard history busybox

step "Tag, save to a docker-archive, load into a fresh data root"
tmp=$(mktemp -d /var/tmp/dockyard-demo.XXXXXX)
trap 'rm -rf "$tmp"' EXIT
run dockyard tag busybox demo/busybox:1.0
run dockyard save -o "$tmp/busybox.tar" demo/busybox:1.0
run dockyard --root "$tmp/root" load -i "$tmp/busybox.tar"
run dockyard --root "$tmp/root" images
run dockyard rmi demo/busybox:1.0

step "The engine"
run dockyard info
