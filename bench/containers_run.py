#!/usr/bin/env python3
"""Container start-up: dockyard against bare runc, podman and docker, interleaved; monitor memory;
100 detached containers.

    .venv/bin/python bench/containers_run.py [--runs 15] [--many 100]

Prints the median wall time of `run --rm busybox true` for each tool (podman and docker only when
installed and able to run here: podman with runc and the ulimits this host allows, docker against a
dockerd this script starts by hand, see bench/refdocker.py).  Every tool runs with ``--network none``
(podman's default network does not work on this host, the hand-started dockerd has no bridge), so
the figures compare the same work; dockyard's default network is timed on a line of its own.
dockyard runs as its console script (``.venv/bin/dockyard``), as a user runs it.  Then the memory of an idle container's conmon (podman's
too, for comparison), and the time to start --many detached containers with dockyard and the
memory of their monitors.

Memory: VmRSS counts every resident page the monitor maps, shared libraries included (libc and
glib are ~1.5 MiB of it, shared with every other process that maps them); PSS divides shared
pages among the processes sharing them; private is what this monitor alone uses.  The cost of
one more idle container is its private memory plus a small share of the libraries.

dockyard's bytecode is compiled first, as an installed package has it: this environment sets
PYTHONDONTWRITEBYTECODE, and a module whose .pyc is stale would otherwise be compiled from source
on every run.
"""

from __future__ import annotations

import argparse
import compileall
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
sys.path.insert(0, str(REPO / "bench"))
from refdocker import DOCKER, start_dockerd, stop  # noqa: E402
PODMAN = ["podman", "--runtime", "runc"]
PODMAN_OPTS = ["--ulimit", "nofile=1024:1024", "--ulimit", "nproc=1024:1024", "--network", "none"]


def timed(cmd: list[str]) -> float:
    t0 = time.perf_counter()
    p = subprocess.run(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    dt = time.perf_counter() - t0
    if p.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)}: {p.stderr.decode()[-500:]}")
    return dt


def works(cmd: list[str]) -> bool:
    return subprocess.run(cmd, capture_output=True).returncode == 0


def memory_kib(pid: int) -> tuple[int, int, int]:
    """(VmRSS, PSS, private) of a process, in KiB."""
    rss = 0
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            rss = int(line.split()[1])
    rollup = {}
    for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines()[1:]:
        key, _, value = line.partition(":")
        rollup[key] = int(value.split()[0])
    return rss, rollup["Pss"], rollup["Private_Clean"] + rollup["Private_Dirty"]


def mib(kib: float) -> str:
    return f"{kib / 1024:.2f} MiB"


def show_memory(label: str, figures: list[tuple[int, int, int]]) -> None:
    rss, pss, private = (statistics.mean(f[i] for f in figures) for i in range(3))
    print(f"  {label:<34} VmRSS {mib(rss)}   PSS {mib(pss)}   private {mib(private)}")


