"""Docker's stream wire forms (api/streams.py): multiplexed frames, JSON streams, and hijacked
connections -- the 101 UPGRADED head, raw bytes both ways, and output still flowing after the
client half-closes (docker's CloseWrite) -- on a real aiohttp server and raw sockets."""

from __future__ import annotations

import asyncio
import json
import socket
import struct
import threading

import pytest
from aiohttp import web

from dockyard.api.streams import (
    MULTIPLEXED_STREAM,
    RAW_STREAM,
    STDERR,
    STDOUT,
    Hijacked,
    ThreadStdio,
    frame,
    iterate,
    json_stream,
    run_in_thread,
)


def test_frame_header_is_stream_three_zeros_and_big_endian_size():
    f = frame(STDERR, b"hello")
    assert f[:8] == bytes([2, 0, 0, 0, 0, 0, 0, 5]) and f[8:] == b"hello"
    big = frame(STDOUT, b"x" * 70000)
    assert struct.unpack(">BxxxI", big[:8]) == (1, 70000)


def parse_frames(data: bytes) -> list[tuple[int, bytes]]:
    out = []
    while data:
        stream, size = struct.unpack(">BxxxI", data[:8])
        out.append((stream, data[8:8 + size]))
        data = data[8 + size:]
    return out


class Server:
    """An aiohttp app on a loop in a background thread, on 127.0.0.1."""

    def __init__(self, app: web.Application) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()

        async def start() -> tuple[web.AppRunner, int]:
            runner = web.AppRunner(app, handle_signals=False)
            await runner.setup()
            site = web.TCPSite(runner, "127.0.0.1", 0)
            await site.start()
            return runner, site._server.sockets[0].getsockname()[1]

        self.runner, self.port = asyncio.run_coroutine_threadsafe(start(), self.loop).result(10)

    def close(self) -> None:
        asyncio.run_coroutine_threadsafe(self.runner.cleanup(), self.loop).result(10)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(5)


def echo_app() -> web.Application:
    """A hijacking handler: everything the client sends, upper-cased, after its half-close;
    a request body (like exec start's JSON) is read before the hijack."""

    async def handler(request: web.Request) -> web.StreamResponse:
        body = await request.read()
        conn = await Hijacked.take(request, RAW_STREAM)
        got = b""
        while chunk := await conn.read():
            got += chunk
        await conn.write(b"body=" + body + b";in=" + got.upper())
        conn.write_eof()
        conn.close()
        return conn.response

    async def stream(request: web.Request) -> web.StreamResponse:
        async def items():
            for i in range(3):
                yield {"n": i}

        return await json_stream(request, items())

    app = web.Application()
    app.router.add_post("/hijack", handler)
    app.router.add_get("/stream", stream)
    return app


def read_head(s: socket.socket) -> bytes:
    """The response head; clients (the docker CLI, docker-py) send stdin only after it."""
    head = b""
    while not head.endswith(b"\r\n\r\n"):
        chunk = s.recv(1)
        assert chunk, f"connection closed after {head!r}"
        head += chunk
    return head


def recv_all(s: socket.socket) -> bytes:
    data = b""
    while chunk := s.recv(65536):
        data += chunk
    return data


@pytest.fixture
def server():
    srv = Server(echo_app())
    try:
        yield srv
    finally:
        srv.close()


def test_upgrade_answers_101_and_keeps_writing_after_half_close(server):
    s = socket.create_connection(("127.0.0.1", server.port), timeout=10)
    body = b'{"Detach":false}'
    s.sendall(b"POST /hijack HTTP/1.1\r\nHost: x\r\nConnection: Upgrade\r\nUpgrade: tcp\r\n"
              b"Content-Type: application/json\r\nContent-Length: %d\r\n\r\n%s" % (len(body), body))
    head = read_head(s)
    s.sendall(b"first ")
    s.sendall(b"second")
    s.shutdown(socket.SHUT_WR)  # docker's CloseWrite: no more input, still reading
    rest = recv_all(s)
    s.close()
    lines = head.split(b"\r\n")
    assert lines[0] == b"HTTP/1.1 101 UPGRADED"
    assert b"Content-Type: application/vnd.docker.raw-stream" in lines
    assert b"Connection: Upgrade" in lines and b"Upgrade: tcp" in lines
    assert rest == b'body={"Detach":false};in=FIRST SECOND'


