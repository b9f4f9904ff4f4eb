#!/usr/bin/env python3
"""Published ports: a 1 GiB HTTP download through dockyard's published port against the same download
over loopback on the host, and connection set-up latency -- in one run, interleaved.

    .venv/bin/python bench/networks.py [--size-mib 1024] [--runs 11] [--conns 500] [--no-podman]

One file (``--size-mib`` of zeros, written once and kept in the page cache) is served by the same
program everywhere: busybox httpd (the host's busybox-static, which is also what the busybox image is
bootstrapped from), bind-mounted read-only into the containers. The targets:

  host loopback          /bin/busybox httpd run directly on the host, on 127.0.0.1 (the baseline)
  dockyard 127.0.0.1     ``dockyard run -d -p 80 busybox httpd``, through the published port (DNAT)
  dockyard HOST_ADDR     the same published port on the host's own address
  dockyard bridge        the container's own address, port 80 (over the bridge, no NAT; a reference)
  podman 127.0.0.1 / HOST_ADDR   the same container under podman (runc, netavark) when podman can run
                         here; skipped with the reason otherwise

Throughput: the client is this process (one socket, 1 MiB recv_into), timing connect to last byte;
each round downloads once from every target, in turn; medians and min-max over ``--runs`` rounds.
Latency: ``--conns`` cycles per target of connect + ``GET /small`` + read to EOF + close, visiting the
targets round-robin; median and p99 of the connect() alone and of the whole cycle.

Traffic goes only to loopback, the host's own address and the containers started here. Everything
started here (containers, the host server, the temporary data root) is removed at the end, also on
Ctrl-C or SIGTERM. Needs root.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "tests"))

PODMAN_IMAGE = "docker.io/library/busybox:latest"
HTTPD = "exec httpd -f -p 80 -h /www"
BUF = memoryview(bytearray(1 << 20))


def http_get(host: str, port: int, path: str, timeout: float = 60) -> tuple[int, float, float]:
    """GET ``path`` with HTTP/1.0; returns (body bytes, seconds to connect, seconds in all).

    Raises RuntimeError on anything but a 200 whose body has the announced length."""
    t0 = time.perf_counter()
    with socket.create_connection((host, port), timeout=timeout) as s:
        t1 = time.perf_counter()
        s.sendall(f"GET {path} HTTP/1.0\r\nHost: {host}\r\n\r\n".encode())
        head = b""
        while b"\r\n\r\n" not in head:
            n = s.recv_into(BUF)
            if not n:
                raise RuntimeError(f"{host}:{port}{path}: connection closed in the headers")
            head += BUF[:n].tobytes()
        head, _, rest = head.partition(b"\r\n\r\n")
        lines = head.decode("latin-1").split("\r\n")
        if lines[0].split()[1] != "200":
            raise RuntimeError(f"{host}:{port}{path}: {lines[0]}")
        length = next((int(v) for k, _, v in (ln.partition(":") for ln in lines[1:])
                       if k.lower() == "content-length"), -1)
        got = len(rest)
        while n := s.recv_into(BUF):
            got += n
    t2 = time.perf_counter()
    if got != length:
        raise RuntimeError(f"{host}:{port}{path}: {got} bytes, announced {length}")
    return got, t1 - t0, t2 - t0


def wait_ready(host: str, port: int, what: str, timeout: float = 15) -> None:
    deadline = time.monotonic() + timeout
    while True:
        try:
            http_get(host, port, "/small", timeout=2)
            return
        except (OSError, RuntimeError) as exc:
            if time.monotonic() > deadline:
                raise RuntimeError(f"{what} ({host}:{port}) not answering: {exc}") from exc
            time.sleep(0.1)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def host_address() -> str | None:
    """The host's first global IPv4 address (traffic to it from the host stays on this machine)."""
    out = subprocess.run(["ip", "-j", "-4", "addr", "show", "scope", "global"], capture_output=True, text=True)
    for link in json.loads(out.stdout or "[]"):
        for a in link.get("addr_info", []):
            if a.get("family") == "inet" and a.get("local"):
                return a["local"]
    return None


