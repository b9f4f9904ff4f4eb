#!/usr/bin/env python3
"""The shop as a monolith against the shop as microservices, on one machine: the same user flow
through each, requests per second and latency percentiles side by side.

    .venv/bin/python bench/shop.py [--clients 8] [--seconds 15] [--rounds 3] [--root DIR] [--keep]

Both examples (examples/shop-monolith, examples/shop-microservices) are built and started with
``dockyard compose up -d --build --wait`` in a temporary data root (python:3.11-slim from the test
image cache), each on its own free host port.  The flow one simulated user repeats:

    GET  /api/catalogue          list the catalogue
    POST /api/orders             order a product (monolith: a function call for the price and a
                                 SQLite insert; microservices: gateway -> orders -> catalogue over
                                 HTTP, then the insert)
    GET  /api/orders/<id>        read the order back

``--clients`` threads of this process repeat it on keep-alive connections for ``--seconds``.  The
targets take turns, round by round (monolith, microservices), after a short warm-up each; then
orders is scaled to 3 replicas (``up -d --scale orders=3``) and "microservices, orders x3" gets its
rounds.  Printed: flows/s and requests/s (median over the rounds), per-request latency p50/p95/p99
and the POST's p50 (all samples of all rounds), and the ratios to the monolith.

Everything started here is removed at the end (compose down -v, the data root), also on Ctrl-C.
Needs root.
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import random
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "tests"))


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("0.0.0.0", 0))
        return s.getsockname()[1]


class Dockyard:
    def __init__(self, root: Path) -> None:
        self.root = root

    def __call__(self, *args: str, env: dict | None = None, timeout: float = 1800, quiet: bool = True) -> str:
        p = subprocess.run([sys.executable, "-m", "dockyard", "--root", str(self.root), *args], text=True,
                           capture_output=True, timeout=timeout, env={**os.environ, **(env or {})})
        if p.returncode != 0:
            raise RuntimeError(f"dockyard {' '.join(args)} exited {p.returncode}:\n{p.stderr[-3000:]}")
        return p.stdout


class Target:
    def __init__(self, d: Dockyard, label: str, example: str, project: str) -> None:
        self.d, self.label, self.dir, self.project = d, label, REPO / "examples" / example, project
        self.port = free_port()

    def compose(self, *args: str, timeout: float = 1800) -> str:
        return self.d("compose", "--project-directory", str(self.dir), "-p", self.project, *args,
                      env={"SHOP_PORT": str(self.port)}, timeout=timeout)

    def up(self, *extra: str) -> None:
        self.compose("up", "-d", "--build", "--wait", "--wait-timeout", "600", *extra)
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            try:
                c = http.client.HTTPConnection("127.0.0.1", self.port, timeout=5)
                c.request("GET", "/api/catalogue")
                if c.getresponse().status == 200:
                    return
            except OSError:
                pass
            time.sleep(0.5)
        raise RuntimeError(f"{self.label}: no answer on port {self.port}")

    def down(self) -> None:
        try:
            self.compose("down", "-v", "-t", "2", timeout=300)
        except (RuntimeError, subprocess.TimeoutExpired) as exc:
            print(f"warning: {self.label}: {exc}", file=sys.stderr)


class Stats:
    def __init__(self) -> None:
        self.latencies: list[float] = []   # every request
        self.post: list[float] = []
        self.flows = 0
        self.requests = 0
        self.errors = 0
        self.lock = threading.Lock()


def user(port: int, stop: threading.Event, stats: Stats, record: bool) -> None:
    """One simulated user repeating the flow on a keep-alive connection."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    lat: list[float] = []
    post: list[float] = []
    flows = requests = errors = 0

    def call(method: str, path: str, body: bytes | None = None) -> tuple[int, bytes]:
        nonlocal conn
        for attempt in range(2):
            try:
                conn.request(method, path, body=body, headers={"Content-Type": "application/json"} if body else {})
                r = conn.getresponse()
                return r.status, r.read()
            except (OSError, http.client.HTTPException):
                conn.close()
                conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
                if attempt:
                    raise
        raise AssertionError("unreachable")

    while not stop.is_set():
        try:
            t0 = time.perf_counter()
            status, _ = call("GET", "/api/catalogue")
            t1 = time.perf_counter()
            body = json.dumps({"items": [{"product_id": random.choice(["p1", "p2", "p3", "p4", "p5"]),
                                          "quantity": random.randint(1, 3)}], "customer": "bench"}).encode()
            status2, data = call("POST", "/api/orders", body)
            t2 = time.perf_counter()
            order = json.loads(data)["id"] if status2 == 201 else ""
            status3, _ = call("GET", f"/api/orders/{order}")
            t3 = time.perf_counter()
        except (OSError, http.client.HTTPException, ValueError):
            errors += 1
            time.sleep(0.05)
            continue
        if (status, status2, status3) != (200, 201, 200):
            errors += 1
            continue
        lat += [t1 - t0, t2 - t1, t3 - t2]
        post.append(t2 - t1)
        flows += 1
        requests += 3
    conn.close()
    if record:
        with stats.lock:
            stats.latencies += lat
            stats.post += post
            stats.flows += flows
            stats.requests += requests
            stats.errors += errors


