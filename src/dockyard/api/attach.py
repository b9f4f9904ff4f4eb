"""``docker run``'s flow: attach (hijacked), start, wait -- and the exits this server records.

The docker CLI's order for ``docker run`` (and ``docker start -a``): ``attach`` while the container
is only created -- conmon does not exist yet, so the attach is parked (:class:`Attachment`);
``wait?condition=next-exit`` (or ``removed`` for ``--rm``), answered from the event log; ``start``,
whose ``on_created`` hook connects the parked attachments to conmon before the process runs, so no
output is missed.  This server then watches the container's init process (a pidfd,
:class:`ExitWatch`) and records the exit itself, holding the container's client lock as
``dockyard run`` does, so that conmon's exit command need not start a dockyard process; the
``die`` (and with ``--rm`` ``destroy``) event it writes ends the wait.  If this server goes away,
the lock goes with it and conmon's exit command does the work, as for any daemonless container.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import logging
import os
import threading
import time
from typing import Any

from aiohttp import web

from dockyard.api.app import ENGINE, call, engine_of, query_bool, query_int, route
from dockyard.api.streams import (
    STDERR,
    STDOUT,
    Hijacked,
    NullWriter,
    ThreadStdio,
    detach_keys,
    dumps,
    encoder,
    iterate,
    stream_type,
)
from dockyard.api.system import event_hub
from dockyard.containers.store import ACTIVE
from dockyard.errors import DockyardError, InvalidArgument, NotFound

ATTACHMENTS = web.AppKey("attachments", dict)
EXIT_WATCH = web.AppKey("exit_watch", object)
log = logging.getLogger("dockyard.api")


def _get(request: web.Request):
    return call(engine_of(request).containers.get, request.match_info["id"])


class Attachment:
    """One attach request's proxy: the facade's blocking attach in a thread of its own, between
    conmon's attach socket and the hijacked connection.  Parked until the container's monitor
    exists (start's ``on_created`` calls :meth:`begin`), or begun at once for a running container.

    It is parked *before* the response head goes out: the docker CLI sends ``start`` as soon as it
    has the head, and output produced before the attachment connects would be lost."""

    def __init__(self, engine, cid: str, stdout: bool, stderr: bool, keys: bytes) -> None:
        self.engine = engine
        self.cid = cid
        self.want_stdout, self.want_stderr = stdout, stderr
        self.stdio: ThreadStdio | None = None
        self.keys = keys
        self.connected = threading.Event()
        self.loop = asyncio.get_running_loop()
        self.done: asyncio.Future[bool] = self.loop.create_future()
        self.begun = False
        self._lock = threading.Lock()

    def begin(self) -> None:
        """Connect now (any thread; once; after :attr:`stdio` is set).  :attr:`connected` is set
        when conmon holds the connection, or when connecting failed (:attr:`done` has the error)."""
        with self._lock:
            if self.begun or self.stdio is None:
                return
            self.begun = True
        stdio = self.stdio

        def report(ok: bool, value: Any) -> None:
            if not self.done.done():
                self.done.set_result(value) if ok else self.done.set_exception(value)

        def body() -> None:
            try:
                detached = self.engine.containers.io.attach(
                    self.cid, stdin=stdio.stdin, stdout=stdio.stdout if self.want_stdout else NullWriter(),
                    stderr=stdio.stderr if self.want_stderr else NullWriter(), detach_keys=self.keys,
                    on_attached=self.connected.set)
                result: tuple[bool, Any] = (True, detached)
            except BaseException as exc:  # noqa: BLE001 - handed to the handler
                result = (False, exc)
            self.connected.set()
            with contextlib.suppress(RuntimeError):
                self.loop.call_soon_threadsafe(report, *result)

        threading.Thread(target=body, name="dockyard-api-attach", daemon=True).start()


async def _replay_logs(engine, conn: Hijacked, rec, stdout: bool, stderr: bool) -> None:
    encode = encoder(rec.spec.tty)
    async for f in iterate(lambda stopped: engine.containers.io.logs(rec.id, stop=stopped)):
        if (f.stream == "stderr" and stderr) or (f.stream == "stdout" and stdout):
            await conn.write(encode(STDERR if f.stream == "stderr" else STDOUT, f.data))


async def attach(request: web.Request) -> web.StreamResponse:
    engine = engine_of(request)
    rec = await _get(request)
    want_stdin, want_stdout, want_stderr = (query_bool(request, k) for k in ("stdin", "stdout", "stderr"))
    keys = detach_keys(request.query.get("detachKeys"))
    stream, logs = query_bool(request, "stream"), query_bool(request, "logs")
    if not (stream or logs):
        raise InvalidArgument("Bad parameters: you must choose at least one stream")
    a = Attachment(engine, rec.id, want_stdout, want_stderr, keys) if stream else None
    parked: list[Attachment] = []
    if a is not None and rec.state not in ("running", "paused"):
        parked = request.app[ATTACHMENTS].setdefault(rec.id, [])
        parked.append(a)
    try:
        conn = await Hijacked.take(request, stream_type(request, rec.spec.tty))
        if a is not None:
            a.stdio = ThreadStdio(conn, rec.spec.tty, asyncio.get_running_loop())  # before any await
        engine.events.container("attach", rec)
        try:
            if logs:
                await _replay_logs(engine, conn, rec, want_stdout, want_stderr)
            if a is not None:
                await _attach_stream(engine, conn, rec, a, want_stdin and rec.spec.open_stdin, bool(parked))
        except (ConnectionError, BrokenPipeError):
            pass
        except DockyardError as exc:
            with contextlib.suppress(ConnectionError):
                await conn.write(encoder(rec.spec.tty)(STDERR, f"Error: {exc}\n".encode()))
        finally:
            conn.write_eof()
            conn.close()
            if a is not None and a.stdio is not None:
                a.stdio.close()
        return conn.response
    finally:
        if a in parked:
            parked.remove(a)
            if not parked:
                request.app[ATTACHMENTS].pop(rec.id, None)


async def _attach_stream(engine, conn: Hijacked, rec, a: Attachment, stdin: bool, parked: bool) -> None:
    assert a.stdio is not None
    pump = asyncio.ensure_future(a.stdio.pump_stdin(forward=stdin, on_disconnect=a.keys))
    try:
        if not parked:
            a.begin()
        # Parked: start (here, or by another dockyard process) connects it.
        while not a.begun:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(asyncio.shield(a.done), 1.0)
            if a.begun or conn.closed:
                break
            try:
                now = await call(engine.containers.get, rec.id, reconcile=False)
            except NotFound:
                return
            if now.state == "running" and now.generation > rec.generation:
                a.begin()  # started elsewhere: connect late rather than never
        if a.begun:
            await a.done
    finally:
        pump.cancel()
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await pump


async def resize(request: web.Request) -> web.Response:
    h, w = query_int(request, "h", 0), query_int(request, "w", 0)
    await call(engine_of(request).containers.io.resize, request.match_info["id"], h, w)
    return web.Response(status=200)


class ExitWatch:
    """Records the exit of containers this server started (restart policy "no"): holds each one's
    client lock (so conmon's exit command stands by) and watches its init process with a pidfd."""

    def __init__(self, engine) -> None:
        self.engine = engine
        self.watched: dict[str, tuple[int, int]] = {}   # cid -> (pidfd, lock fd)

    def lock(self, rec) -> tuple[int, Any] | None:
        """Take the container's client lock (non-blocking); (fd, path) or None if someone has it."""
        path = self.engine.containers.store.dir(rec.id) / "client.lock"
        try:
            fd = os.open(path, os.O_CREAT | os.O_RDWR | os.O_CLOEXEC, 0o600)
        except OSError:
            return None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            os.close(fd)
            return None
        return fd, path

    def watch(self, rec, lock_fd: int) -> None:
        loop = asyncio.get_running_loop()
        try:
            pidfd = os.pidfd_open(rec.pid) if rec.pid else -1
        except OSError:
            pidfd = -1
        if pidfd < 0:
            loop.create_task(self._record(rec.id, rec.generation, lock_fd))
            return
        self.watched[rec.id] = (pidfd, lock_fd)

        def exited() -> None:
            loop.remove_reader(pidfd)
            os.close(pidfd)
            self.watched.pop(rec.id, None)
            loop.create_task(self._record(rec.id, rec.generation, lock_fd))

        loop.add_reader(pidfd, exited)

    async def _record(self, cid: str, generation: int, lock_fd: int) -> None:
        try:
            await call(self.engine.containers.lifecycle.attached_exit, cid, generation)
        except (DockyardError, OSError) as exc:
            log.debug("recording the exit of %s: %s", cid, exc)
        finally:
            os.close(lock_fd)

    def close(self) -> None:
        """Let go of every watched container: their exits fall to conmon's exit command."""
        loop = asyncio.get_event_loop()
        for pidfd, lock_fd in self.watched.values():
            with contextlib.suppress(Exception):
                loop.remove_reader(pidfd)
            for fd in (pidfd, lock_fd):
                with contextlib.suppress(OSError):
                    os.close(fd)
        self.watched.clear()


async def start(request: web.Request) -> web.Response:
    engine = engine_of(request)
    rec = await _get(request)
    if rec.state == "running":
        return web.Response(status=304)
    if request.query.get("checkpoint"):
        raise InvalidArgument("checkpoints are not supported")
    parked = list(request.app[ATTACHMENTS].get(rec.id, []))
    watch: ExitWatch = request.app[EXIT_WATCH]

    def on_created(_created) -> None:
        for a in parked:
            a.begin()
        for a in parked:
            a.connected.wait(30)

    lock = watch.lock(rec) if rec.spec.restart_policy.name == "no" else None
    try:
        started = await call(engine.containers.start, rec.id, on_created=on_created if parked else None,
                             client_lock=lock[1] if lock else None)
    except BaseException as exc:
        if lock:
            os.close(lock[0])
        if isinstance(exc, DockyardError) and rec.spec.auto_remove:
            # dockerd removes an AutoRemove container whose start failed; the CLI waits for that
            with contextlib.suppress(DockyardError):
                await call(engine.containers.remove, rec.id, force=True, volumes=True)
        raise
    if lock:
        if started.state in ACTIVE and started.generation > rec.generation:
            watch.watch(started, lock[0])
        else:
            os.close(lock[0])
    return web.Response(status=204)


async def wait(request: web.Request) -> web.StreamResponse:
    """Block until the condition; Docker sends the headers at once, then ``{"StatusCode": n}``."""
    engine = engine_of(request)
    condition = request.query.get("condition") or "not-running"
    if condition not in ("not-running", "next-exit", "removed"):
        raise InvalidArgument(f"invalid condition: {condition!r}")
    with event_hub(request).subscribe() as sub:  # subscribed before looking: nothing slips between
        rec = await _get(request)
        resp = web.StreamResponse(headers={"Content-Type": "application/json"})
        await resp.prepare(request)
        code = await _wait_for(engine, sub, rec, condition)
        with contextlib.suppress(ConnectionError):
            await resp.write(dumps({"StatusCode": code, "Error": None}))
            await resp.write_eof()
        return resp


async def _wait_for(engine, sub, rec, condition: str) -> int:
    code = rec.exit_code
    if condition == "not-running" and rec.state not in ACTIVE:
        return code
    last_check = time.monotonic()
    while True:
        ev = await sub.get(timeout=2.0)
        if ev is not None:
            if ev.type != "container" or ev.actor_id != rec.id or ev.time_nano < sub.since_ns:
                continue
            if ev.action == "die":
                with contextlib.suppress(ValueError):
                    code = int(ev.attributes.get("exitCode", code))
                if condition != "removed":
                    return code
            elif ev.action == "destroy":
                return code
            continue
        if time.monotonic() - last_check < 2.0:
            continue
        # Nothing for a while: ask (reconciles a container whose monitor died without telling).
        last_check = time.monotonic()
        try:
            now = await call(engine.containers.get, rec.id)
        except NotFound:
            return code
        if now.state not in ACTIVE and condition != "removed" and (
                condition == "not-running" or now.generation > rec.generation or now.finished_at > rec.finished_at):
            return now.exit_code


def setup_app(app: web.Application) -> None:
    app[ATTACHMENTS] = {}
    watch = ExitWatch(app[ENGINE])
    app[EXIT_WATCH] = watch

    async def close(_app: web.Application) -> None:
        watch.close()

    app.on_shutdown.append(close)


def setup_routes(router: web.UrlDispatcher) -> None:
    route(router, "POST", "/containers/{id}/attach", attach)
    route(router, "POST", "/containers/{id}/resize", resize)
    route(router, "POST", "/containers/{id}/start", start)
    route(router, "POST", "/containers/{id}/wait", wait)
