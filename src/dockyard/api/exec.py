"""Exec instances: ``POST /containers/{id}/exec``, ``/exec/{id}/start|resize|json``.

dockerd keeps exec instances in memory; so does this server (:class:`ExecInstance`, per
application): the configuration from create, and once started whether it runs, its exit code and
its session directory (for resize).  The process itself is the facade's exec (conmon holds its
stdio; engine/container_io.py), run in a thread of its own and proxied over the hijacked
connection, as attach is.

After a foreground start the docker CLI reads the exit code with ``GET /exec/{id}/json`` as soon
as the stream ends, so the exit code is stored before the connection is closed.  An exec that
cannot start (command not found) is reported as dockerd does: the error text on the stream and
exit code 126/127 in the instance.
"""

from __future__ import annotations

import asyncio
import contextlib
import secrets
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from aiohttp import web

from dockyard.api.app import call, engine_of, json_body, query_int, route
from dockyard.api.streams import (
    STDOUT,
    Hijacked,
    NullWriter,
    ThreadStdio,
    detach_keys,
    encoder,
    run_in_thread,
    stream_type,
)
from dockyard.errors import Conflict, DockyardError, InvalidArgument, NotFound

EXECS = web.AppKey("execs", dict)
KEEP_FINISHED = 600.0  # seconds an ended instance stays inspectable


@dataclass
class ExecInstance:
    id: str
    container_id: str
    cmd: list[str]
    tty: bool = False
    attach_stdin: bool = False
    attach_stdout: bool = True
    attach_stderr: bool = True
    env: list[str] = field(default_factory=list)
    user: str = ""
    workdir: str = ""
    privileged: bool = False
    detach_keys: str = ""
    running: bool = False
    started: bool = False
    exit_code: int | None = None
    ended_at: float = 0.0
    session: Path | None = None

    def view(self) -> dict[str, Any]:
        return {
            "ID": self.id, "Running": self.running, "ExitCode": self.exit_code,
            "ProcessConfig": {"tty": self.tty, "entrypoint": self.cmd[0] if self.cmd else "",
                              "arguments": self.cmd[1:], "privileged": self.privileged, "user": self.user},
            "OpenStdin": self.attach_stdin, "OpenStderr": self.attach_stderr, "OpenStdout": self.attach_stdout,
            "CanRemove": False, "ContainerID": self.container_id, "DetachKeys": self.detach_keys, "Pid": 0,
        }


def _instance(request: web.Request) -> ExecInstance:
    inst = request.app[EXECS].get(request.match_info["id"])
    if inst is None:
        raise NotFound(f"No such exec instance: {request.match_info['id']}")
    return inst


def _forget_old(execs: dict[str, ExecInstance]) -> None:
    cutoff = time.time() - KEEP_FINISHED
    for k in [k for k, v in execs.items() if v.ended_at and v.ended_at < cutoff]:
        del execs[k]


async def create(request: web.Request) -> web.Response:
    engine = engine_of(request)
    body = await json_body(request)
    cmd = body.get("Cmd") or []
    if isinstance(cmd, str):
        cmd = [cmd]
    if not cmd:
        raise InvalidArgument("No exec command specified")
    rec = await call(engine.containers.get, request.match_info["id"])
    if rec.state == "paused":
        raise Conflict(f"Container {rec.id} is paused, unpause the container before exec")
    if rec.state != "running":
        raise Conflict(f"Container {rec.id} is not running")
    if body.get("DetachKeys"):
        detach_keys(body["DetachKeys"])
    inst = ExecInstance(
        id=secrets.token_hex(32), container_id=rec.id, cmd=[str(c) for c in cmd], tty=bool(body.get("Tty")),
        attach_stdin=bool(body.get("AttachStdin")), attach_stdout=bool(body.get("AttachStdout")),
        attach_stderr=bool(body.get("AttachStderr")), env=[e for e in body.get("Env") or [] if "=" in e],
        user=body.get("User") or "", workdir=body.get("WorkingDir") or "", privileged=bool(body.get("Privileged")),
        detach_keys=body.get("DetachKeys") or "",
    )
    execs = request.app[EXECS]
    _forget_old(execs)
    execs[inst.id] = inst
    engine.events.container("exec_create: " + " ".join(inst.cmd), rec, execID=inst.id)
    return web.json_response({"Id": inst.id}, status=201)


def _run(engine, inst: ExecInstance, *, detach: bool, stdin=None, stdout=None, stderr=None) -> int:
    def on_session(path: Path) -> None:
        inst.session = path

    return engine.containers.io.exec(
        inst.container_id, inst.cmd, tty=inst.tty, interactive=inst.attach_stdin and not detach, detach=detach,
        env=inst.env, user=inst.user or None, workdir=inst.workdir or None, privileged=inst.privileged,
        stdin=stdin, stdout=stdout, stderr=stderr, on_session=on_session)


async def start(request: web.Request) -> web.StreamResponse:
    engine = engine_of(request)
    inst = _instance(request)
    body = await json_body(request)
    if inst.started:
        raise Conflict(f"Error: Exec command {inst.id} has already run")
    rec = await call(engine.containers.get, inst.container_id)
    if rec.state != "running":
        raise Conflict(f"Container {rec.id} is not running")
    inst.started = inst.running = True
    tty = bool(body.get("Tty", inst.tty))
    inst.tty = tty
    if body.get("Detach"):
        try:
            await call(_run, engine, inst, detach=True)
        except BaseException:
            inst.running, inst.ended_at = False, time.time()
            raise
        return web.Response(status=200)
    conn = await Hijacked.take(request, stream_type(request, tty))
    loop = asyncio.get_running_loop()
    stdio = ThreadStdio(conn, tty, loop)
    pump = asyncio.ensure_future(stdio.pump_stdin(forward=inst.attach_stdin))
    try:
        try:
            code = await run_in_thread(lambda: _run(
                engine, inst, detach=False, stdin=stdio.stdin if inst.attach_stdin else None,
                stdout=stdio.stdout if inst.attach_stdout else NullWriter(),
                stderr=stdio.stderr if inst.attach_stderr else NullWriter()), "dockyard-api-exec")
        except DockyardError as exc:
            code = exc.exit_code if exc.exit_code in (126, 127) else 126
            with contextlib.suppress(ConnectionError):
                await conn.write(encoder(tty)(STDOUT, f"{exc}\r\n".encode()))
        except (ConnectionError, BrokenPipeError):
            code = None
        inst.exit_code = code
    finally:
        inst.running, inst.ended_at = False, time.time()
        pump.cancel()
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await pump
        conn.write_eof()
        conn.close()
        stdio.close()
    return conn.response


async def resize(request: web.Request) -> web.Response:
    inst = _instance(request)
    h, w = query_int(request, "h", 0), query_int(request, "w", 0)
    if not inst.running or inst.session is None:
        raise Conflict(f"Exec {inst.id} is not running")
    if inst.tty:
        await call(engine_of(request).containers.io.resize_exec, inst.session, h, w)
    return web.Response(status=200)


async def inspect(request: web.Request) -> web.Response:
    return web.json_response(_instance(request).view())


def setup_app(app: web.Application) -> None:
    app[EXECS] = {}


def setup_routes(router: web.UrlDispatcher) -> None:
    route(router, "POST", "/containers/{id}/exec", create)
    route(router, "POST", "/exec/{id}/start", start)
    route(router, "POST", "/exec/{id}/resize", resize)
    route(router, "GET", "/exec/{id}/json", inspect)