def drive(port: int, clients: int, seconds: float, stats: Stats | None) -> tuple[float, float]:
    """``clients`` users for ``seconds``; (flows/s, requests/s) of this run."""
    own = stats or Stats()
    before = (own.flows, own.requests)
    stop = threading.Event()
    threads = [threading.Thread(target=user, args=(port, stop, own, True), daemon=True) for _ in range(clients)]
    t0 = time.perf_counter()
    for t in threads:
        t.start()
    time.sleep(seconds)
    stop.set()
    for t in threads:
        t.join(60)
    elapsed = time.perf_counter() - t0
    return (own.flows - before[0]) / elapsed, (own.requests - before[1]) / elapsed


def pct(values: list[float], p: float) -> float:
    if not values:
        return float("nan")
    s = sorted(values)
    return s[min(len(s) - 1, int(round(p / 100 * (len(s) - 1))))] * 1000


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--clients", type=int, default=8)
    ap.add_argument("--seconds", type=float, default=15)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--warmup", type=float, default=3)
    ap.add_argument("--root", default=None, help="data root to use (default: a temporary one)")
    ap.add_argument("--keep", action="store_true", help="leave the projects running")
    args = ap.parse_args()

    from conftest import cached_image_archive, cleanup_root

    tmp = None
    if args.root:
        root = Path(args.root)
    else:
        tmp = Path(tempfile.mkdtemp(prefix="dockyard-bench-shop-", dir="/var/tmp"))
        root = tmp / "root"
    d = Dockyard(root)
    mono = Target(d, "monolith", "shop-monolith", "bench-mono")
    micro = Target(d, "microservices", "shop-microservices", "bench-micro")

    def cleanup(*_a) -> None:
        if not args.keep:
            for t in (mono, micro):
                t.down()
            if tmp is not None:
                cleanup_root(tmp)
                shutil.rmtree(tmp, ignore_errors=True)

    def on_term(*_a) -> None:
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, on_term)
    try:
        print("loading python:3.11-slim and building both examples ...", file=sys.stderr)
        d("load", "-i", str(cached_image_archive("python:3.11-slim")))
        t0 = time.monotonic()
        mono.up()
        t1 = time.monotonic()
        micro.up()
        t2 = time.monotonic()
        print(f"up --build --wait: monolith {t1 - t0:.1f}s, microservices {t2 - t1:.1f}s", file=sys.stderr)
        results: dict[str, tuple[Stats, list[tuple[float, float]]]] = {}
        labels = {"monolith": mono, "microservices": micro}
        for label, t in labels.items():
            drive(t.port, args.clients, args.warmup, None)
            results[label] = (Stats(), [])
        for r in range(args.rounds):
            for label, t in labels.items():
                st, runs = results[label]
                runs.append(drive(t.port, args.clients, args.seconds, st))
                print(f"round {r + 1}: {label}: {runs[-1][0]:.1f} flows/s", file=sys.stderr)
        micro.compose("up", "-d", "--scale", "orders=3", "--wait", "--wait-timeout", "600")
        label3 = "microservices, orders x3"
        drive(micro.port, args.clients, args.warmup, None)
        results[label3] = (Stats(), [])
        for r in range(args.rounds):
            st, runs = results[label3]
            runs.append(drive(micro.port, args.clients, args.seconds, st))
            print(f"round {r + 1}: {label3}: {runs[-1][0]:.1f} flows/s", file=sys.stderr)
    except KeyboardInterrupt:
        cleanup()
        return 130
    except BaseException:
        cleanup()
        raise
    cleanup()

    base = statistics.median(f for f, _ in results["monolith"][1])
    base_p50 = pct(results["monolith"][0].latencies, 50)
    print(f"\nshop user flow (GET catalogue, POST order, GET order), {args.clients} clients, "
          f"{args.rounds} x {args.seconds:g}s per target, {os.cpu_count()} CPUs")
    head = (f"{'target':<26}{'flows/s':>9}{'req/s':>9}{'p50 ms':>9}{'p95 ms':>9}{'p99 ms':>9}"
            f"{'POST p50':>10}{'errors':>8}{'vs mono':>9}")
    print(head)
    print("-" * len(head))
    for label, (st, runs) in results.items():
        flows = statistics.median(f for f, _ in runs)
        reqs = statistics.median(q for _, q in runs)
        print(f"{label:<26}{flows:>9.1f}{reqs:>9.1f}{pct(st.latencies, 50):>9.1f}{pct(st.latencies, 95):>9.1f}"
              f"{pct(st.latencies, 99):>9.1f}{pct(st.post, 50):>10.1f}{st.errors:>8}{flows / base:>8.2f}x")
    print(f"(latency per request, all samples; 'vs mono' = throughput ratio; monolith p50 {base_p50:.1f} ms)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