def published(out: str) -> int:
    """The host port from `dockyard port` / `podman port` output (``80/tcp -> 0.0.0.0:32768``)."""
    for line in out.splitlines():
        if "->" in line:
            return int(line.rsplit(":", 1)[1])
        if line.strip():
            return int(line.strip().rsplit(":", 1)[1])
    raise RuntimeError(f"no published port in {out!r}")


def pct(xs: list[float], p: float) -> float:
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(round(p / 100 * (len(xs) - 1))))]


def fmt_us(s: float) -> str:
    return f"{s * 1e6:7.0f} µs" if s < 0.01 else f"{s * 1e3:7.1f} ms"


def check(cmd: list[str], **kw) -> str:
    p = subprocess.run(cmd, capture_output=True, text=True, timeout=120, **kw)
    if p.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} exited {p.returncode}: {(p.stderr or p.stdout).strip()[-500:]}")
    return p.stdout


def on_sigterm(signum, frame) -> None:
    raise KeyboardInterrupt


def main() -> None:
    from conftest import cached_image_archive, cleanup_root  # the same busybox the tests use

    ap = argparse.ArgumentParser()
    ap.add_argument("--size-mib", type=int, default=1024)
    ap.add_argument("--runs", type=int, default=11)
    ap.add_argument("--conns", type=int, default=500)
    ap.add_argument("--no-podman", action="store_true")
    a = ap.parse_args()
    signal.signal(signal.SIGTERM, on_sigterm)
    work = Path(tempfile.mkdtemp(prefix="dockyard-bench-net-", dir="/var/tmp"))
    dy = [sys.executable, "-m", "dockyard", "--root", str(work / "root")]
    cname = f"dockyard-bench-net-{os.getpid()}"  # named before it exists, so cleanup can always find it
    started = False
    podman_name: str | None = None
    host_srv: subprocess.Popen | None = None
    try:
        load_start = os.getloadavg()
        www = work / "www"
        www.mkdir()
        (www / "small").write_text("ok\n")
        chunk = bytes(1 << 20)
        with open(www / "f", "wb") as f:
            for _ in range(a.size_mib):
                f.write(chunk)
        addr = host_address()

        targets: dict[str, tuple[str, int]] = {}
        hport = free_port()
        host_srv = subprocess.Popen(["/bin/busybox", "httpd", "-f", "-p", f"127.0.0.1:{hport}", "-h", str(www)],
                                    start_new_session=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        targets["host loopback"] = ("127.0.0.1", hport)

        archive = cached_image_archive("busybox")
        check([*dy, "load", "-i", str(archive)])
        started = True
        cid = check([*dy, "run", "-d", "--name", cname, "-p", "80", "-v", f"{www}:/www:ro", "busybox",
                     "sh", "-c", HTTPD]).strip()
        dport = published(check([*dy, "port", cid, "80"]))
        cip = check([*dy, "inspect", "-f", "{{.NetworkSettings.IPAddress}}", cid]).strip()
        targets["dockyard 127.0.0.1"] = ("127.0.0.1", dport)
        if addr:
            targets[f"dockyard {addr}"] = (addr, dport)
        targets["dockyard bridge (no NAT)"] = (cip, 80)

        skipped: list[str] = []
        if not addr:
            skipped.append("the host's own address: the host has no global IPv4 address")
        if a.no_podman:
            skipped.append("podman: --no-podman")
        elif not shutil.which("podman"):
            skipped.append("podman: not installed")
        else:
            try:
                img = work / "busybox-podman.tar"
                shutil.copy(archive, img)
                check(["podman", "load", "-i", str(img)])
                podman_name = cname
                check(["podman", "--runtime", "runc", "run", "--ulimit", "nofile=1024:1024", "--ulimit",
                       "nproc=1024:1024", "-d", "--name", podman_name, "-p", "80", "-v", f"{www}:/www:ro",
                       PODMAN_IMAGE, "sh", "-c", HTTPD])
                pport = published(check(["podman", "port", podman_name, "80"]))
                wait_ready("127.0.0.1", pport, "podman container")
                targets["podman 127.0.0.1"] = ("127.0.0.1", pport)
                if addr:
                    targets[f"podman {addr}"] = (addr, pport)
            except (RuntimeError, subprocess.TimeoutExpired) as exc:
                skipped.append(f"podman: {exc}")
                targets = {k: v for k, v in targets.items() if not k.startswith("podman")}

        for name, (h, p) in targets.items():
            wait_ready(h, p, name)
        http_get(*targets["host loopback"], "/f")  # warm up: the file is read once before timing

        # throughput: every round visits every target once
        secs: dict[str, list[float]] = {k: [] for k in targets}
        for _ in range(a.runs):
            for name, (h, p) in targets.items():
                _, _, dt = http_get(h, p, "/f")
                secs[name].append(dt)

        # connection set-up: round-robin over the targets
        conn: dict[str, list[float]] = {k: [] for k in targets}
        cycle: dict[str, list[float]] = {k: [] for k in targets}
        for name, (h, p) in targets.items():  # a few untimed cycles first
            for _ in range(20):
                http_get(h, p, "/small")
        for _ in range(a.conns):
            for name, (h, p) in targets.items():
                _, c, t = http_get(h, p, "/small")
                conn[name].append(c)
                cycle[name].append(t)

        mib = a.size_mib
        load_end = os.getloadavg()
        print(f"{os.cpu_count()} CPUs; load average (1 min) {load_start[0]:.1f} at the start, {load_end[0]:.1f} "
              "at the end (other work on the machine shows as spread between min and max)")
        base = mib / statistics.median(secs["host loopback"])
        print(f"GET of a {mib} MiB file (busybox httpd, the same file bind-mounted), client on the host;")
        print(f"median of {a.runs} interleaved rounds")
        print(f"  {'target':<30} {'MiB/s':>8} {'(min - max)':>17}   {'/ host loopback':>15}")
        for name, s in secs.items():
            m = mib / statistics.median(s)
            lo, hi = mib / max(s), mib / min(s)
            print(f"  {name:<30} {m:8.0f} {f'({lo:.0f} - {hi:.0f})':>17}   {m / base:15.2f}")
        print()
        print(f"connection set-up: {a.conns} cycles per target (connect + GET /small + read to EOF + close),"
              " round-robin")
        print(f"  {'target':<30} {'connect median':>15} {'p99':>11}   {'cycle median':>13} {'p99':>11}"
              f"   {'cycle / host loopback':>21}")
        cbase = statistics.median(cycle["host loopback"])
        for name in targets:
            c, t = conn[name], cycle[name]
            print(f"  {name:<30} {fmt_us(statistics.median(c)):>15} {fmt_us(pct(c, 99)):>11}   "
                  f"{fmt_us(statistics.median(t)):>13} {fmt_us(pct(t, 99)):>11}   "
                  f"{statistics.median(t) / cbase:21.2f}")
        for s in skipped:
            print(f"  not measured: {s}")
    finally:
        signal.signal(signal.SIGINT, signal.SIG_IGN)  # cleanup runs to the end even on a second Ctrl-C
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        if started:
            subprocess.run([*dy, "rm", "-f", cname], capture_output=True, timeout=120)
        if podman_name:
            subprocess.run(["podman", "rm", "-f", "-t", "0", podman_name], capture_output=True, timeout=120)
        if host_srv is not None:
            try:
                os.killpg(host_srv.pid, signal.SIGKILL)  # its own session: httpd and its per-connection children
            except ProcessLookupError:
                pass
            host_srv.wait()
        cleanup_root(work)


if __name__ == "__main__":
    main()