def test_without_upgrade_the_head_is_200_and_the_socket_is_still_hijacked(server):
    s = socket.create_connection(("127.0.0.1", server.port), timeout=10)
    s.sendall(b"POST /hijack HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n\r\n")
    head = read_head(s)
    assert head.startswith(b"HTTP/1.1 200 OK\r\n")
    assert b"Upgrade" not in head
    s.sendall(b"raw bytes after the head")
    s.shutdown(socket.SHUT_WR)
    assert recv_all(s) == b"body=;in=RAW BYTES AFTER THE HEAD"
    s.close()


def test_json_stream_is_one_object_per_line(server):
    s = socket.create_connection(("127.0.0.1", server.port), timeout=10)
    s.sendall(b"GET /stream HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
    data = recv_all(s)
    s.close()
    head, _, body = data.partition(b"\r\n\r\n")
    assert b"Content-Type: application/json" in head
    # chunked transfer encoding: take the JSON lines out of the chunks
    lines = [ln for ln in body.split(b"\r\n") if ln.startswith(b"{")]
    assert [json.loads(x.decode().strip()) for x in lines] == [{"n": 0}, {"n": 1}, {"n": 2}]


def test_thread_stdio_bridges_a_blocking_proxy_to_the_connection():
    """What attach and exec do: a thread reads the stdin pipe and writes stdout/stderr; the client
    sees multiplexed frames and its half-close ends the thread's input."""

    async def handler(request: web.Request) -> web.StreamResponse:
        conn = await Hijacked.take(request, MULTIPLEXED_STREAM)
        stdio = ThreadStdio(conn, tty=False, loop=asyncio.get_running_loop())
        pump = asyncio.ensure_future(stdio.pump_stdin())

        def proxy() -> int:
            data = stdio.stdin.read()  # until the client's half-close
            stdio.stdout.write(b"out:" + data)
            stdio.stderr.write(b"err:" + data[::-1])
            return 7

        code = await run_in_thread(proxy)
        await pump
        await conn.write(frame(STDOUT, b"code=%d" % code))
        conn.close()
        stdio.close()
        return conn.response

    app = web.Application()
    app.router.add_post("/attach", handler)
    srv = Server(app)
    try:
        s = socket.create_connection(("127.0.0.1", srv.port), timeout=10)
        s.sendall(b"POST /attach HTTP/1.1\r\nHost: x\r\nConnection: Upgrade\r\nUpgrade: tcp\r\n\r\n")
        head = read_head(s)
        s.sendall(b"abc")
        s.shutdown(socket.SHUT_WR)
        rest = recv_all(s)
        s.close()
        assert b"application/vnd.docker.multiplexed-stream" in head
        assert parse_frames(rest) == [(1, b"out:abc"), (2, b"err:cba"), (1, b"code=7")]
    finally:
        srv.close()


def test_iterate_runs_a_blocking_iterator_and_stops_it_when_the_consumer_leaves():
    stopped = threading.Event()

    def endless(is_stopped):
        i = 0
        while not is_stopped():
            yield i
            i += 1
        stopped.set()

    async def main() -> list[int]:
        got = []
        agen = iterate(endless)
        async for v in agen:
            got.append(v)
            if len(got) == 5:
                break
        await agen.aclose()
        return got

    assert asyncio.run(main()) == [0, 1, 2, 3, 4]
    assert stopped.wait(5)

    def failing(_):
        yield 1
        raise ValueError("boom")

    async def drain() -> None:
        async for _ in iterate(failing):
            pass

    with pytest.raises(ValueError, match="boom"):
        asyncio.run(drain())