def main() -> None:
    from conftest import cached_image_archive, cleanup_root  # the same busybox the tests use

    ap = argparse.ArgumentParser()
    ap.add_argument("--runs", type=int, default=15)
    ap.add_argument("--many", type=int, default=100)
    args = ap.parse_args()
    compileall.compile_dir(REPO / "src" / "dockyard", quiet=1)
    work = Path(tempfile.mkdtemp(prefix="dockyard-bench-run-", dir="/var/tmp"))
    # The console script, as a user runs it (`python -m` would add runpy to every start-up).
    script = Path(sys.executable).with_name("dockyard")
    dy = [str(script) if script.exists() else sys.executable, *([] if script.exists() else ["-m", "dockyard"]),
          "--root", str(work / "root")]
    podman_ids: list[str] = []
    dockerd = None
    try:
        archive = cached_image_archive("busybox")
        subprocess.run([*dy, "load", "-i", str(archive)], check=True, stdout=subprocess.DEVNULL)
        tools: dict[str, list[str]] = {"dockyard": [*dy, "run", "--rm", "--network", "none", "busybox", "true"]}

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

        podman = False
        if shutil.which("podman"):
            img = work / "busybox-podman.tar"
            shutil.copy(archive, img)
            if works(["podman", "load", "-i", str(img)]):
                cmd = [*PODMAN, "run", "--rm", *PODMAN_OPTS, "docker.io/library/busybox", "true"]
                podman = works(cmd)
                if podman:
                    tools["podman"] = cmd
        started = start_dockerd(work, archive)
        if started is not None:
            dockerd, docker_env = started
            tools["docker"] = ["env", f"DOCKER_HOST={docker_env['DOCKER_HOST']}",
                               f"DOCKER_CONFIG={docker_env['DOCKER_CONFIG']}",
                               DOCKER, "run", "--rm", "--network", "none", "busybox", "true"]
        default_net = [*dy, "run", "--rm", "busybox", "true"]
        if works(default_net):
            tools["dockyard (default network)"] = default_net

        for cmd in tools.values():  # warm caches once
            timed(cmd)
        times: dict[str, list[float]] = {k: [] for k in tools}
        for _ in range(args.runs):
            for name, cmd in tools.items():
                times[name].append(timed(cmd))
        print(f"run --rm busybox true: median of {args.runs} interleaved runs (--network none)")
        base = statistics.median(times["dockyard"])
        for name, t in times.items():
            m = statistics.median(t)
            print(f"  {name:<27} {m * 1000:8.1f} ms   (dockyard / {name}: {base / m:.2f})")
        missing = [t for t in ("podman", "docker", "dockyard (default network)") if t not in tools]
        if missing:
            print(f"  not measured (not installed or cannot run here): {', '.join(missing)}")

        # idle monitor memory
        print("idle monitor (conmon) memory")
        cid = subprocess.run([*dy, "run", "-d", "--network", "none", "busybox", "sleep", "300"], check=True,
                             capture_output=True, text=True).stdout.strip()
        if podman:
            out = subprocess.run([*PODMAN, "run", "-d", *PODMAN_OPTS, "docker.io/library/busybox", "sleep", "300"],
                                 capture_output=True, text=True)
            if out.returncode == 0:
                podman_ids.append(out.stdout.strip())
        time.sleep(1)
        pid = int((work / "root" / "containers" / cid / "bundle" / "conmon.pid").read_text())
        show_memory("dockyard's conmon", [memory_kib(pid)])
        for pcid in podman_ids:
            ppid = subprocess.run(["podman", "inspect", "--format", "{{.State.ConmonPid}}", pcid],
                                  capture_output=True, text=True).stdout.strip()
            if ppid.isdigit():
                show_memory("podman's conmon (same machine)", [memory_kib(int(ppid))])
        subprocess.run([*dy, "rm", "-f", cid], check=True, stdout=subprocess.DEVNULL)

        # many detached containers, started as fast as the machine allows (2 at a time per core)
        t0 = time.perf_counter()
        procs: list[subprocess.Popen] = []
        ids = []
        for i in range(args.many):
            procs.append(subprocess.Popen([*dy, "run", "-d", "--network", "none", "busybox", "sleep", "300"],
                                          stdout=subprocess.PIPE, stderr=subprocess.PIPE))
            if len(procs) >= 2 * (os.cpu_count() or 1):
                p = procs.pop(0)
                ids.append(p.communicate()[0].decode().strip())
        for p in procs:
            ids.append(p.communicate()[0].decode().strip())
        dt = time.perf_counter() - t0
        running = subprocess.run([*dy, "ps", "-q"], capture_output=True, text=True).stdout.split()
        print(f"{args.many} detached containers started in {dt:.1f} s ({dt / args.many * 1000:.0f} ms each); "
              f"{len(running)} running")
        figures = []
        for c in ids:
            try:
                figures.append(memory_kib(int((work / "root" / "containers" / c / "bundle" / "conmon.pid").read_text())))
            except (OSError, ValueError):
                pass
        if figures:
            show_memory(f"their conmons (mean of {len(figures)})", figures)
        subprocess.run([*dy, "rm", "-f", *ids], stdout=subprocess.DEVNULL)
    finally:
        stop(dockerd)
        if podman_ids:
            subprocess.run(["podman", "rm", "-f", "-t", "0", *podman_ids], capture_output=True)
        cleanup_root(work)


if __name__ == "__main__":
    main()
