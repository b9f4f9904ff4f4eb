#!/usr/bin/env python3
"""Pull and push of a 512 MiB image: dockyard against skopeo and podman, interleaved, one run:

    .venv/bin/python bench/registry_pull_push.py [--mib 512] [--rounds 3] [--registry dockyard|distribution]

The image is busybox (bootstrapped from Debian's busybox-static: the tests' cached archive) plus one
layer of --mib MiB of random, incompressible data, written by a dockyard container and committed
with ``dockyard commit`` (gzip, as images are).  It is served over plain HTTP on 127.0.0.1 without
auth by dockyard's own registry or by Debian's docker-registry (--registry).  Each round, in turn:

  pull:  dockyard pull            into a fresh data root (download, verify, unpack into overlay layers)
         skopeo copy docker://... oci:DIR   (download and verify; no unpacking)
         podman --runtime runc pull         into a fresh storage root (overlay; download and unpack),
                                            where podman works on this machine
  push:  dockyard push            and  skopeo copy oci:LAYOUT docker://...   (the same image, saved by
                                       ``dockyard save --format oci-dir``), each to a registry started
                                       fresh for it, so no blob is already there or mountable

Prints the median wall time of each and dockyard's time over each other tool's (below 1: dockyard
is faster).  Each tool is run once before the rounds to warm the page cache.
"""

from __future__ import annotations

import argparse
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Callable
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "tests"))
DY = [sys.executable, "-m", "dockyard"]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_http(url: str, proc: subprocess.Popen, timeout: float = 20) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"registry exited with {proc.returncode}")
        try:
            urllib.request.urlopen(url, timeout=1)
            return
        except OSError as exc:
            if hasattr(exc, "code"):
                return
            time.sleep(0.1)
    raise RuntimeError(f"{url} did not answer")


def sh(cmd: list[str]) -> str:
    p = subprocess.run(cmd, capture_output=True, text=True)
    if p.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)}: {p.stderr[-800:]}")
    return p.stdout


def timed(cmd: list[str]) -> float:
    t0 = time.perf_counter()
    sh(cmd)
    return time.perf_counter() - t0


class Registries:
    """Registries of one kind on loopback, each on its own storage; stopped by PID at the end."""

    def __init__(self, kind: str, work: Path) -> None:
        self.kind = kind
        self.work = work
        self.procs: list[subprocess.Popen] = []

    def start(self) -> str:
        port = free_port()
        root = self.work / f"registry-{port}"
        if self.kind == "dockyard":
            cmd = [*DY, "registry", "serve", "--root", str(root), "--addr", f"127.0.0.1:{port}", "--no-access-log"]
        else:
            cfg = self.work / f"registry-{port}.yml"
            cfg.write_text("version: 0.1\nlog: {level: error, accesslog: {disabled: true}}\n"
                           f"storage: {{filesystem: {{rootdirectory: {root}}}}}\n"
                           f"http: {{addr: '127.0.0.1:{port}'}}\n")
            cmd = ["docker-registry", "serve", str(cfg)]
        proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        self.procs.append(proc)
        wait_http(f"http://127.0.0.1:{port}/v2/", proc)
        return f"127.0.0.1:{port}"

    def stop_all(self) -> None:
        for proc in self.procs:
            if proc.poll() is None:
                proc.terminate()
        for proc in self.procs:
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


def podman_pull_cmd(work: Path, runroot: Path, n: str, ref: str) -> list[str]:
    return ["podman", "--root", str(work / f"podman-{n}"), "--runroot", str(runroot / n), "--storage-driver",
            "overlay", "--runtime", "runc", "--cgroup-manager", "cgroupfs", "--events-backend", "file",
            "pull", "-q", "--tls-verify=false", ref]


