#!/usr/bin/env python3
"""dockyard's registry against Debian's docker-registry (the CNCF Distribution registry), one run:

    .venv/bin/python bench/registry.py [--blob-mib 512] [--runs 3] [--wrk-seconds 5]

  1. GET throughput of a 512 MiB blob (curl to /dev/null), interleaved runs, medians;
  2. manifest GET requests per second with wrk, 32 connections;
  3. `skopeo copy` pushing a 512 MiB single-layer image from an OCI layout, interleaved runs.
Both servers listen on 127.0.0.1 with plain HTTP and no auth, store on the same disk, and run with
their defaults (dockyard: one process, access log on).  Needs docker-registry, wrk, curl, skopeo.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_http(url: str, timeout: float = 20) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            urllib.request.urlopen(url, timeout=1)
            return
        except OSError as exc:
            if hasattr(exc, "code"):
                return
            time.sleep(0.1)
    raise RuntimeError(f"{url} did not answer")


def put_blob(base: str, repo: str, path: Path, digest: str) -> None:
    """Monolithic upload with curl (POST, then PUT of the whole file)."""
    out = subprocess.run(["curl", "-sS", "-X", "POST", "-D", "-", "-o", "/dev/null",
                          f"{base}/v2/{repo}/blobs/uploads/"], capture_output=True, text=True, check=True).stdout
    location = next(l.split(":", 1)[1].strip() for l in out.splitlines() if l.lower().startswith("location:"))
    if location.startswith("/"):
        location = base + location
    sep = "&" if "?" in location else "?"
    subprocess.run(["curl", "-sS", "-f", "-X", "PUT", "-H", "Content-Type: application/octet-stream",
                    "--data-binary", f"@{path}", f"{location}{sep}digest={digest}", "-o", "/dev/null"], check=True)


def put_manifest(base: str, repo: str, tag: str, manifest: bytes) -> None:
    req = urllib.request.Request(f"{base}/v2/{repo}/manifests/{tag}", data=manifest, method="PUT",
                                 headers={"Content-Type": "application/vnd.oci.image.manifest.v1+json"})
    urllib.request.urlopen(req).read()


def timed(cmd: list[str]) -> float:
    t0 = time.perf_counter()
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    return time.perf_counter() - t0


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--blob-mib", type=int, default=512)
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--wrk-seconds", type=int, default=5)
    args = ap.parse_args()
    for tool in ("docker-registry", "wrk", "curl", "skopeo"):
        if not shutil.which(tool):
            sys.exit(f"{tool} is not installed (apt-get install docker-registry wrk curl skopeo)")
    work = Path(tempfile.mkdtemp(prefix="dockyard-bench-reg-", dir="/var/tmp"))
    procs: list[subprocess.Popen] = []
    try:
        dy_port, dr_port = free_port(), free_port()
        procs.append(subprocess.Popen([sys.executable, "-m", "dockyard", "registry", "serve", "--root",
                                       str(work / "dy"), "--addr", f"127.0.0.1:{dy_port}"],
                                      stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
        (work / "dr.yml").write_text(
            "version: 0.1\nlog: {level: error, accesslog: {disabled: true}}\n"
            f"storage: {{filesystem: {{rootdirectory: {work / 'dr'}}}, delete: {{enabled: true}}}}\n"
            f"http: {{addr: '127.0.0.1:{dr_port}'}}\n")
        procs.append(subprocess.Popen(["docker-registry", "serve", str(work / "dr.yml")],
                                      stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
        servers = {"dockyard": f"http://127.0.0.1:{dy_port}", "distribution": f"http://127.0.0.1:{dr_port}"}
        for base in servers.values():
            wait_http(base + "/v2/")

        # a 512 MiB blob, a config and a manifest in both registries
        blob = work / "blob"
        h = hashlib.sha256()
        chunk = os.urandom(1 << 20)
        with open(blob, "wb") as f:
            for i in range(args.blob_mib):
                piece = chunk[i % 97:] + chunk[: i % 97]
                f.write(piece)
                h.update(piece)
        digest = "sha256:" + h.hexdigest()
        config = json.dumps({"architecture": "amd64", "os": "linux",
                             "rootfs": {"type": "layers", "diff_ids": [digest]}}).encode()
        cfg_path = work / "config"
        cfg_path.write_bytes(config)
        cfg_digest = "sha256:" + hashlib.sha256(config).hexdigest()
        manifest = json.dumps({"schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
                               "config": {"mediaType": "application/vnd.oci.image.config.v1+json",
                                          "digest": cfg_digest, "size": len(config)},
                               "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar",
                                           "digest": digest, "size": blob.stat().st_size}]}).encode()
        for base in servers.values():
            put_blob(base, "bench/img", blob, digest)
            put_blob(base, "bench/img", cfg_path, cfg_digest)
            put_manifest(base, "bench/img", "v1", manifest)

        # 1. blob GET throughput
        get_times: dict[str, list[float]] = {k: [] for k in servers}
        for _ in range(args.runs):
            for name, base in servers.items():
                get_times[name].append(timed(["curl", "-sS", "-f", "-o", "/dev/null",
                                              f"{base}/v2/bench/img/blobs/{digest}"]))
        size = blob.stat().st_size

        # 2. manifest GETs per second
        rps: dict[str, float] = {}
        for name, base in servers.items():
            out = subprocess.run(["wrk", "-t2", "-c32", f"-d{args.wrk_seconds}s", "-H",
                                  "Accept: application/vnd.oci.image.manifest.v1+json",
                                  f"{base}/v2/bench/img/manifests/v1"], capture_output=True, text=True).stdout
            rps[name] = float(next(l.split()[1] for l in out.splitlines() if l.startswith("Requests/sec")))

        # 3. skopeo copy push of a 512 MiB image from an OCI layout: a new layer for every push, so
        # that nothing is already there to skip
        push_times: dict[str, list[float]] = {k: [] for k in servers}
        for i in range(args.runs):
            for name, base in servers.items():
                layout = work / f"layout-{name}-{i}"
                (layout / "blobs" / "sha256").mkdir(parents=True)
                layer = work / "layer"
                lh = hashlib.sha256()
                salt = os.urandom(32)
                with open(layer, "wb") as f:
                    for j in range(args.blob_mib):
                        piece = salt + chunk[32 + j % 89:] + chunk[32: 32 + j % 89]
                        f.write(piece)
                        lh.update(piece)
                l_digest = "sha256:" + lh.hexdigest()
                os.replace(layer, layout / "blobs" / "sha256" / l_digest[7:])
                cfg = json.dumps({"architecture": "amd64", "os": "linux",
                                  "rootfs": {"type": "layers", "diff_ids": [l_digest]}}).encode()
                c_digest = "sha256:" + hashlib.sha256(cfg).hexdigest()
                (layout / "blobs" / "sha256" / c_digest[7:]).write_bytes(cfg)
                man = json.dumps({"schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
                                  "config": {"mediaType": "application/vnd.oci.image.config.v1+json",
                                             "digest": c_digest, "size": len(cfg)},
                                  "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar",
                                              "digest": l_digest,
                                              "size": (layout / "blobs" / "sha256" / l_digest[7:]).stat().st_size}]
                                  }).encode()
                m_digest = "sha256:" + hashlib.sha256(man).hexdigest()
                (layout / "blobs" / "sha256" / m_digest[7:]).write_bytes(man)
                (layout / "oci-layout").write_text('{"imageLayoutVersion":"1.0.0"}')
                (layout / "index.json").write_text(json.dumps({"schemaVersion": 2, "manifests": [
                    {"mediaType": "application/vnd.oci.image.manifest.v1+json", "digest": m_digest,
                     "size": len(man), "annotations": {"org.opencontainers.image.ref.name": "push"}}]}))
                subprocess.run(["sync"], check=False)
                host = base.removeprefix("http://")
                push_times[name].append(timed(["skopeo", "copy", "-q", "--dest-tls-verify=false",
                                               f"oci:{layout}:push", f"docker://{host}/bench/push{i}:1"]))
                shutil.rmtree(layout)

        print(f"registry benchmark: {args.blob_mib} MiB blob, {args.runs} interleaved runs, medians")
        print(f"{'':<34}{'dockyard':>14}{'distribution':>14}{'ratio':>8}")
        g = {k: size / statistics.median(v) / 1e9 for k, v in get_times.items()}
        print(f"{'blob GET throughput (GB/s)':<34}{g['dockyard']:>14.2f}{g['distribution']:>14.2f}"
              f"{g['dockyard'] / g['distribution']:>8.2f}")
        print(f"{'manifest GET (requests/s, wrk c32)':<34}{rps['dockyard']:>14.0f}{rps['distribution']:>14.0f}"
              f"{rps['dockyard'] / rps['distribution']:>8.2f}")
        p = {k: statistics.median(v) for k, v in push_times.items()}
        print(f"{'skopeo copy push (s)':<34}{p['dockyard']:>14.2f}{p['distribution']:>14.2f}"
              f"{p['dockyard'] / p['distribution']:>8.2f}")
    finally:
        for proc in procs:
            proc.terminate()
        for proc in procs:
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                proc.kill()
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
