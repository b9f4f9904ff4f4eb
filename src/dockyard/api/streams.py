"""Docker's wire forms for streams, and hijacked connections.

- JSON message streams (events, stats, pull/push/build progress): one JSON object per line,
  ``Content-Type: application/json``, written as the objects come (:func:`json_stream`).
- Multiplexed stdout/stderr (logs and attach of containers without a tty): each chunk is an 8-byte
  header -- the stream (0 stdin, 1 stdout, 2 stderr, 3 system error), three zero bytes, the
  payload size as a big-endian uint32 -- followed by the payload (:func:`frame`).  With a tty the
  bytes go raw.
- Hijacking (attach, exec start): the client sends ``Connection: Upgrade`` and ``Upgrade: tcp``;
  dockerd answers ``HTTP/1.1 101 UPGRADED`` (``200 OK`` to a client that did not ask for the
  upgrade) with ``Content-Type: application/vnd.docker.raw-stream`` (tty) or
  ``application/vnd.docker.multiplexed-stream``, and from then on the socket is the process's
  stdio both ways.  A client that has no more input half-closes its side (``CloseWrite``) and
  keeps reading the output: :class:`Hijacked` takes the transport over from aiohttp (its request
  protocol would close the connection on that EOF) and gives the handler ``read``/``write``.
- Blocking facade calls that read and write file objects (attach and exec proxy the container's
  stdio, export and archive write tars, logs iterate) run in their own threads:
  :class:`ThreadStdio` and :class:`ThreadWriter` are the file objects those threads see, and
  :func:`iterate` turns a blocking iterator into an async one.  Long-lived streams never take a
  worker of the default executor, so they cannot starve short requests.
"""

from __future__ import annotations

import asyncio
import contextlib
import io
import json
import os
import struct
import threading
from collections.abc import AsyncIterator, Callable, Iterable, Iterator
from typing import Any, TypeVar

from aiohttp import web
from dockyard.engine.options import parse_detach_keys

STDIN, STDOUT, STDERR, SYSERR = 0, 1, 2, 3
RAW_STREAM = "application/vnd.docker.raw-stream"
MULTIPLEXED_STREAM = "application/vnd.docker.multiplexed-stream"
T = TypeVar("T")
_CHUNK = 1 << 16


def frame(stream: int, data: bytes) -> bytes:
    """One multiplexed frame: ``[stream, 0, 0, 0, size (big-endian uint32)]`` + payload."""
    return struct.pack(">BxxxI", stream, len(data)) + data


def encoder(tty: bool) -> Callable[[int, bytes], bytes]:
    """Raw bytes for a tty, frames otherwise."""
    return (lambda _s, data: data) if tty else frame


def stream_type(request: web.Request, tty: bool) -> str:
    """The Content-Type of a logs/attach/exec stream: dockerd names the multiplexed form from API
    1.42 on; older clients get raw-stream for both."""
    version = tuple(int(p) for p in str(request.get("api_version") or "1.43").split("."))
    return RAW_STREAM if tty or version < (1, 42) else MULTIPLEXED_STREAM


detach_keys = parse_detach_keys  # the API's detachKeys parameter: the CLI's parser


def dumps(obj: Any) -> bytes:
    return json.dumps(obj, separators=(",", ":")).encode() + b"\n"


async def json_stream(request: web.Request, items: AsyncIterator[Any], status: int = 200) -> web.StreamResponse:
    """Write ``items`` as Docker's JSON message stream, flushing each one."""
    resp = web.StreamResponse(status=status, headers={"Content-Type": "application/json"})
    await resp.prepare(request)
    try:
        async for item in items:
            await resp.write(dumps(item))
    except (ConnectionResetError, ConnectionError):
        return resp
    await resp.write_eof()
    return resp


