"""The catalogue service: what the shop sells.  Read-only, kept in memory.

    GET /products         the products
    GET /products/<id>    one product (404 if unknown)
    GET /health           200 "ok"
"""

from __future__ import annotations

import os

from flask import Flask, abort, jsonify

PRODUCTS = [
    {"id": "p1", "name": "Espresso beans, 1 kg", "price_cents": 1890},
    {"id": "p2", "name": "Ceramic mug", "price_cents": 950},
    {"id": "p3", "name": "Hand grinder", "price_cents": 4500},
    {"id": "p4", "name": "Pour-over kettle", "price_cents": 3900},
    {"id": "p5", "name": "Paper filters (100)", "price_cents": 490},
]
BY_ID = {p["id"]: p for p in PRODUCTS}

app = Flask(__name__)


@app.get("/health")
def health():
    return "ok\n"


@app.get("/products")
def products():
    return jsonify(PRODUCTS)


@app.get("/products/<pid>")
def product(pid: str):
    if pid not in BY_ID:
        abort(404)
    return jsonify(BY_ID[pid])


if __name__ == "__main__":
    app.run(host="0.0.0.0", port=int(os.environ.get("PORT", "8000")))
