"""``dockyard system service`` listeners without containers: the unix socket is root's alone and
removed at shutdown, a stale socket is replaced and a live one refused, TCP with --tlsverify
admits only clients with a certificate from the CA, and host addresses parse as dockerd's."""

from __future__ import annotations

import asyncio
import os
import socket
import ssl
import stat
import threading
from pathlib import Path

import pytest
from helpers.apiservice import make_tls_files

from dockyard.api.server import TLSOptions, parse_host, serve
from dockyard.engine import Engine
from dockyard.errors import Conflict, InvalidArgument


class Running:
    """serve() on a loop in a background thread; stop() sets its stop event."""

    def __init__(self, engine: Engine, hosts: list[str], tls: TLSOptions | None = None) -> None:
        self.loop = asyncio.new_event_loop()
        self.ready = threading.Event()
        self.addresses: list[str] = []
        self.error: BaseException | None = None

        def on_ready(addresses: list[str]) -> None:
            self.addresses = addresses
            self.ready.set()

        async def main() -> None:
            self.stop_event = asyncio.Event()
            await serve(engine, hosts, tls, on_ready, self.stop_event)

        def run() -> None:
            try:
                self.loop.run_until_complete(main())
            except BaseException as exc:  # noqa: BLE001 - reported to the test
                self.error = exc
                self.ready.set()

        self.thread = threading.Thread(target=run, daemon=True)
        self.thread.start()
        assert self.ready.wait(30)
        if self.error:
            raise self.error

    def stop(self) -> None:
        self.loop.call_soon_threadsafe(self.stop_event.set)
        self.thread.join(30)


def http_ping(sock: socket.socket) -> bytes:
    sock.sendall(b"GET /_ping HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
    data = b""
    while chunk := sock.recv(4096):
        data += chunk
    return data


def test_parse_host():
    assert parse_host("unix:///run/x.sock").path == "/run/x.sock"
    assert parse_host("/run/y.sock").path == "/run/y.sock"
    li = parse_host("tcp://0.0.0.0:2376")
    assert (li.kind, li.host, li.port) == ("tcp", "0.0.0.0", 2376)
    assert parse_host("tcp://127.0.0.1").port == 2375
    with pytest.raises(InvalidArgument):
        parse_host("fd://")
    with pytest.raises(InvalidArgument):
        parse_host("tcp://host:notaport")


def test_unix_socket_is_root_only_replaced_when_stale_and_removed_at_stop(tmp_path):
    engine = Engine(tmp_path / "root")
    path = tmp_path / "run" / "api.sock"
    path.parent.mkdir()
    stale = socket.socket(socket.AF_UNIX)
    stale.bind(str(path))  # a socket file nobody listens on: what a killed server leaves
    stale.close()
    srv = Running(engine, [f"unix://{path}"])
    try:
        st = os.stat(path)
        assert stat.S_ISSOCK(st.st_mode) and stat.S_IMODE(st.st_mode) == 0o660
        if os.geteuid() == 0:
            assert (st.st_uid, st.st_gid) == (0, 0)
        with socket.socket(socket.AF_UNIX) as c:
            c.connect(str(path))
            assert http_ping(c).startswith(b"HTTP/1.1 200 OK")
        with pytest.raises(Conflict):  # a second server on a live socket is refused
            Running(engine, [f"unix://{path}"])
    finally:
        srv.stop()
    assert not path.exists()


def test_tcp_with_tlsverify_requires_a_client_certificate_from_the_ca(tmp_path):
    files = make_tls_files(tmp_path)
    tls = TLSOptions(cert=files["cert"], key=files["key"], cacert=files["ca"], verify=True)
    srv = Running(Engine(tmp_path / "root"), ["tcp://127.0.0.1:0"], tls)
    try:
        port = int(srv.addresses[0].rsplit(":", 1)[1])

        def connect(cert: Path | None, key: Path | None) -> bytes:
            ctx = ssl.create_default_context(cafile=str(files["ca"]))
            if cert is not None:
                ctx.load_cert_chain(str(cert), str(key))
            with socket.create_connection(("127.0.0.1", port), timeout=10) as raw:
                with ctx.wrap_socket(raw, server_hostname="127.0.0.1") as s:
                    return http_ping(s)

        assert connect(files["ccert"], files["ckey"]).startswith(b"HTTP/1.1 200 OK")
        for cert, key in ((None, None), (files["rcert"], files["rkey"])):
            # TLS 1.3: the client's handshake ends before the server checks its certificate, so the
            # refusal arrives as an alert on the first read (an error, or a closed connection)
            try:
                got = connect(cert, key)
            except (ssl.SSLError, ConnectionError):
                continue
            assert got == b"", got
    finally:
        srv.stop()


def test_tlsverify_without_a_ca_is_refused(tmp_path):
    with pytest.raises(InvalidArgument):
        from dockyard.api.server import ssl_context

        ssl_context(TLSOptions(cert=tmp_path / "c.pem", key=tmp_path / "k.pem", verify=True))
