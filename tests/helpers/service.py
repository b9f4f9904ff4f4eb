"""``dockyard system service`` on a unix socket for tests that drive dockyard with real clients
(the docker CLI, docker-compose): started over a data root, found by its PID, stopped at the end."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path


def wait_socket(path: Path, proc: subprocess.Popen, log: Path, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"the server exited with {proc.returncode}:\n{log.read_text()}")
        if path.exists():
            try:
                with socket.socket(socket.AF_UNIX) as s:
                    s.connect(str(path))
                return
            except OSError:
                pass
        time.sleep(0.1)
    raise RuntimeError(f"{path} never accepted a connection:\n{log.read_text()}")


def stop(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(15)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()


def start_service(root: Path, tmp: Path, name: str = "d") -> tuple[subprocess.Popen, Path]:
    """``dockyard system service --host unix://<tmp>/<name>.sock`` over ``root``."""
    sock = tmp / f"{name}.sock"
    log = tmp / f"{name}-service.log"
    cmd = [sys.executable, "-m", "dockyard", "--root", str(root), "system", "service", "--host", f"unix://{sock}"]
    with open(log, "wb") as out:
        proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        wait_socket(sock, proc, log)
    except BaseException:
        stop(proc)
        raise
    return proc, sock