# -- threads ----------------------------------------------------------------------------------
def run_in_thread(fn: Callable[[], T], name: str = "dockyard-api-stream") -> asyncio.Future[T]:
    """Run ``fn`` in a new daemon thread (not the default executor); its result as a future."""
    loop = asyncio.get_running_loop()
    fut: asyncio.Future[T] = loop.create_future()

    def done(ok: bool, value: Any) -> None:
        if fut.done():
            return
        if ok:
            fut.set_result(value)
        else:
            fut.set_exception(value)

    def body() -> None:
        try:
            value = fn()
        except BaseException as exc:  # noqa: BLE001 - handed to the awaiting coroutine
            with contextlib.suppress(RuntimeError):  # loop closed: nobody waits any more
                loop.call_soon_threadsafe(done, False, exc)
            return
        with contextlib.suppress(RuntimeError):
            loop.call_soon_threadsafe(done, True, value)

    threading.Thread(target=body, name=name, daemon=True).start()
    return fut


async def iterate(make: Callable[[Callable[[], bool]], Iterable[T]], maxsize: int = 256) -> AsyncIterator[T]:
    """Iterate a blocking iterable in its own thread.  ``make(stopped)`` builds it; ``stopped()``
    turns true when the consumer has gone away (pass it on to generators that may idle for long,
    such as a followed log).  Exceptions of the iterable are raised here."""
    loop = asyncio.get_running_loop()
    queue: asyncio.Queue[tuple[str, Any]] = asyncio.Queue(maxsize)
    stop = threading.Event()

    def put(item: tuple[str, Any]) -> None:
        fut = asyncio.run_coroutine_threadsafe(queue.put(item), loop)
        while not stop.is_set():
            try:
                fut.result(0.5)
                return
            except TimeoutError:
                continue
        fut.cancel()

    def body() -> None:
        it: Iterator[T] | None = None
        try:
            it = iter(make(stop.is_set))
            for item in it:
                if stop.is_set():
                    break
                put(("item", item))
            put(("end", None))
        except BaseException as exc:  # noqa: BLE001 - re-raised in the consumer
            put(("error", exc))
        finally:
            close = getattr(it, "close", None)
            if close is not None:
                with contextlib.suppress(Exception):
                    close()

    threading.Thread(target=body, name="dockyard-api-iter", daemon=True).start()
    try:
        while True:
            kind, value = await queue.get()
            if kind == "end":
                return
            if kind == "error":
                raise value
            yield value
    finally:
        stop.set()
        with contextlib.suppress(asyncio.QueueEmpty):
            while True:
                queue.get_nowait()


class ThreadWriter:
    """A binary file object for a facade call running in another thread; every write is sent by
    ``send`` (a coroutine function) on the loop, and the writing thread waits for it -- the
    client's pace is the writer's.  A gone client raises BrokenPipeError in the writer."""

    def __init__(self, loop: asyncio.AbstractEventLoop, send: Callable[[bytes], Any], buffer: int = _CHUNK) -> None:
        self.loop = loop
        self.send = send
        self.buffer = buffer
        self._buf = bytearray()
        self.closed = False

    def write(self, data: bytes) -> int:
        if self.closed:
            raise BrokenPipeError("the client went away")
        self._buf += data
        if len(self._buf) >= self.buffer:
            self.flush()
        return len(data)

    def flush(self) -> None:
        if not self._buf or self.closed:
            return
        data, self._buf = bytes(self._buf), bytearray()
        try:
            asyncio.run_coroutine_threadsafe(self.send(data), self.loop).result()
        except (ConnectionError, RuntimeError, asyncio.CancelledError) as exc:
            self.closed = True
            raise BrokenPipeError("the client went away") from exc

    def writable(self) -> bool:
        return True


class ThreadReader(io.RawIOBase):
    """A blocking binary reader over a request body, for a facade call in another thread (PUT
    archive, image load): each read waits for the loop to deliver the next bytes."""

    def __init__(self, loop: asyncio.AbstractEventLoop, content: Any) -> None:
        self.loop = loop
        self.content = content  # aiohttp StreamReader

    def readable(self) -> bool:
        return True

    def readinto(self, b: Any) -> int:
        data = asyncio.run_coroutine_threadsafe(self.content.read(len(b)), self.loop).result()
        n = len(data)
        b[:n] = data
        return n


