#!/usr/bin/env python3
"""``docker build``: a cold build and a no-change rebuild of one reference Dockerfile, dockyard against
podman (and docker's classic builder when a dockerd runs here), interleaved, in one run.

    .venv/bin/python bench/build.py [--runs 7] [--files 250]

The reference: a context of ``--files`` small files (1-4 KiB, in nested directories) and

    FROM busybox
    WORKDIR /app
    COPY . /app
    RUN find /app -type f | wc -l > /count
    CMD ["cat", "/count"]

cold       ``build --no-cache``: every step runs (WORKDIR, COPY of the context, RUN in a container,
           the config steps) and every layer is written
rebuild    ``build`` again with nothing changed: the context is hashed, every step is a cache hit,
           no container runs

Each round times cold then rebuild for every tool in turn; medians (min-max) over ``--runs`` rounds.
RUN steps use ``--network none`` everywhere (podman's default network does not work on this host),
so the figures compare the same work; dockyard's default bridge network is timed on a line of its
own.  Everything made here (the data root, podman's and docker's images) is removed at the end.
Needs root.
"""

from __future__ import annotations

import argparse
import compileall
import os
import random
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "tests"))

DOCKERFILE = """FROM {base}
WORKDIR /app
COPY . /app
RUN find /app -type f | wc -l > /count
CMD ["cat", "/count"]
"""


def timed(cmd: list[str], cwd: Path) -> float:
    t0 = time.perf_counter()
    p = subprocess.run(cmd, cwd=cwd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    dt = time.perf_counter() - t0
    if p.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)}: {p.stderr.decode()[-800:]}")
    return dt


def works(cmd: list[str], cwd: Path | None = None) -> bool:
    return subprocess.run(cmd, cwd=cwd, capture_output=True).returncode == 0


def make_context(root: Path, files: int) -> None:
    rng = random.Random(42)
    for i in range(files):
        d = root / "src" / f"pkg{i % 10}" / f"mod{i % 7}"
        d.mkdir(parents=True, exist_ok=True)
        (d / f"file{i}.py").write_bytes(bytes(rng.getrandbits(8) for _ in range(rng.randint(1024, 4096))))
    (root / ".dockerignore").write_text("*.pyc\n")


def main() -> None:
    from conftest import cached_image_archive, cleanup_root

    ap = argparse.ArgumentParser()
    ap.add_argument("--runs", type=int, default=7)
    ap.add_argument("--files", type=int, default=250)
    args = ap.parse_args()
    compileall.compile_dir(REPO / "src" / "dockyard", quiet=1)
    work = Path(tempfile.mkdtemp(prefix="dockyard-bench-build-", dir="/var/tmp"))
    dy = [sys.executable, "-m", "dockyard", "--root", str(work / "root")]
    cleanups: list[list[str]] = []
    try:
        archive = cached_image_archive("busybox")
        subprocess.run([*dy, "load", "-i", str(archive)], check=True, stdout=subprocess.DEVNULL)
        contexts: dict[str, Path] = {}

        def context(name: str, base: str) -> Path:
            c = work / f"ctx-{name}"
            make_context(c, args.files)
            (c / "Dockerfile").write_text(DOCKERFILE.format(base=base))
            contexts[name] = c
            return c

        tools: dict[str, tuple[list[str], list[str], Path]] = {}
        c = context("dockyard", "busybox")
        tools["dockyard"] = ([*dy, "build", "-q", "--network", "none", "--no-cache", "-t", "bench", "."],
                             [*dy, "build", "-q", "--network", "none", "-t", "bench", "."], c)
        if works([*dy, "run", "--rm", "busybox", "true"]):
            c = context("dockyard-bridge", "busybox")
            tools["dockyard (bridge)"] = ([*dy, "build", "-q", "--no-cache", "-t", "bench-net", "."],
                                          [*dy, "build", "-q", "-t", "bench-net", "."], c)
        if shutil.which("podman"):
            img = work / "busybox-podman.tar"
            shutil.copy(archive, img)
            if works(["podman", "load", "-i", str(img)]):
                c = context("podman", "docker.io/library/busybox")
                base = ["podman", "build", "--runtime", "runc", "--network", "none", "-q", "-t", "dockyard-bench"]
                if works([*base, "."], c):
                    tools["podman"] = ([*base, "--no-cache", "."], [*base, "."], c)
                    cleanups.append(["podman", "rmi", "-f", "dockyard-bench"])
        if shutil.which("docker") and works(["docker", "info"]):
            subprocess.run(["docker", "load", "-i", str(archive)], capture_output=True)
            c = context("docker", "busybox")
            env = ["env", "DOCKER_BUILDKIT=0"]
            base = [*env, "docker", "build", "--network", "none", "-q", "-t", "dockyard-bench"]
            tools["docker (classic)"] = ([*base, "--no-cache", "."], [*base, "."], c)
            cleanups.append(["docker", "rmi", "-f", "dockyard-bench"])

        for cold, warm, cwd in tools.values():  # warm the page cache and the tools once
            timed(cold, cwd)
            timed(warm, cwd)
        times: dict[str, dict[str, list[float]]] = {k: {"cold": [], "rebuild": []} for k in tools}
        for _ in range(args.runs):
            for name, (cold, warm, cwd) in tools.items():
                times[name]["cold"].append(timed(cold, cwd))
                times[name]["rebuild"].append(timed(warm, cwd))
        print(f"docker build of a {args.files}-file context (WORKDIR, COPY . /app, RUN, CMD): "
              f"median (min-max) of {args.runs} interleaved rounds, RUN with --network none")
        for phase in ("cold", "rebuild"):
            print(f"  {'cold build (--no-cache)' if phase == 'cold' else 'no-change rebuild'}")
            base = statistics.median(times["dockyard"][phase])
            for name, t in times.items():
                m = statistics.median(t[phase])
                print(f"    {name:<20} {m * 1000:8.0f} ms  ({min(t[phase]) * 1000:.0f}-{max(t[phase]) * 1000:.0f})"
                      f"   dockyard / {name}: {base / m:.2f}")
        missing = [t for t in ("podman", "docker (classic)") if t not in tools]
        if missing:
            print(f"  not measured (not installed or cannot run here): {', '.join(missing)}")
    finally:
        for cmd in cleanups:
            subprocess.run(cmd, capture_output=True)
        cleanup_root(work)


if __name__ == "__main__":
    if os.geteuid() != 0:
        sys.exit("bench/build.py needs root")
    main()
