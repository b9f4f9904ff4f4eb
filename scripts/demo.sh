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

step "The engine"
run dockyard info
