"""The shop as a monolith: catalogue, orders and the HTML page in one Flask process.

Every call between the parts is a Python function call; the orders live in one SQLite file
(``SHOP_DB``, on the ``shop-data`` volume in compose.yaml).  The HTTP API is the same as the
microservice version's gateway, so the same client (bench/shop.py) drives both:

    GET  /api/catalogue              the products
    GET  /api/catalogue/<id>         one product
    POST /api/orders                 {"items": [{"product_id": "p1", "quantity": 2}], "customer": "..."}
    GET  /api/orders/<id>            one order
    GET  /api/orders                 the last 50 orders
    GET  /                           the page
    GET  /health                     200 "ok" when the store answers
"""

from __future__ import annotations

import json
import os
import sqlite3
import threading
import time
import uuid

from flask import Flask, abort, g, jsonify, render_template_string, request

DB_PATH = os.environ.get("SHOP_DB", "/data/shop.db")

PRODUCTS = [
    {"id": "p1", "name": "Espresso beans, 1 kg", "price_cents": 1890},
    {"id": "p2", "name": "Ceramic mug", "price_cents": 950},
    {"id": "p3", "name": "Hand grinder", "price_cents": 4500},
    {"id": "p4", "name": "Pour-over kettle", "price_cents": 3900},
    {"id": "p5", "name": "Paper filters (100)", "price_cents": 490},
]

app = Flask(__name__)
_init_lock = threading.Lock()
_initialised = False


# -- store ----------------------------------------------------------------------------------------
def db() -> sqlite3.Connection:
    if "db" not in g:
        conn = sqlite3.connect(DB_PATH, timeout=30)
        conn.row_factory = sqlite3.Row
        g.db = conn
        _init(conn)
    return g.db


@app.teardown_appcontext
def _close(_exc) -> None:
    conn = g.pop("db", None)
    if conn is not None:
        conn.close()


def _init(conn: sqlite3.Connection) -> None:
    global _initialised
    if _initialised:
        return
    with _init_lock:
        if _initialised:
            return
        conn.execute("PRAGMA journal_mode=WAL")
        conn.executescript("""
            CREATE TABLE IF NOT EXISTS products (id TEXT PRIMARY KEY, name TEXT, price_cents INTEGER);
            CREATE TABLE IF NOT EXISTS orders (id TEXT PRIMARY KEY, created REAL, customer TEXT,
                                               items TEXT, total_cents INTEGER);
        """)
        conn.executemany("INSERT OR IGNORE INTO products VALUES (:id, :name, :price_cents)", PRODUCTS)
        conn.commit()
        _initialised = True


# -- catalogue --------------------------------------------------------------------------------------
def list_products() -> list[dict]:
    return [dict(r) for r in db().execute("SELECT id, name, price_cents FROM products ORDER BY id")]


def get_product(pid: str) -> dict | None:
    row = db().execute("SELECT id, name, price_cents FROM products WHERE id=?", (pid,)).fetchone()
    return dict(row) if row else None


# -- orders -----------------------------------------------------------------------------------------
def place_order(data: dict) -> tuple[dict | None, str]:
    items = data.get("items") or []
    if not isinstance(items, list) or not items:
        return None, "an order needs items"
    lines, total = [], 0
    for item in items:
        product = get_product(str(item.get("product_id", "")))  # an in-process call
        qty = item.get("quantity", 1)
        if product is None:
            return None, f"no such product: {item.get('product_id')}"
        if not isinstance(qty, int) or qty < 1:
            return None, "quantity must be a positive integer"
        lines.append({"product_id": product["id"], "name": product["name"], "quantity": qty,
                      "price_cents": product["price_cents"]})
        total += qty * product["price_cents"]
    order = {"id": uuid.uuid4().hex[:12], "created": time.time(), "customer": str(data.get("customer", "")),
             "items": lines, "total_cents": total}
    conn = db()
    conn.execute("INSERT INTO orders VALUES (?, ?, ?, ?, ?)",
                 (order["id"], order["created"], order["customer"], json.dumps(lines), total))
    conn.commit()
    return order, ""


def _order(row: sqlite3.Row) -> dict:
    return {"id": row["id"], "created": row["created"], "customer": row["customer"],
            "items": json.loads(row["items"]), "total_cents": row["total_cents"]}


def get_order(oid: str) -> dict | None:
    row = db().execute("SELECT * FROM orders WHERE id=?", (oid,)).fetchone()
    return _order(row) if row else None


def recent_orders(n: int = 50) -> list[dict]:
    return [_order(r) for r in db().execute("SELECT * FROM orders ORDER BY created DESC LIMIT ?", (n,))]


# -- HTTP -------------------------------------------------------------------------------------------
@app.get("/health")
def health():
    db().execute("SELECT 1").fetchone()
    return "ok\n"


@app.get("/api/catalogue")
def api_catalogue():
    return jsonify(list_products())


@app.get("/api/catalogue/<pid>")
def api_product(pid: str):
    product = get_product(pid)
    if product is None:
        abort(404)
    return jsonify(product)


@app.post("/api/orders")
def api_place_order():
    order, error = place_order(request.get_json(force=True, silent=True) or {})
    if order is None:
        return jsonify({"error": error}), 400
    return jsonify(order), 201


@app.get("/api/orders/<oid>")
def api_order(oid: str):
    order = get_order(oid)
    if order is None:
        abort(404)
    return jsonify(order)


@app.get("/api/orders")
def api_orders():
    return jsonify(recent_orders())


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
<ul>{% for o in orders %}<li>{{ o.id }}: {% for i in o["items"] %}{{ i.quantity }} × {{ i.name }}{% if not loop.last %}, {% endif %}{% endfor %}
 — {{ "%.2f"|format(o.total_cents / 100) }} €</li>{% else %}<li>none yet</li>{% endfor %}</ul>
<p><small>served by {{ served_by }}</small></p>
</body></html>"""


@app.get("/")
def page():
    return render_template_string(PAGE, title="Shop (monolith)", products=list_products(),
                                  orders=recent_orders(10), served_by=os.uname().nodename)


@app.post("/order")
def page_order():
    try:
        qty = int(request.form.get("quantity", "1"))
    except ValueError:
        qty = 1
    order, error = place_order({"items": [{"product_id": request.form.get("product_id", ""), "quantity": qty}]})
    if order is None:
        return error, 400
    return "", 303, {"Location": "/"}


if __name__ == "__main__":
    app.run(host="0.0.0.0", port=int(os.environ.get("PORT", "8000")))
