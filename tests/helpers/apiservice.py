"""A real ``dockyard system service`` process for the client compatibility tests (docker CLI,
docker-py): own data root, own unix socket, stopped by its PID.

    svc = ApiService(root, tmp_dir)        # starts it and waits until the socket answers /_ping
    subprocess.run(["docker", "ps"], env=svc.env)
    svc.request("GET", "/containers/json") -> (status, headers, body)
    svc.stop()                              # SIGTERM, then SIGKILL after 10 s; the socket is gone

``make_tls_files(dir)`` writes a CA, a server certificate for 127.0.0.1, a client certificate
from the CA and a self-signed "rogue" one (the docker CLI's ca.pem/cert.pem/key.pem layout for
the client: ``dir/client/``).
"""

from __future__ import annotations

import http.client
import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any


class _UnixConnection(http.client.HTTPConnection):
    def __init__(self, path: str, timeout: float = 60) -> None:
        super().__init__("localhost", timeout=timeout)
        self.path = path

    def connect(self) -> None:
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        s.settimeout(self.timeout)
        s.connect(self.path)
        self.sock = s


class ApiService:
    def __init__(self, root: Path, workdir: Path, *extra: str) -> None:
        self.root = root
        self.socket = str(workdir / "dockyard.sock")
        self.log_path = workdir / "service.log"
        self.docker_config = workdir / "docker-config"
        self.docker_config.mkdir(parents=True, exist_ok=True)
        self._log = open(self.log_path, "ab")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "dockyard", "--root", str(root), "system", "service", "-H",
             f"unix://{self.socket}", *extra], stdout=self._log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 30
        while True:
            try:
                if self.request("GET", "/_ping", timeout=2)[0] == 200:
                    break
            except OSError:
                pass
            if self.proc.poll() is not None or time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(f"dockyard system service did not come up:\n{self.log()}")
            time.sleep(0.05)
        self.env = {**os.environ, "DOCKER_HOST": f"unix://{self.socket}", "DOCKER_CONFIG": str(self.docker_config)}
        self.env.pop("DOCKER_TLS_VERIFY", None)
        self.env.pop("DOCKER_CONTEXT", None)

    def request(self, method: str, path: str, body: Any = None, timeout: float = 60) -> tuple[int, dict, bytes]:
        conn = _UnixConnection(self.socket, timeout)
        try:
            data = json.dumps(body).encode() if body is not None else None
            headers = {"Content-Type": "application/json"} if data is not None else {}
            conn.request(method, path, body=data, headers=headers)
            r = conn.getresponse()
            return r.status, dict(r.getheaders()), r.read()
        finally:
            conn.close()

    def log(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")[-5000:]
        except OSError:
            return ""

    def stop(self) -> int | None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)
        self._log.close()
        return self.proc.returncode


def _cert(subject: str, issuer_key, issuer_name, key, *, ca: bool = False, server: bool = False):
    import datetime as dt
    import ipaddress

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes
    from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

    now = dt.datetime.now(dt.timezone.utc)
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, subject)])
    b = (x509.CertificateBuilder().subject_name(name).issuer_name(issuer_name or name)
         .public_key(key.public_key()).serial_number(x509.random_serial_number())
         .not_valid_before(now - dt.timedelta(minutes=5)).not_valid_after(now + dt.timedelta(days=1))
         .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True))
    if server:
        b = b.add_extension(x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1")),
                                                         x509.DNSName("localhost")]), critical=False)
        b = b.add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
    elif not ca:
        b = b.add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.CLIENT_AUTH]), critical=False)
    return b.sign(issuer_key, hashes.SHA256()), name


def make_tls_files(d: Path) -> dict[str, Path]:
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ec

    def pem_cert(path: Path, cert) -> Path:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
        return path

    def pem_key(path: Path, key) -> Path:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
        os.chmod(path, 0o600)
        return path

    keys = {n: ec.generate_private_key(ec.SECP256R1()) for n in ("ca", "server", "client", "rogue")}
    ca, ca_name = _cert("test CA", keys["ca"], None, keys["ca"], ca=True)
    server, _ = _cert("server", keys["ca"], ca_name, keys["server"], server=True)
    client, _ = _cert("client", keys["ca"], ca_name, keys["client"])
    rogue, _ = _cert("rogue", keys["rogue"], None, keys["rogue"])
    return {
        "ca": pem_cert(d / "ca.pem", ca), "cert": pem_cert(d / "server.pem", server),
        "key": pem_key(d / "server-key.pem", keys["server"]),
        "ccert": pem_cert(d / "client" / "cert.pem", client), "ckey": pem_key(d / "client" / "key.pem", keys["client"]),
        "cca": pem_cert(d / "client" / "ca.pem", ca),
        "rcert": pem_cert(d / "rogue.pem", rogue), "rkey": pem_key(d / "rogue-key.pem", keys["rogue"]),
    }
