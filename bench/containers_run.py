#!/usr/bin/env python3
"""Container start-up: dockyard against bare runc, podman and docker, interleaved; monitor memory;
100 detached containers.

    .venv/bin/python bench/containers_run.py [--runs 15] [--many 100]

Prints the median wall time of `run --rm busybox true` for each tool (podman and docker only when
installed and able to run here: podman with runc and the ulimits this host allows, docker against a
dockerd started by hand), the resident memory of an idle container's conmon, and the time to start
--many detached containers with dockyard.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "tests"))


def timed(cmd: list[str]) -> float:
    t0 = time.perf_counter()
    p = subprocess.run(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    dt = time.perf_counter() - t0
    if p.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)}: {p.stderr.decode()[-500:]}")
    return dt


def vm_rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


def main() -> None:
    from conftest import cached_image_archive, cleanup_root  # the same busybox the tests use

    ap = argparse.ArgumentParser()
    ap.add_argument("--runs", type=int, default=15)
    ap.add_argument("--many", type=int, default=100)
    args = ap.parse_args()
    work = Path(tempfile.mkdtemp(prefix="dockyard-bench-run-", dir="/var/tmp"))
    dy = [sys.executable, "-m", "dockyard", "--root", str(work / "root")]
    try:
        archive = cached_image_archive("busybox")
        subprocess.run([*dy, "load", "-i", str(archive)], check=True, stdout=subprocess.DEVNULL)
        tools: dict[str, list[str]] = {"dockyard": [*dy, "run", "--rm", "busybox", "true"]}

        # bare runc on an equivalent bundle (busybox rootfs, runc's default spec running `true`)
        bundle = work / "bundle"
        (bundle / "rootfs").mkdir(parents=True)
        subprocess.run(["tar", "-xf", str(archive), "-C", str(work)], check=True)
        layout = json.loads((work / "manifest.json").read_text())[0]
        for layer in layout["Layers"]:
            subprocess.run(["tar", "-xzf", str(work / layer), "-C", str(bundle / "rootfs")], check=True)
        subprocess.run(["runc", "spec"], cwd=bundle, check=True)
        spec = json.loads((bundle / "config.json").read_text())
        spec["process"]["args"] = ["true"]
        spec["process"]["terminal"] = False
        (bundle / "config.json").write_text(json.dumps(spec))
        tools["runc"] = ["runc", "--root", str(work / "runc-state"), "run", "--bundle", str(bundle), "bench-runc"]

        if shutil.which("podman"):
            img = work / "busybox-podman.tar"
            shutil.copy(archive, img)
            if subprocess.run(["podman", "load", "-i", str(img)], capture_output=True).returncode == 0:
                cmd = ["podman", "--runtime", "runc", "run", "--rm", "--ulimit", "nofile=1024:1024",
                       "--ulimit", "nproc=1024:1024", "--network", "none", "docker.io/library/busybox", "true"]
                if subprocess.run(cmd, capture_output=True).returncode == 0:
                    tools["podman"] = cmd
        if shutil.which("docker") and subprocess.run(["docker", "info"], capture_output=True).returncode == 0:
            subprocess.run(["docker", "load", "-i", str(archive)], capture_output=True)
            tools["docker"] = ["docker", "run", "--rm", "--network", "none", "busybox", "true"]

        for cmd in tools.values():  # warm caches once
            timed(cmd)
        times: dict[str, list[float]] = {k: [] for k in tools}
        for _ in range(args.runs):
            for name, cmd in tools.items():
                times[name].append(timed(cmd))
        print(f"run --rm busybox true: median of {args.runs} interleaved runs")
        base = statistics.median(times["dockyard"])
        for name, t in times.items():
            m = statistics.median(t)
            print(f"  {name:<9} {m * 1000:8.1f} ms   (dockyard / {name}: {base / m:.2f})")
        missing = [t for t in ("podman", "docker") if t not in tools]
        if missing:
            print(f"  not measured (not installed or cannot run here): {', '.join(missing)}")

        # idle monitor memory
        cid = subprocess.run([*dy, "run", "-d", "busybox", "sleep", "300"], check=True, capture_output=True,
                             text=True).stdout.strip()
        time.sleep(1)
        pid = int((work / "root" / "containers" / cid / "bundle" / "conmon.pid").read_text())
        print(f"idle conmon VmRSS: {vm_rss_kib(pid) / 1024:.2f} MiB")
        subprocess.run([*dy, "rm", "-f", cid], check=True, stdout=subprocess.DEVNULL)

        # many detached containers, started as fast as the machine allows (2 at a time per core)
        t0 = time.perf_counter()
        procs: list[subprocess.Popen] = []
        ids = []
        for i in range(args.many):
            procs.append(subprocess.Popen([*dy, "run", "-d", "busybox", "sleep", "300"], stdout=subprocess.PIPE,
                                          stderr=subprocess.PIPE))
            if len(procs) >= 2 * (os.cpu_count() or 1):
                p = procs.pop(0)
                ids.append(p.communicate()[0].decode().strip())
        for p in procs:
            ids.append(p.communicate()[0].decode().strip())
        dt = time.perf_counter() - t0
        running = subprocess.run([*dy, "ps", "-q"], capture_output=True, text=True).stdout.split()
        print(f"{args.many} detached containers started in {dt:.1f} s ({dt / args.many * 1000:.0f} ms each); "
              f"{len(running)} running")
        subprocess.run([*dy, "rm", "-f", *ids], stdout=subprocess.DEVNULL)
    finally:
        cleanup_root(work)


if __name__ == "__main__":
    main()