class NullWriter:
    """Discards what is written (a stream the client did not ask for)."""

    def write(self, data: bytes) -> int:
        return len(data)

    def flush(self) -> None:
        pass


# -- hijacked connections ---------------------------------------------------------------------
class _HijackProtocol(asyncio.Protocol):
    """The transport's protocol after the hijack: buffers input, keeps the connection open on the
    client's half-close, and hands connection_lost back to aiohttp's protocol for its bookkeeping."""

    HIGH_WATER = 1 << 20  # unread client input beyond this pauses reading from the socket

    def __init__(self, previous: asyncio.BaseProtocol, data: bytes) -> None:
        self.previous = previous
        self.transport: asyncio.Transport | None = None
        self.reading_paused = False
        self.buffer = bytearray(data)
        self.eof = False
        self.lost = False
        self._readable = asyncio.Event()
        if data:
            self._readable.set()
        self._writable = asyncio.Event()
        self._writable.set()

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        self._readable.set()
        if len(self.buffer) > self.HIGH_WATER and self.transport is not None and not self.reading_paused:
            self.transport.pause_reading()
            self.reading_paused = True

    def eof_received(self) -> bool:
        self.eof = True
        self._readable.set()
        return True  # keep our write side open: the output still has to reach the client

    def pause_writing(self) -> None:
        self._writable.clear()

    def resume_writing(self) -> None:
        self._writable.set()

    def connection_lost(self, exc: Exception | None) -> None:
        self.lost = self.eof = True
        self._readable.set()
        self._writable.set()
        with contextlib.suppress(Exception):
            self.previous.connection_lost(exc)


class _Collector:
    """Stands in for aiohttp's payload parser just long enough to receive its buffered bytes."""

    def __init__(self) -> None:
        self.data = bytearray()

    def feed_data(self, data: bytes) -> tuple[bool, bytes]:
        self.data += data
        return False, b""

    def feed_eof(self) -> None:
        pass


class _Taken(web.StreamResponse):
    """What a hijacking handler returns: the response head is already on the wire."""

    @property
    def prepared(self) -> bool:
        return True

    async def prepare(self, request: web.BaseRequest):  # type: ignore[override]
        return None

    async def write_eof(self, data: bytes = b"") -> None:
        return None


class Hijacked:
    """The raw connection of an attach or exec start, after the response head.

    Lifecycle: ``conn = await Hijacked.take(request, content_type)`` -> :meth:`read` (b"" once the
    client half-closed or left) / :meth:`write` -> :meth:`close`; the handler returns
    ``conn.response``.
    """

    def __init__(self, request: web.Request, transport: asyncio.Transport, protocol: _HijackProtocol) -> None:
        self.request = request
        self.transport = transport
        self.protocol = protocol
        self.response = _Taken(status=101)

    @classmethod
    async def take(cls, request: web.Request, content_type: str, headers: dict[str, str] | None = None) -> Hijacked:
        transport = request.transport
        aio_protocol = request.protocol
        if transport is None or aio_protocol is None or transport.is_closing():
            raise ConnectionResetError("the client went away")
        upgrade = "upgrade" in request.headers.get("Connection", "").lower() and \
            request.headers.get("Upgrade", "").lower() == "tcp"
        head = "HTTP/1.1 101 UPGRADED\r\n" if upgrade else "HTTP/1.1 200 OK\r\n"
        lines = {"Content-Type": content_type, **({"Connection": "Upgrade", "Upgrade": "tcp"} if upgrade else {}),
                 "Api-Version": request.get("api_version", ""), **(headers or {})}
        head += "".join(f"{k}: {v}\r\n" for k, v in lines.items() if v) + "\r\n"
        collector = _Collector()
        with contextlib.suppress(AssertionError, AttributeError):
            aio_protocol.set_parser(collector)  # type: ignore[attr-defined]  # aiohttp's buffered bytes
        protocol = _HijackProtocol(aio_protocol, bytes(collector.data))
        protocol.transport = transport
        transport.set_protocol(protocol)
        with contextlib.suppress(AttributeError, RuntimeError):
            if not transport.is_reading():
                transport.resume_reading()
        transport.write(head.encode("latin-1"))
        conn = cls(request, transport, protocol)
        conn.response.force_close()  # aiohttp closes the connection after the handler: no keep-alive
        return conn

    @property
    def closed(self) -> bool:
        return self.protocol.lost or self.transport.is_closing()

    async def read(self, n: int = _CHUNK) -> bytes:
        p = self.protocol
        while not p.buffer:
            if p.eof:
                return b""
            p._readable.clear()
            await p._readable.wait()
        data = bytes(p.buffer[:n])
        del p.buffer[:n]
        if p.reading_paused and len(p.buffer) < p.HIGH_WATER // 4 and not p.lost:
            p.reading_paused = False
            with contextlib.suppress(RuntimeError):
                self.transport.resume_reading()
        return data

    async def write(self, data: bytes) -> None:
        if self.closed:
            raise ConnectionResetError("the client went away")
        self.transport.write(data)
        await self.protocol._writable.wait()
        if self.protocol.lost:
            raise ConnectionResetError("the client went away")

    def write_eof(self) -> None:
        with contextlib.suppress(Exception):
            if self.transport.can_write_eof():
                self.transport.write_eof()

    def close(self) -> None:
        self.transport.close()


