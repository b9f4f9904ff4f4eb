#!/usr/bin/env python3
"""The Docker Engine API: ``docker run --rm busybox true`` through ``dockyard system service``
against the same command through dockerd, interleaved; and the idle memory of the service.

    .venv/bin/python bench/api_run.py [--runs 21] [--no-dockerd]

The client is the same docker CLI binary for both; only DOCKER_HOST differs.  dockerd (Debian's
docker.io) is started by hand on a private --data-root, --exec-root and unix socket, with its own
managed containerd, ``--bridge=none --iptables=false`` so it touches no host network set-up; so
both sides run with ``--network none`` (the same work: no network namespace plumbing), and
dockyard's default bridge network is timed on a line of its own.  Both load the busybox archive
the tests use (/var/cache/dockyard-tests).

Memory: VmRSS and PSS of the service process when idle -- right after start-up, and again after
the runs (what a long-lived service settles at) -- beside dockerd's and its containerd's.

Everything started here (both servers, their containers, the temporary roots) is stopped by PID
and removed at the end, also on Ctrl-C.  Needs root.
"""

from __future__ import annotations

import argparse
import compileall
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "tests"))
sys.path.insert(0, str(REPO / "bench"))
from refdocker import DOCKER, docker_env, start_dockerd, stop, wait_up  # noqa: E402


def memory_kib(pid: int) -> tuple[int, int]:
    """(VmRSS, PSS) of a process in KiB."""
    rss = pss = 0
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            rss = int(line.split()[1])
    try:
        for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
            if line.startswith("Pss:"):
                pss = int(line.split()[1])
    except OSError:
        pass
    return rss, pss


def mib(kib: int) -> str:
    return f"{kib / 1024:.1f} MiB"


def timed(env: dict[str, str], *args: str) -> float:
    t0 = time.perf_counter()
    p = subprocess.run([DOCKER, *args], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    dt = time.perf_counter() - t0
    if p.returncode != 0:
        raise RuntimeError(f"docker {' '.join(args)} ({env['DOCKER_HOST']}): {p.stderr.decode()[-500:]}")
    return dt


def child_pids(pid: int) -> list[int]:
    try:
        return [int(p) for p in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]
    except OSError:
        return []


def main() -> None:
    from conftest import cached_image_archive, cleanup_root  # the busybox the tests use

    ap = argparse.ArgumentParser()
    ap.add_argument("--runs", type=int, default=21)
    ap.add_argument("--no-dockerd", action="store_true", help="time dockyard's service only")
    args = ap.parse_args()
    compileall.compile_dir(REPO / "src" / "dockyard", quiet=1)
    work = Path(tempfile.mkdtemp(prefix="dockyard-bench-api-", dir="/var/tmp"))
    archive = cached_image_archive("busybox")
    service = dockerd = None
    try:
        root = work / "root"
        subprocess.run([sys.executable, "-m", "dockyard", "--root", str(root), "load", "-i", str(archive)],
                       check=True, stdout=subprocess.DEVNULL)
        dy_sock = str(work / "dockyard.sock")
        dy_log = work / "service.log"
        service = subprocess.Popen([sys.executable, "-m", "dockyard", "--root", str(root), "system", "service",
                                    "-H", f"unix://{dy_sock}"], stdout=open(dy_log, "wb"), stderr=subprocess.STDOUT)
        wait_up(dy_sock, service, "dockyard system service", dy_log)
        time.sleep(1.0)
        idle_fresh = memory_kib(service.pid)
        envs = {"dockyard": docker_env(work, dy_sock)}

        if not args.no_dockerd:
            started = start_dockerd(work, archive)
            if started is not None:
                dockerd, envs["dockerd"] = started

        cmd = ("run", "--rm", "--network", "none", "busybox", "true")
        bridge = ("run", "--rm", "busybox", "true")
        for env in envs.values():  # warm caches once
            timed(env, *cmd)
        timed(envs["dockyard"], *bridge)
        times: dict[str, list[float]] = {k: [] for k in envs}
        times["dockyard (default bridge)"] = []
        for _ in range(args.runs):
            for name, env in envs.items():
                times[name].append(timed(env, *cmd))
            times["dockyard (default bridge)"].append(timed(envs["dockyard"], *bridge))

        print(f"docker run --rm busybox true: median of {args.runs} interleaved runs, the same docker CLI "
              f"({subprocess.run([DOCKER, 'version', '-f', '{{.Client.Version}}'], capture_output=True, text=True, env=envs['dockyard']).stdout.strip()})")
        base = statistics.median(times["dockyard"])
        for name, t in times.items():
            m = statistics.median(t)
            line = f"  {name:<27} {m * 1000:8.1f} ms  (min {min(t) * 1000:.1f}, max {max(t) * 1000:.1f})"
            if name == "dockerd":
                line += f"   dockerd / dockyard: {m / base:.2f}x"
            print(line + ("   --network none" if "bridge" not in name else ""))
        if "dockerd" not in envs:
            print("  dockerd: not measured (--no-dockerd or not installed)")

        time.sleep(2.0)
        idle_after = memory_kib(service.pid)
        print("idle memory of the API service (VmRSS / PSS)")
        print(f"  dockyard system service, fresh       {mib(idle_fresh[0])} / {mib(idle_fresh[1])}")
        print(f"  dockyard system service, after runs  {mib(idle_after[0])} / {mib(idle_after[1])}")
        if dockerd is not None:
            d = memory_kib(dockerd.pid)
            kids = [(p, Path(f"/proc/{p}/comm").read_text().strip()) for p in child_pids(dockerd.pid)]
            extra = ", ".join(f"{comm} {mib(memory_kib(p)[0])}" for p, comm in kids if comm == "containerd")
            print(f"  dockerd (same runs)                  {mib(d[0])} / {mib(d[1])}" + (f"  (+ {extra})" if extra else ""))
    finally:
        stop(service)
        stop(dockerd)
        cleanup_root(work)


if __name__ == "__main__":
    main()
