"""``dockyard system service``: the Engine API on unix sockets and TCP, until SIGTERM/SIGINT.

Listeners (``--host``, repeatable, Docker's forms)::

    unix:///run/dockyard/dockyard.sock   the default; the socket is root's alone (0660 root:root,
                                         as /var/run/docker.sock without a docker group): whoever can
                                         talk to it is root on this host
    tcp://127.0.0.1:2375                 plain HTTP -- loopback only unless TLS verifies clients
    tcp://0.0.0.0:2376 + --tlsverify     TLS; with --tlsverify a client certificate signed by
                                         --tlscacert is required (the docker CLI's DOCKER_TLS_VERIFY)

A unix socket left behind by a server that died is replaced; one that answers (another server
runs) is an error.  On SIGTERM or SIGINT the server stops accepting, ends open streams (attach,
logs -f, events) after a short grace period, removes its sockets and returns.  Containers keep
running: they belong to their conmon monitors, not to this process.

The service is just another dockyard process: it holds no state the CLI cannot see, and any
number of ``dockyard`` commands run beside it on the same data root.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import logging
import os
import signal
import socket
import ssl
import stat
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

from aiohttp import web

from dockyard.errors import Conflict, InvalidArgument

DEFAULT_HOST = "unix:///run/dockyard/dockyard.sock"
SHUTDOWN_GRACE = 2.0
WORKERS = 64
log = logging.getLogger("dockyard.api")


@dataclass(frozen=True)
class Listener:
    kind: str               # unix | tcp
    path: str = ""          # unix
    host: str = ""          # tcp
    port: int = 0           # tcp


@dataclass(frozen=True)
class TLSOptions:
    cert: Path
    key: Path
    cacert: Path | None = None     # with verify: the CA that signs client certificates
    verify: bool = False


def parse_host(value: str) -> Listener:
    """``unix:///path``, ``tcp://host:port`` (port 2375 by default, 2376 is for TLS), ``fd://`` no."""
    if value.startswith("/"):
        value = "unix://" + value
    u = urlsplit(value)
    if u.scheme == "unix":
        path = (u.netloc + u.path) or DEFAULT_HOST.removeprefix("unix://")
        return Listener("unix", path=path)
    if u.scheme == "tcp":
        host = u.hostname if u.hostname is not None else "127.0.0.1"
        try:
            port = u.port if u.port is not None else 2375
        except ValueError:
            raise InvalidArgument(f"invalid bind address format: {value}") from None
        return Listener("tcp", host=host or "0.0.0.0", port=port)
    raise InvalidArgument(f"invalid bind address format: {value} (expected unix:///path or tcp://host:port)")


def ssl_context(opts: TLSOptions) -> ssl.SSLContext:
    """A server context for the cert/key; with ``verify``, client certificates signed by the CA are
    required (TLS 1.2 or newer).  InvalidArgument for missing or mismatched files."""
    from dockyard.registry.tls import server_ssl_context

    ctx = server_ssl_context(opts.cert, opts.key)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    if opts.verify:
        if opts.cacert is None:
            raise InvalidArgument("--tlsverify needs --tlscacert")
        try:
            ctx.load_verify_locations(cafile=str(opts.cacert))
        except (OSError, ssl.SSLError) as exc:
            raise InvalidArgument(f"could not read CA certificate {opts.cacert}: {exc}") from exc
        ctx.verify_mode = ssl.CERT_REQUIRED
    return ctx


class _PlainSide(asyncio.Protocol):
    """Our end of the socketpair whose other end aiohttp serves: what aiohttp writes is encrypted
    to the client; aiohttp's end of the response (or a hijacked stream's) ends the TLS stream."""

    def __init__(self, bridge: _TLSBridge) -> None:
        self.bridge = bridge

    def data_received(self, data: bytes) -> None:
        self.bridge.send(data)

    def eof_received(self) -> bool:
        self.bridge.finish()
        return False

    def pause_writing(self) -> None:
        if self.bridge.tcp is not None:
            self.bridge.tcp.pause_reading()

    def resume_writing(self) -> None:
        if self.bridge.tcp is not None:
            self.bridge.tcp.resume_reading()

    def connection_lost(self, exc: Exception | None) -> None:
        self.bridge.finish()


