#!/usr/bin/env python3
"""Write and read throughput of a 1 GiB file: in a local volume, in the container's own root
filesystem (overlay upper dir), and in an Azure Blob volume on Azurite -- in one run, interleaved.

    .venv/bin/python bench/volumes_throughput.py [--size-mib 1024] [--runs 3] [--no-azure]

One long-running busybox container has all three mounted; each figure is the wall time of a
``dockyard exec`` running dd (minus the time of an ``exec true``), so it includes what the container
really waits for:

  write   dd if=/dev/zero of=F bs=1M count=N conv=fsync   (data on disk when dd returns)
  read    dd if=F of=/dev/null bs=1M, after dropping the host's page cache (a cold read)

For the blob volume two more figures say what the cache-backed design costs: ``upload`` is the time
of ``dockyard volume sync`` right after the write (what is not yet uploaded goes now), and ``cold
read`` is a fresh data root mounting the same blob container and reading the file (download + read).
Needs root; Azurite is installed and started as the tests do (tests/helpers/azurite.py).
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "tests"))


def drop_caches() -> None:
    subprocess.run(["sync"], check=True)
    Path("/proc/sys/vm/drop_caches").write_text("3\n")


def timed(fn) -> float:
    t0 = time.perf_counter()
    fn()
    return time.perf_counter() - t0


def mib_s(size_mib: int, seconds: float) -> str:
    return f"{size_mib / seconds:8.0f} MiB/s ({seconds:6.2f} s)" if seconds > 0 else "n/a"


def main() -> None:
    from conftest import Dockyard, cached_image_archive, cleanup_root  # the busybox the tests use

    ap = argparse.ArgumentParser()
    ap.add_argument("--size-mib", type=int, default=1024)
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--no-azure", action="store_true")
    a = ap.parse_args()
    n = a.size_mib
    work = Path(tempfile.mkdtemp(prefix="dockyard-bench-vol-", dir="/var/tmp"))
    azurite_proc = None
    try:
        d = Dockyard(work / "root")
        d("load", "-i", str(cached_image_archive("busybox")))
        d("volume", "create", "benchvol")
        mounts = ["-v", "benchvol:/vol"]
        targets = {"local volume": "/vol/f", "container rootfs": "/data/f"}
        blob_opts: list[str] = []
        if not a.no_azure:
            from helpers.azurite import _stop, start_azurite

            (work / "azurite").mkdir()
            azurite_proc, az = start_azurite(work / "azurite")
            blob_opts = ["-o", f"storage_account_name={az.account}", "-o", f"storage_account_key={az.key}",
                         "-o", "container=bench", "-o", f"endpoint={az.endpoint}"]
            d("volume", "create", "--driver", "azureblob", *blob_opts, "blobvol")
            mounts += ["-v", "blobvol:/blob"]
            targets["blob volume (Azurite)"] = "/blob/f"
        d("run", "-d", "--name", "bench", *mounts, "busybox", "sh", "-c", "mkdir -p /data; sleep 100000")
        base = statistics.median(timed(lambda: d("exec", "bench", "true")) for _ in range(5))
        results: dict[str, dict[str, list[float]]] = {t: {"write": [], "read": []} for t in targets}
        upload: list[float] = []
        for _ in range(a.runs):
            for label, path in targets.items():  # interleaved: each run visits every target
                d("exec", "bench", "rm", "-f", path)
                w = timed(lambda: d("exec", "bench", "dd", "if=/dev/zero", f"of={path}", "bs=1M", f"count={n}",
                                    "conv=fsync"))
                if path.startswith("/blob"):
                    upload.append(timed(lambda: d("volume", "sync", "blobvol")))
                drop_caches()
                r = timed(lambda: d("exec", "bench", "dd", f"if={path}", "of=/dev/null", "bs=1M"))
                results[label]["write"].append(w - base)
                results[label]["read"].append(r - base)
        cold = []
        if blob_opts:
            for i in range(a.runs):
                other = Dockyard(work / f"root{i}")
                other("load", "-i", str(cached_image_archive("busybox")))
                other("volume", "create", "--driver", "azureblob", *blob_opts, "blobvol")
                drop_caches()
                cold.append(timed(lambda: other("run", "--rm", "-v", "blobvol:/blob", "busybox",
                                                "dd", "if=/blob/f", "of=/dev/null", "bs=1M")))
                cleanup_root(work / f"root{i}")
        d("rm", "-f", "bench")
        print(f"{n} MiB file, median of {a.runs} interleaved runs (exec overhead {base * 1000:.0f} ms subtracted)")
        print(f"{'':24} {'write (dd conv=fsync)':>28}   {'cold read':>28}")
        for label, r in results.items():
            print(f"{label:24} {mib_s(n, statistics.median(r['write'])):>28}   "
                  f"{mib_s(n, statistics.median(r['read'])):>28}")
        if upload:
            print(f"{'blob: upload (sync)':24} {mib_s(n, statistics.median(upload)):>28}")
            print(f"{'blob: fresh root read':24} {'':>28}   {mib_s(n, statistics.median(cold)):>28}"
                  "   (mount + download + read)")
    finally:
        cleanup_root(work / "root")
        if azurite_proc is not None:
            _stop(azurite_proc)
        cleanup_root(work)
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
