#!/usr/bin/env python3
"""Load and save of a 500 MiB image: dockyard against skopeo copy, interleaved, medians printed.

    .venv/bin/python bench/images_load_save.py [--size-mib 500] [--runs 3]

What is compared (the same image, the same disk):
  save:  dockyard save -o x.tar IMG           vs  skopeo copy oci:LAYOUT docker-archive:x.tar
  load:  dockyard load -i x.tar (into a fresh   vs  skopeo copy docker-archive:x.tar oci:DIR
         data root; includes unpacking layers)
dockyard's load does more than skopeo's copy (it also unpacks every layer into the snapshotter,
as docker load does), so its time is an upper bound of the like-for-like figure.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tarfile
import tempfile
import time
from pathlib import Path

DY = [sys.executable, "-m", "dockyard"]


def timed(cmd: list[str], **kw) -> float:
    t0 = time.perf_counter()
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL, **kw)
    return time.perf_counter() - t0


def make_rootfs_tar(path: Path, size_mib: int) -> None:
    """A tar of a root filesystem: 10 files of random (incompressible) data plus small files."""
    chunk = os.urandom(1 << 20)
    with tarfile.open(path, "w") as tf:
        per_file = size_mib // 10
        for i in range(10):
            src = path.parent / f"f{i}"
            with open(src, "wb") as f:
                for j in range(per_file):
                    f.write(chunk[j % 7:] + chunk[: j % 7])
            tf.add(src, arcname=f"data/blob{i}.bin")
            src.unlink()
        for i in range(200):
            ti = tarfile.TarInfo(f"etc/conf{i}")
            data = f"setting {i}\n".encode() * 10
            ti.size = len(data)
            import io

            tf.addfile(ti, io.BytesIO(data))


def drop_caches() -> None:
    subprocess.run(["sync"], check=False)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--size-mib", type=int, default=500)
    ap.add_argument("--runs", type=int, default=3)
    args = ap.parse_args()
    if not shutil.which("skopeo"):
        sys.exit("skopeo is not installed (apt-get install skopeo)")
    work = Path(tempfile.mkdtemp(prefix="dockyard-bench-", dir="/var/tmp"))
    try:
        root = work / "root"
        rootfs = work / "rootfs.tar"
        make_rootfs_tar(rootfs, args.size_mib)
        subprocess.run([*DY, "--root", str(root), "import", str(rootfs), "bench/big:1"], check=True,
                       stdout=subprocess.DEVNULL)
        rootfs.unlink()
        layout = work / "layout"
        subprocess.run([*DY, "--root", str(root), "save", "--format", "oci-dir", "-o", str(layout), "bench/big:1"],
                       check=True)
        archive = work / "ref.tar"
        subprocess.run([*DY, "--root", str(root), "save", "-o", str(archive), "bench/big:1"], check=True)
        size = archive.stat().st_size
        results: dict[str, list[float]] = {k: [] for k in ("dy_save", "sk_save", "dy_load", "sk_load")}
        for i in range(args.runs):
            out = work / f"dy{i}.tar"
            drop_caches()
            results["dy_save"].append(timed([*DY, "--root", str(root), "save", "-o", str(out), "bench/big:1"]))
            out.unlink()
            out = work / f"sk{i}.tar"
            drop_caches()
            results["sk_save"].append(timed(["skopeo", "copy", "-q", f"oci:{layout}:1",
                                             f"docker-archive:{out}:bench/big:1"]))
            out.unlink()
            fresh = work / f"fresh{i}"
            drop_caches()
            results["dy_load"].append(timed([*DY, "--root", str(fresh), "load", "-i", str(archive)]))
            subprocess.run(["rm", "-rf", str(fresh)], check=True)
            dest = work / f"oci{i}"
            drop_caches()
            results["sk_load"].append(timed(["skopeo", "copy", "-q", f"docker-archive:{archive}",
                                             f"oci:{dest}:bench/big:1"]))
            shutil.rmtree(dest)
        med = {k: statistics.median(v) for k, v in results.items()}
        mib = size / (1 << 20)
        print(f"image: {mib:.0f} MiB archive, {args.runs} interleaved runs, medians")
        print(f"{'operation':<10}{'dockyard':>12}{'skopeo copy':>14}{'ratio':>9}")
        for op in ("save", "load"):
            d, s = med[f"dy_{op}"], med[f"sk_{op}"]
            print(f"{op:<10}{d:>10.2f} s{s:>12.2f} s{d / s:>9.2f}")
        print(f"dockyard save {mib / med['dy_save']:.0f} MiB/s, load {mib / med['dy_load']:.0f} MiB/s")
    finally:
        subprocess.run(["rm", "-rf", str(work)], check=False)


if __name__ == "__main__":
    main()