class _TLSBridge(asyncio.Protocol):
    """TLS terminated with memory BIOs in front of aiohttp (through a socketpair).

    Why not asyncio's own TLS: a client that half-closes (the docker CLI's CloseWrite after the
    input of an attach or exec, which over TLS is a close_notify alert) makes asyncio's TLS
    transport close the whole connection, so the container's output would never reach it.  TLS 1.3
    allows writing after the peer's close_notify, and an SSLObject does; the half-close is passed
    on to aiohttp as a plain EOF, which a hijacked connection keeps half-open."""

    def __init__(self, ctx: ssl.SSLContext, app_factory: Callable[[], asyncio.BaseProtocol]) -> None:
        self.ctx = ctx
        self.app_factory = app_factory
        self.tcp: asyncio.Transport | None = None
        self.plain: asyncio.Transport | None = None
        self.pending = bytearray()
        self.pending_eof = False
        self.handshaken = False
        self.done = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.tcp = transport  # type: ignore[assignment]
        self.incoming, self.outgoing = ssl.MemoryBIO(), ssl.MemoryBIO()
        self.tls = self.ctx.wrap_bio(self.incoming, self.outgoing, server_side=True)

    async def _connect(self) -> None:
        loop = asyncio.get_running_loop()
        ours, theirs = socket.socketpair()
        try:
            await loop.connect_accepted_socket(self.app_factory, theirs)
            self.plain, _ = await loop.connect_accepted_socket(lambda: _PlainSide(self), ours)
        except OSError:
            self._close()
            return
        if self.pending:
            self.plain.write(bytes(self.pending))
            self.pending.clear()
        if self.pending_eof:
            self.plain.write_eof()

    def _flush(self) -> None:
        data = self.outgoing.read()
        if data and self.tcp is not None and not self.tcp.is_closing():
            self.tcp.write(data)

    def _to_app(self, data: bytes) -> None:
        if self.plain is None:
            self.pending += data
        else:
            self.plain.write(data)

    def _app_eof(self) -> None:
        if self.plain is None:
            self.pending_eof = True
        elif self.plain.can_write_eof() and not self.plain.is_closing():
            self.plain.write_eof()

    def data_received(self, data: bytes) -> None:
        self.incoming.write(data)
        if not self.handshaken:
            try:
                self.tls.do_handshake()
            except ssl.SSLWantReadError:
                self._flush()
                return
            except (ssl.SSLError, OSError) as exc:
                log.info("TLS handshake failed: %s", exc)
                self._flush()
                self._close()
                return
            self.handshaken = True
            self._flush()
            asyncio.get_running_loop().create_task(self._connect())
        while True:
            try:
                chunk = self.tls.read(1 << 16)
            except ssl.SSLWantReadError:
                break
            except ssl.SSLZeroReturnError:
                chunk = b""
            except (ssl.SSLError, OSError):
                self._close()
                return
            if not chunk:  # close_notify: the client is done sending, and still reads
                self._app_eof()
                break
            self._to_app(chunk)
        self._flush()

    def eof_received(self) -> bool:
        self._app_eof()  # a TCP half-close without close_notify
        return True

    def send(self, data: bytes) -> None:
        try:
            self.tls.write(data)
        except (ssl.SSLError, OSError):
            self._close()
            return
        self._flush()

    def finish(self) -> None:
        if self.done:
            return
        self.done = True
        with contextlib.suppress(ssl.SSLError, OSError):
            self.tls.unwrap()
        self._flush()
        self._close()

    def pause_writing(self) -> None:
        if self.plain is not None:
            self.plain.pause_reading()

    def resume_writing(self) -> None:
        if self.plain is not None:
            self.plain.resume_reading()

    def _close(self) -> None:
        if self.tcp is not None:
            self.tcp.close()
        if self.plain is not None:
            self.plain.close()

    def connection_lost(self, exc: Exception | None) -> None:
        self.done = True
        if self.plain is not None:
            self.plain.close()