def main() -> None:
    from conftest import cached_image_archive, cleanup_root  # the busybox the tests use

    ap = argparse.ArgumentParser()
    ap.add_argument("--mib", type=int, default=512, help="size of the random layer")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--registry", choices=("dockyard", "distribution"), default="dockyard")
    args = ap.parse_args()
    for tool in ("skopeo", *(["docker-registry"] if args.registry == "distribution" else [])):
        if not shutil.which(tool):
            sys.exit(f"{tool} is not installed (scripts/setup.sh installs it)")
    work = Path(tempfile.mkdtemp(prefix="dockyard-bench-pullpush-", dir="/var/tmp"))
    runroot = Path(tempfile.mkdtemp(prefix="pm-", dir="/run"))  # podman wants a short runroot
    registries = Registries(args.registry, work)
    src = [*DY, "--root", str(work / "src")]
    try:
        # the image: busybox + a layer of random data made in a dockyard container
        sh([*src, "load", "-i", str(cached_image_archive("busybox"))])
        sh([*src, "run", "--name", "filler", "busybox", "sh", "-c",
            f"head -c {args.mib << 20} /dev/urandom > /random.bin"])
        sh([*src, "commit", "filler", "bench/big:1"])
        sh([*src, "rm", "filler"])
        layout = work / "layout"
        sh([*src, "save", "--format", "oci-dir", "-o", str(layout), "bench/big:1"])
        blob_bytes = sum(p.stat().st_size for p in (layout / "blobs" / "sha256").iterdir())

        host = registries.start()
        ref = f"{host}/bench/big:1"
        sh([*src, "tag", "bench/big:1", ref])
        sh([*src, "push", "-q", ref])

        counter = iter(range(1_000_000))

        def dockyard_pull() -> float:
            root = work / f"dy-{next(counter)}"
            try:
                return timed([*DY, "--root", str(root), "pull", "-q", ref])
            finally:
                cleanup_root(root)

        def skopeo_pull() -> float:
            dest = work / f"sk-{next(counter)}"
            try:
                return timed(["skopeo", "copy", "-q", "--src-tls-verify=false", f"docker://{ref}", f"oci:{dest}:1"])
            finally:
                shutil.rmtree(dest, ignore_errors=True)

        def podman_pull() -> float:
            n = str(next(counter))
            try:
                return timed(podman_pull_cmd(work, runroot, n, ref))
            finally:
                cleanup_root(work / f"podman-{n}")
                shutil.rmtree(runroot / n, ignore_errors=True)

        def dockyard_push() -> float:
            target = f"{registries.start()}/bench/pushed:1"
            sh([*src, "tag", "bench/big:1", target])
            return timed([*src, "push", "-q", target])

        def skopeo_push() -> float:
            target = f"{registries.start()}/bench/pushed:1"
            return timed(["skopeo", "copy", "-q", "--dest-tls-verify=false", f"oci:{layout}:1", f"docker://{target}"])

        pulls: dict[str, Callable[[], float]] = {"dockyard": dockyard_pull, "skopeo": skopeo_pull}
        not_measured = []
        if shutil.which("podman"):
            try:
                podman_pull()                                       # warm-up doubles as "does podman work here"
                pulls["podman"] = podman_pull
            except RuntimeError as exc:
                not_measured.append(f"podman ({str(exc).splitlines()[-1][:120]})")
        else:
            not_measured.append("podman (not installed)")
        pushes: dict[str, Callable[[], float]] = {"dockyard": dockyard_push, "skopeo": skopeo_push}
        for name, fn in [*pulls.items(), *pushes.items()]:
            if name != "podman":
                fn()                                                # warm-up
        pull_t: dict[str, list[float]] = {k: [] for k in pulls}
        push_t: dict[str, list[float]] = {k: [] for k in pushes}
        for _ in range(args.rounds):
            for name, fn in pulls.items():
                pull_t[name].append(fn())
            for name, fn in pushes.items():
                push_t[name].append(fn())

        served = "dockyard's registry" if args.registry == "dockyard" else "Debian's docker-registry"
        print(f"pull and push of busybox + {args.mib} MiB random layer ({blob_bytes / 1e6:.0f} MB of blobs, gzip), "
              f"{served} on 127.0.0.1; {args.rounds} interleaved rounds, medians")
        for title, times in (("pull", pull_t), ("push", push_t)):
            med = {k: statistics.median(v) for k, v in times.items()}
            print(f"  {title}")
            for name, m in med.items():
                ratio = "" if name == "dockyard" else f"   dockyard / {name}: {med['dockyard'] / m:.2f}"
                print(f"    {name:<9}{m:8.2f} s  {blob_bytes / m / 1e6:7.0f} MB/s{ratio}")
        if not_measured:
            print(f"  not measured: {', '.join(not_measured)}")
    finally:
        registries.stop_all()
        cleanup_root(work)
        shutil.rmtree(runroot, ignore_errors=True)


if __name__ == "__main__":
    main()