class ThreadStdio:
    """stdin/stdout/stderr file objects for a blocking attach or exec running in another thread,
    connected to a hijacked connection.

    The facade reads ``stdin`` (a pipe; :meth:`pump_stdin` copies the client's input into it and
    closes it at the client's half-close) and writes ``stdout``/``stderr`` (each write becomes one
    frame, or raw bytes with a tty, on the connection).
    """

    def __init__(self, conn: Hijacked, tty: bool, loop: asyncio.AbstractEventLoop) -> None:
        self.conn = conn
        encode = encoder(tty)
        self.stdout = ThreadWriter(loop, lambda data: conn.write(encode(STDOUT, data)), buffer=0)
        self.stderr = ThreadWriter(loop, lambda data: conn.write(encode(STDERR, data)), buffer=0)
        r, w = os.pipe2(os.O_CLOEXEC)
        self.stdin = os.fdopen(r, "rb", buffering=0)
        self._stdin_w = w
        os.set_blocking(w, False)
        self._w_lock = threading.Lock()

    async def pump_stdin(self, forward: bool = True, on_disconnect: bytes = b"") -> None:
        """Copy the client's input into the stdin pipe (or, without ``forward``, only watch the
        connection) until the client half-closes -- with ``forward`` the pipe is closed then: end
        of input -- or disconnects: ``on_disconnect`` is written first (e.g. the detach keys, so an
        attach lets go of the container without closing its stdin) and the pipe is closed."""
        loop = asyncio.get_running_loop()
        try:
            while True:
                data = await self.conn.read()
                if not data:
                    if self.conn.protocol.lost:
                        if on_disconnect:
                            await self._write(loop, on_disconnect)
                        self.close_stdin()
                    elif forward:
                        self.close_stdin()
                    return
                if forward:
                    await self._write(loop, data)
        except OSError:
            self.close_stdin()

    async def _write(self, loop: asyncio.AbstractEventLoop, data: bytes) -> None:
        view = memoryview(data)
        while view:
            try:
                with self._w_lock:
                    if self._stdin_w < 0:
                        return
                    n = os.write(self._stdin_w, view)
                view = view[n:]
            except BlockingIOError:
                await asyncio.sleep(0.01)

    def close_stdin(self) -> None:
        with self._w_lock:
            if self._stdin_w >= 0:
                os.close(self._stdin_w)
                self._stdin_w = -1

    def close(self) -> None:
        self.close_stdin()
        with contextlib.suppress(OSError):
            self.stdin.close()
