#!/usr/bin/env bash
# The shop twice: as a monolith and as microservices, each started with one command
# (`dockyard compose up -d --build` in its directory), an order made through each, then taken down.
# Called by scripts/demo.sh; runs on its own too.  Uses the default data root (/var/lib/dockyard)
# unless DOCKYARD_ROOT is set; bootstraps python:3.11-slim there when it is missing.
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH="$PWD/.venv/bin:$PATH"
repo=$PWD

step() { printf '\n\033[1m==> %s\033[0m\n' "$*"; }
run() { printf '$ %s\n' "$*"; "$@"; }
free_port() { python3 -c 'import socket; s = socket.socket(); s.bind(("0.0.0.0", 0)); print(s.getsockname()[1])'; }
# One order through the shop's public API: list the catalogue, order, read the order back.
order() {
  python3 - "$1" <<'PY'
import json, sys, time, urllib.request
base = f"http://127.0.0.1:{sys.argv[1]}"
def call(method, path, body=None):
    req = urllib.request.Request(base + path, method=method, data=json.dumps(body).encode() if body else None,
                                 headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=20) as r:
        return json.loads(r.read())
for _ in range(120):
    try:
        catalogue = call("GET", "/api/catalogue"); break
    except OSError:
        time.sleep(0.5)
print("catalogue:", ", ".join(f"{p['name']} ({p['price_cents'] / 100:.2f})" for p in catalogue))
order = call("POST", "/api/orders", {"items": [{"product_id": "p1", "quantity": 2}], "customer": "demo"})
back = call("GET", f"/api/orders/{order['id']}")
print(f"order {back['id']}: {back['items'][0]['quantity']} x {back['items'][0]['name']}, "
      f"total {back['total_cents'] / 100:.2f}" + (f" (taken by orders replica {order['served_by']})"
                                                   if "served_by" in order else ""))
PY
}

mono_port=$(free_port)
micro_port=$(free_port)
cleanup() {
  (cd "$repo/examples/shop-monolith" && SHOP_PORT=$mono_port dockyard compose down -v -t 2 >/dev/null 2>&1) || true
  (cd "$repo/examples/shop-microservices" && SHOP_PORT=$micro_port dockyard compose down -v -t 2 >/dev/null 2>&1) || true
}
trap cleanup EXIT

step "The base image of the shop: python:3.11-slim"
if dockyard image inspect python:3.11-slim >/dev/null 2>&1; then
  echo "(python:3.11-slim is already here)"
else
  run dockyard image bootstrap python:3.11-slim
fi

step "The shop as a monolith: one service, one image, one process"
cd "$repo/examples/shop-monolith"
export SHOP_PORT=$mono_port
run dockyard compose up -d --build --wait
run dockyard compose ps
order "$mono_port"
run dockyard compose logs --tail 3
echo "page: http://localhost:$mono_port/"

step "The shop as microservices: catalogue, orders and a gateway, talking HTTP by service name"
cd "$repo/examples/shop-microservices"
export SHOP_PORT=$micro_port
run dockyard compose up -d --build --wait
run dockyard compose ps
order "$micro_port"
step "Orders scaled to three replicas, all behind the name \"orders\""
run dockyard compose up -d --scale orders=3 --wait
run dockyard compose exec -T gateway python -c 'import socket; print(sorted({a[4][0] for a in socket.getaddrinfo("orders", 8000)}))'
for _ in 1 2 3; do order "$micro_port"; done
run dockyard compose logs --tail 2 orders

step "The same project as Kubernetes manifests, images served by a registry"
run dockyard kube generate --registry registry.local:5000 -o /tmp/shop-k8s.yaml
grep -E '^kind:|^  name:' /tmp/shop-k8s.yaml | paste -d' ' - - || true
grep -E '^ +image:' /tmp/shop-k8s.yaml | sort -u || true
rm -f /tmp/shop-k8s.yaml

step "Down: containers, networks and volumes of both projects"
run dockyard compose down -v
cd "$repo/examples/shop-monolith"
export SHOP_PORT=$mono_port
run dockyard compose down -v
trap - EXIT