def _loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _prepare_socket_path(path: str) -> None:
    """Make the directory (0755) and clear a stale socket; Conflict if a server answers there."""
    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True, mode=0o755)
    if not os.path.lexists(p):
        return
    if not stat.S_ISSOCK(p.lstat().st_mode):
        raise Conflict(f"{path} exists and is not a socket")
    probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        probe.settimeout(1.0)
        probe.connect(path)
    except OSError:
        p.unlink()  # nobody listens: left behind by a server that died
        return
    finally:
        probe.close()
    raise Conflict(f"another server is listening on {path}")


def _secure_socket(path: str) -> None:
    """Root's alone: 0660 root:root (whoever can use the API controls the host)."""
    os.chmod(path, 0o660)
    if os.geteuid() == 0:
        os.chown(path, 0, 0)


async def serve(engine, hosts: list[str], tls: TLSOptions | None = None,
                ready: Callable[[list[str]], None] | None = None, stop: asyncio.Event | None = None) -> None:
    """Serve until SIGTERM/SIGINT (or ``stop`` is set).  ``ready(addresses)`` runs once every
    listener is up (``dockyard system service`` prints them)."""
    from dockyard.api.app import make_app

    listeners = [parse_host(h) for h in hosts or [DEFAULT_HOST]]
    ctx = ssl_context(tls) if tls is not None else None
    for li in listeners:
        if li.kind == "tcp" and not _loopback(li.host) and not (tls and tls.verify):
            log.warning("API listening on %s:%d without --tlsverify: anyone who can reach it is root here",
                        li.host, li.port)
    loop = asyncio.get_running_loop()
    loop.set_default_executor(ThreadPoolExecutor(max_workers=WORKERS, thread_name_prefix="dockyard-api"))
    stop = stop or asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        with contextlib.suppress(NotImplementedError, RuntimeError, ValueError):
            loop.add_signal_handler(sig, stop.set)
    app = make_app(engine)
    runner = web.AppRunner(app, access_log=None, handle_signals=False, shutdown_timeout=SHUTDOWN_GRACE)
    await runner.setup()
    sockets: list[str] = []
    addresses: list[str] = []
    tls_servers: list[asyncio.Server] = []
    try:
        for li in listeners:
            if li.kind == "unix":
                _prepare_socket_path(li.path)
                old = os.umask(0o177)  # never world-accessible, not even between bind and chmod
                try:
                    site: web.BaseSite = web.UnixSite(runner, li.path)
                    await site.start()
                finally:
                    os.umask(old)
                sockets.append(li.path)
                _secure_socket(li.path)
                addresses.append(f"unix://{li.path}")
            elif ctx is not None:
                factory = runner.server
                assert factory is not None
                tls_server = await loop.create_server(lambda: _TLSBridge(ctx, factory), li.host, li.port,
                                                      reuse_address=True)
                tls_servers.append(tls_server)
                addresses.append(f"tcp://{li.host}:{tls_server.sockets[0].getsockname()[1]}")
            else:
                site = web.TCPSite(runner, li.host, li.port, reuse_address=True)
                await site.start()
                bound = [s.getsockname() for s in (site._server.sockets if site._server else [])]  # type: ignore[union-attr]
                port = bound[0][1] if bound else li.port
                addresses.append(f"tcp://{li.host}:{port}")
        if ready is not None:
            ready(addresses)
        await stop.wait()
    finally:
        for srv in tls_servers:
            srv.close()
        await runner.cleanup()
        for path in sockets:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(path)
        for sig in (signal.SIGTERM, signal.SIGINT):
            with contextlib.suppress(Exception):
                loop.remove_signal_handler(sig)


def run(engine, hosts: list[str], tls: TLSOptions | None = None,
        ready: Callable[[list[str]], None] | None = None) -> None:
    """Blocking entry point of ``dockyard system service``."""
    asyncio.run(serve(engine, hosts, tls, ready))
