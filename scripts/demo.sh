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
reg_pid=""
cleanup() {
  if [ -n "$reg_pid" ] && kill -0 "$reg_pid" 2>/dev/null; then kill "$reg_pid"; wait "$reg_pid" || true; fi
  rm -rf "$tmp"
}
trap cleanup EXIT
run dockyard tag busybox demo/busybox:1.0
run dockyard save -o "$tmp/busybox.tar" demo/busybox:1.0
run dockyard --root "$tmp/root" load -i "$tmp/busybox.tar"
run dockyard --root "$tmp/root" images
run dockyard rmi demo/busybox:1.0

step "Containers: run, detach, exec, logs, stop — daemonless, with runc and conmon"
run dockyard run --rm busybox sh -c 'echo "hello from $(hostname), pid $$"; grep CapEff /proc/self/status'
run dockyard run -d --name demo-web --health-cmd 'test -f /tmp/ready' --health-interval 1s busybox \
    sh -c 'touch /tmp/ready; i=0; while true; do i=$((i+1)); echo "tick $i"; sleep 1; done'
sleep 2
run dockyard ps
run dockyard exec demo-web sh -c 'echo "inside: $(cat /etc/hostname)"'
run dockyard logs --tail 2 demo-web
run dockyard rm -f demo-web

step "Volumes: what one container writes, another reads"
run dockyard volume create demo_shared
run dockyard run -d --name demo-writer -v demo_shared:/data busybox sh -c 'echo "written at $(date)" > /data/note; sleep 60'
sleep 1
run dockyard run --rm -v demo_shared:/data:ro busybox cat /data/note
run dockyard rm -f demo-writer
run dockyard volume inspect --format '{{.Name}} {{.Driver}} {{.Mountpoint}}' demo_shared
run dockyard volume rm demo_shared

bash scripts/demo-build.sh      # the builder: examples/flask-app, single- and multi-stage

step "A private registry with a password: push the Flask app, pull it into a fresh data root"
# Logins go to $DOCKER_CONFIG/config.json (else ~/.docker/config.json, shared with docker); the demo
# keeps its own so that it leaves yours alone.
export DOCKER_CONFIG="$tmp/docker"
port=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
reg="127.0.0.1:$port"
printf 'demo-s3cret' | run dockyard registry user --htpasswd "$tmp/htpasswd" add demo --password-stdin
printf '$ %s\n' "dockyard registry serve --root $tmp/registry --addr $reg --auth htpasswd --htpasswd $tmp/htpasswd &"
dockyard registry serve --root "$tmp/registry" --addr "$reg" --auth htpasswd --htpasswd "$tmp/htpasswd" \
    --no-access-log >"$tmp/registry.log" 2>&1 &
reg_pid=$!
for _ in $(seq 100); do
  (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null && break
  kill -0 "$reg_pid" 2>/dev/null || { cat "$tmp/registry.log"; exit 1; }
  sleep 0.1
done
run dockyard build -q -t "$reg/demo/flask-app:1" examples/flask-app   # every step from the build cache
if dockyard push -q "$reg/demo/flask-app:1" 2>"$tmp/push.err"; then
  echo "(pushed without a login?)"; exit 1
fi
echo "without a login: $(cat "$tmp/push.err")"
printf 'demo-s3cret' | run dockyard login -u demo --password-stdin "$reg"
run dockyard push "$reg/demo/flask-app:1"
run dockyard --root "$tmp/pulled" pull "$reg/demo/flask-app:1"
run dockyard --root "$tmp/pulled" images --digests
run dockyard --root "$tmp/pulled" run --rm "$reg/demo/flask-app:1" \
    python -c 'import flask; print("Flask", flask.__version__, "in an image pulled into a fresh data root")'
echo "same image ID on both sides: $(dockyard image inspect -f '{{.Id}}' "$reg/demo/flask-app:1") $(dockyard --root "$tmp/pulled" image inspect -f '{{.Id}}' "$reg/demo/flask-app:1")"
run dockyard logout "$reg"
run dockyard rmi "$reg/demo/flask-app:1"
printf '$ kill %s   # the registry\n' "$reg_pid"
kill "$reg_pid"
wait "$reg_pid" || true
reg_pid=""
unset DOCKER_CONFIG

step "The engine"
run dockyard info

bash scripts/demo-compose.sh    # ends with the shop as a monolith and as microservices
