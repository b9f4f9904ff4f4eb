"""The gateway: the shop's front door.  Serves the page and the public API (the same API as the
monolith's) by calling the catalogue and orders services over HTTP, by service name.

When a service is scaled (``dockyard compose up -d --scale orders=3``) its name resolves to every
replica's address; the gateway resolves it again every few seconds and spreads requests over all
of them (client-side load balancing: the container DNS does not pick for us).

    GET  /api/catalogue, /api/catalogue/<id>       -> catalogue
    POST /api/orders, GET /api/orders[/<id>]        -> orders
    GET  /                                          the page
    GET  /health                                    200 "ok"
"""

from __future__ import annotations

import http.client
import json
import os
import random
import socket
import threading
import time
from urllib.parse import urlsplit

from flask import Flask, Response, render_template_string, request

CATALOGUE_URL = os.environ.get("CATALOGUE_URL", "http://catalogue:8000")
ORDERS_URL = os.environ.get("ORDERS_URL", "http://orders:8000")

app = Flask(__name__)
_resolved: dict[str, tuple[float, list[str]]] = {}
_lock = threading.Lock()


def _addresses(host: str, port: int) -> list[str]:
    now = time.monotonic()
    with _lock:
        hit = _resolved.get(host)
        if hit and now - hit[0] < 3:
            return hit[1]
    addrs = sorted({ai[4][0] for ai in socket.getaddrinfo(host, port, socket.AF_INET, socket.SOCK_STREAM)})
    with _lock:
        _resolved[host] = (now, addrs)
    return addrs


def call(base: str, method: str, path: str, body: bytes | None = None) -> tuple[int, bytes, str]:
    """One HTTP request to a service replica picked at random; (status, body, content type)."""
    u = urlsplit(base)
    port = u.port or 80
    addr = random.choice(_addresses(u.hostname or "", port))
    conn = http.client.HTTPConnection(addr, port, timeout=15)
    try:
        headers = {"Host": u.netloc}
        if body is not None:
            headers["Content-Type"] = "application/json"
        conn.request(method, path, body=body, headers=headers)
        r = conn.getresponse()
        return r.status, r.read(), r.getheader("Content-Type", "application/json")
    finally:
        conn.close()


def relay(base: str, method: str, path: str, body: bytes | None = None) -> Response:
    status, data, ctype = call(base, method, path, body)
    return Response(data, status=status, content_type=ctype)


@app.get("/health")
def health():
    return "ok\n"


@app.get("/api/catalogue")
def catalogue():
    return relay(CATALOGUE_URL, "GET", "/products")


@app.get("/api/catalogue/<pid>")
def product(pid: str):
    return relay(CATALOGUE_URL, "GET", f"/products/{pid}")


@app.post("/api/orders")
def place_order():
    return relay(ORDERS_URL, "POST", "/orders", request.get_data())


@app.get("/api/orders/<oid>")
def order(oid: str):
    return relay(ORDERS_URL, "GET", f"/orders/{oid}")


@app.get("/api/orders")
def orders():
    return relay(ORDERS_URL, "GET", "/orders")


PAGE = """<!doctype html>
<html><head><meta charset="utf-8"><title>{{ title }}</title>
<style>body{font-family:sans-serif;max-width:40em;margin:2em auto}td,th{padding:.2em .8em;text-align:left}</style>
</head><body>
<h1>{{ title }}</h1>
<h2>Catalogue</h2>
<table><tr><th>Product</th><th>Price</th><th></th></tr>
{% for p in products %}<tr><td>{{ p.name }}</td><td>{{ "%.2f"|format(p.price_cents / 100) }} €</td>
<td><form method="post" action="/order"><input type="hidden" name="product_id" value="{{ p.id }}">
<input type="number" name="quantity" value="1" min="1" style="width:4em"><button>Order</button></form></td></tr>
{% endfor %}</table>
<h2>Recent orders</h2>
<ul>{% for o in orders[:10] %}<li>{{ o.id }}: {% for i in o["items"] %}{{ i.quantity }} × {{ i.name }}{% if not loop.last %}, {% endif %}{% endfor %}
 — {{ "%.2f"|format(o.total_cents / 100) }} €</li>{% else %}<li>none yet</li>{% endfor %}</ul>
<p><small>gateway {{ served_by }}; orders replicas: {{ replicas|join(", ") }}</small></p>
</body></html>"""


@app.get("/")
def page():
    _, products, _ = call(CATALOGUE_URL, "GET", "/products")
    _, recent, _ = call(ORDERS_URL, "GET", "/orders")
    u = urlsplit(ORDERS_URL)
    return render_template_string(PAGE, title="Shop (microservices)", products=json.loads(products),
                                  orders=json.loads(recent), served_by=os.uname().nodename,
                                  replicas=_addresses(u.hostname or "", u.port or 80))


@app.post("/order")
def page_order():
    try:
        qty = int(request.form.get("quantity", "1"))
    except ValueError:
        qty = 1
    body = json.dumps({"items": [{"product_id": request.form.get("product_id", ""), "quantity": qty}]})
    status, data, _ = call(ORDERS_URL, "POST", "/orders", body.encode())
    if status != 201:
        return Response(data, status=status, content_type="application/json")
    return "", 303, {"Location": "/"}


if __name__ == "__main__":
    app.run(host="0.0.0.0", port=int(os.environ.get("PORT", "8000")))
