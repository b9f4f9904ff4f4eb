#!/usr/bin/env bash
# The builder: examples/flask-app built from Docker's getting-started Dockerfile and as a
# multi-stage build, then run with a published port.  Called by scripts/demo.sh; runs alone too
# (uses the default data root unless DOCKYARD_ROOT is set).  Leaves no container and no tag behind.
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH="$PWD/.venv/bin:$PATH"

step() { printf '\n\033[1m==> %s\033[0m\n' "$*"; }
run() { printf '$ %s\n' "$*"; "$@"; }

app=examples/flask-app
cleanup() {
  dockyard rm -f demo-flask demo-flask-slim >/dev/null 2>&1 || true
  dockyard rmi flask-app:latest flask-app:slim >/dev/null 2>&1 || true
}
trap cleanup EXIT
dockyard rm -f demo-flask demo-flask-slim >/dev/null 2>&1 || true  # left by an interrupted run

get() {  # GET a URL, retrying while the server starts (up to 30 s)
  for _ in $(seq 60); do
    if out=$(curl -fsS --max-time 2 "$1" 2>/dev/null); then printf '%s\n' "$out"; return 0; fi
    sleep 0.5
  done
  echo "no answer from $1" >&2
  return 1
}

step "The base image: python:3.11-slim, made from Debian's packages (trusts the host's local CAs)"
if dockyard image inspect python:3.11-slim >/dev/null 2>&1; then
  echo "(python:3.11-slim is already here)"
else
  run dockyard image bootstrap python:3.11-slim
fi

step "Build Docker's getting-started app: FROM, WORKDIR, COPY, RUN pip install, EXPOSE, ENV, CMD"
run cat "$app/Dockerfile"
run dockyard build --progress=plain -t flask-app "$app"

step "Build it again, nothing changed: every step comes from the cache, no container runs"
TIMEFORMAT='(the rebuild took %R s)'
printf '$ dockyard build -t flask-app %s\n' "$app"
time dockyard build -t flask-app "$app"

step "Run it with a published port and ask it"
run dockyard run -d --name demo-flask -p 5000:5000 flask-app
printf '$ curl http://127.0.0.1:5000/\n'
get http://127.0.0.1:5000/

step "The multi-stage variant: built in python:3.11-slim, shipped FROM scratch with only what runs"
run dockyard build --progress=plain -f "$app/Dockerfile.multistage" -t flask-app:slim "$app"
run dockyard run -d --name demo-flask-slim -p 5001:5000 flask-app:slim
printf '$ curl http://127.0.0.1:5001/\n'
get http://127.0.0.1:5001/

step "Sizes: the single-stage image carries Debian, pip and apt; the multi-stage one does not"
run dockyard images --format 'table {{.Repository}}:{{.Tag}}\t{{.ID}}\t{{.Size}}' flask-app
run dockyard images --format 'table {{.Repository}}:{{.Tag}}\t{{.Size}}' python:3.11-slim
run dockyard history flask-app
