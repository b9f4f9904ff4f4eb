"""A session-scoped Azurite blob service for the Azure Blob tests (registry storage, volume driver).

Azurite (Microsoft's storage emulator, npm package ``azurite``) is installed into the project-local
prefix ``.tools/azurite`` by ``scripts/setup.d/azurite.sh``; the fixture runs that script itself when
the binary is missing, so a fresh clone works with nothing but node and npm on the machine.

Each test session gets its own Azurite process on 127.0.0.1 with a free port and its own temporary
data directory (``--location``), so parallel sessions and leftovers of earlier runs never meet.  Tests
that need isolation from each other use their own blob container names.  The process is stopped by
its PID at teardown (never by name: other sessions may run their own Azurite).
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
PREFIX = REPO / ".tools" / "azurite"
BINARY = PREFIX / "node_modules" / ".bin" / "azurite-blob"
SETUP = REPO / "scripts" / "setup.d" / "azurite.sh"

# The emulator's well-known development account (documented by Microsoft; not a secret).
ACCOUNT = "devstoreaccount1"
KEY = "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw=="


@dataclass(frozen=True)
class Azurite:
    """How to reach the running emulator; ``connection_string`` suits ``BlobServiceClient``."""

    host: str
    port: int
    pid: int
    location: Path
    account: str = ACCOUNT
    key: str = KEY

    @property
    def endpoint(self) -> str:
        return f"http://{self.host}:{self.port}/{self.account}"

    @property
    def connection_string(self) -> str:
        return (f"DefaultEndpointsProtocol=http;AccountName={self.account};AccountKey={self.key};"
                f"BlobEndpoint={self.endpoint};")


def ensure_installed() -> Path:
    """Install Azurite into .tools/azurite when it is missing (the setup script is idempotent)."""
    if not BINARY.exists():
        subprocess.run(["bash", str(SETUP)], check=True, timeout=600)
    if not BINARY.exists():
        raise RuntimeError(f"Azurite is not installed at {BINARY}; run scripts/setup.sh")
    return BINARY


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _answers(host: str, port: int) -> bool:
    """True once Azurite speaks HTTP on the port (any status: an unauthenticated request gets 4xx)."""
    try:
        with socket.create_connection((host, port), timeout=1) as s:
            s.sendall(f"GET /{ACCOUNT}?comp=list HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n".encode())
            return s.recv(16).startswith(b"HTTP/1.1")
    except OSError:
        return False


def _stop(proc: subprocess.Popen) -> None:
    if proc.poll() is not None:
        return
    os.kill(proc.pid, signal.SIGTERM)
    try:
        proc.wait(timeout=10)
    except subprocess.TimeoutExpired:
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=10)


def start_azurite(location: Path, attempts: int = 3) -> tuple[subprocess.Popen, Azurite]:
    """Start ``azurite-blob`` on a free loopback port and wait until it answers.

    A free port can be taken by someone else between probing and binding, so a start that exits
    early is retried on another port."""
    binary = ensure_installed()
    last = ""
    for _ in range(attempts):
        port = _free_port()
        log = location / "azurite.out"
        with open(log, "wb") as out:
            proc = subprocess.Popen(
                [str(binary), "--blobHost", "127.0.0.1", "--blobPort", str(port),
                 "--location", str(location), "--skipApiVersionCheck", "--loose", "--silent",
                 "--disableTelemetry"],
                stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT,
                start_new_session=True)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and proc.poll() is None:
            if _answers("127.0.0.1", port):
                return proc, Azurite("127.0.0.1", port, proc.pid, location)
            time.sleep(0.1)
        _stop(proc)
        last = log.read_text(errors="replace")[-2000:]
    raise RuntimeError(f"Azurite did not start: {last}")


@pytest.fixture(scope="session")
def azurite() -> Iterator[Azurite]:
    """A running Azurite blob service for the whole session; stopped (by PID) and its data removed."""
    location = Path(tempfile.mkdtemp(prefix="dockyard-azurite-", dir="/var/tmp"))
    proc, info = start_azurite(location)
    try:
        yield info
    finally:
        _stop(proc)
        shutil.rmtree(location, ignore_errors=True)
