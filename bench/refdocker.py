"""dockerd (Debian's docker.io) started by hand for the benchmarks that compare with it.

It runs on a private --data-root, --exec-root and unix socket with its own managed containerd, and
``--bridge=none --iptables=false --ip-masq=false`` so it touches no host network set-up: containers
compared with it run with ``--network none``.  :func:`start_dockerd` returns the process (stop it
with :func:`stop`) and the environment that points the docker CLI at it.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import time
from pathlib import Path

DOCKER = shutil.which("docker") or "docker"


def ping(sock: str) -> bool:
    try:
        with socket.socket(socket.AF_UNIX) as s:
            s.settimeout(2)
            s.connect(sock)
            s.sendall(b"GET /_ping HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
            return s.recv(64).startswith(b"HTTP/1.1 200")
    except OSError:
        return False


def wait_up(sock: str, proc: subprocess.Popen, what: str, log: Path, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while not ping(sock):
        if proc.poll() is not None or time.monotonic() > deadline:
            raise RuntimeError(f"{what} did not come up:\n{log.read_text(errors='replace')[-3000:]}")
        time.sleep(0.05)


def stop(proc: subprocess.Popen | None) -> None:
    """SIGTERM the process we started (SIGKILL after 20 s) and reap it."""
    if proc is None or proc.poll() is not None:
        return
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(20)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(10)


def docker_env(work: Path, sock: str) -> dict[str, str]:
    """The environment for the docker CLI to talk to ``sock`` with a private client config."""
    cfg = work / "docker-config"
    cfg.mkdir(exist_ok=True)
    env = {**os.environ, "DOCKER_CONFIG": str(cfg), "DOCKER_HOST": f"unix://{sock}"}
    env.pop("DOCKER_CONTEXT", None)
    return env


def start_dockerd(work: Path, archive: Path | None = None) -> tuple[subprocess.Popen, dict[str, str]] | None:
    """Start dockerd under ``work`` (None when it is not installed) and load ``archive`` into it."""
    if not shutil.which("dockerd"):
        return None
    sock = str(work / "dockerd.sock")
    log = work / "dockerd.log"
    proc = subprocess.Popen(
        ["dockerd", "--data-root", str(work / "dockerd-root"), "--exec-root", str(work / "dockerd-exec"),
         "--pidfile", str(work / "dockerd.pid"), "-H", f"unix://{sock}", "--bridge=none",
         "--iptables=false", "--ip-masq=false", "--storage-driver=overlay2"],
        stdout=open(log, "wb"), stderr=subprocess.STDOUT)
    try:
        wait_up(sock, proc, "dockerd", log)
        env = docker_env(work, sock)
        if archive is not None:
            subprocess.run([DOCKER, "load", "-i", str(archive)], env=env, check=True, stdout=subprocess.DEVNULL)
    except BaseException:
        stop(proc)
        raise
    return proc, env
