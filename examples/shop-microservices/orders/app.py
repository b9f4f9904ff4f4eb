"""The orders service: takes orders and keeps them in SQLite (``ORDERS_DB``, on the ``orders-data``
named volume, shared by every replica when the service is scaled).

Prices come from the catalogue service over HTTP (``CATALOGUE_URL``, by service name).

    POST /orders          {"items": [{"product_id": "p1", "quantity": 2}], "customer": "..."}
    GET  /orders/<id>     one order
    GET  /orders          the last 50 orders
    GET  /health          200 "ok" when the store answers
"""

from __future__ import annotations

import json
import os
import sqlite3
import threading
import time
import urllib.error
import urllib.request
import uuid

from flask import Flask, abort, g, jsonify, request

DB_PATH = os.environ.get("ORDERS_DB", "/data/orders.db")
CATALOGUE_URL = os.environ.get("CATALOGUE_URL", "http://catalogue:8000").rstrip("/")

app = Flask(__name__)
_init_lock = threading.Lock()
_initialised = False


def db() -> sqlite3.Connection:
    global _initialised
    if "db" not in g:
        g.db = sqlite3.connect(DB_PATH, timeout=30)
        g.db.row_factory = sqlite3.Row
        if not _initialised:
            with _init_lock:
                g.db.execute("PRAGMA journal_mode=WAL")
                g.db.execute("CREATE TABLE IF NOT EXISTS orders (id TEXT PRIMARY KEY, created REAL, "
                             "customer TEXT, items TEXT, total_cents INTEGER)")
                g.db.commit()
                _initialised = True
    return g.db


@app.teardown_appcontext
def _close(_exc) -> None:
    conn = g.pop("db", None)
    if conn is not None:
        conn.close()


def product(pid: str) -> dict | None:
    """One product from the catalogue service: an HTTP call where the monolith makes a function call."""
    try:
        with urllib.request.urlopen(f"{CATALOGUE_URL}/products/{pid}", timeout=10) as r:
            return json.loads(r.read())
    except urllib.error.HTTPError as exc:
        if exc.code == 404:
            return None
        raise


def _order(row: sqlite3.Row) -> dict:
    return {"id": row["id"], "created": row["created"], "customer": row["customer"],
            "items": json.loads(row["items"]), "total_cents": row["total_cents"]}


@app.get("/health")
def health():
    db().execute("SELECT 1").fetchone()
    return "ok\n"


@app.post("/orders")
def place_order():
    data = request.get_json(force=True, silent=True) or {}
    items = data.get("items") or []
    if not isinstance(items, list) or not items:
        return jsonify({"error": "an order needs items"}), 400
    lines, total = [], 0
    for item in items:
        p = product(str(item.get("product_id", "")))
        qty = item.get("quantity", 1)
        if p is None:
            return jsonify({"error": f"no such product: {item.get('product_id')}"}), 400
        if not isinstance(qty, int) or qty < 1:
            return jsonify({"error": "quantity must be a positive integer"}), 400
        lines.append({"product_id": p["id"], "name": p["name"], "quantity": qty, "price_cents": p["price_cents"]})
        total += qty * p["price_cents"]
    order = {"id": uuid.uuid4().hex[:12], "created": time.time(), "customer": str(data.get("customer", "")),
             "items": lines, "total_cents": total, "served_by": os.uname().nodename}
    conn = db()
    conn.execute("INSERT INTO orders VALUES (?, ?, ?, ?, ?)",
                 (order["id"], order["created"], order["customer"], json.dumps(lines), total))
    conn.commit()
    return jsonify(order), 201


@app.get("/orders/<oid>")
def get_order(oid: str):
    row = db().execute("SELECT * FROM orders WHERE id=?", (oid,)).fetchone()
    if row is None:
        abort(404)
    return jsonify(_order(row))


@app.get("/orders")
def recent():
    return jsonify([_order(r) for r in db().execute("SELECT * FROM orders ORDER BY created DESC LIMIT 50")])


if __name__ == "__main__":
    app.run(host="0.0.0.0", port=int(os.environ.get("PORT", "8000")))
