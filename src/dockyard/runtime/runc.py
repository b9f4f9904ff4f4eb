"""The OCI runtime driver: runc for the container lifecycle, conmon (see conmon.py) as its monitor.

Every runc call gets ``--root <state_root>``: one runc state directory per dockyard data root, so
a test (or a second dockyard installation) with its own data root never sees anyone else's
containers.  ``--log-format json`` makes runc's errors one JSON line each, which
:func:`runc_error_message` unpacks; :func:`runtime_error` turns the text into an error kind.

Lifecycle of a container, as the engine drives it::

    rt.create(cid, bundle, ...)   conmon + `runc create`: CREATED, init waits; -> ContainerProcess
    rt.attach(cid, ...)           optional, before start, so no output is missed
    rt.start(cid)                 `runc start`: RUNNING
    rt.state(cid)                 `runc state` -- the truth, whoever started the container
    rt.kill(cid, "TERM")          ... the process exits; conmon writes exit_dir/<cid>
    rt.read_exit_code(exit_dir, cid), rt.oom_killed(persist_dir, bundle)
    rt.delete(cid)                `runc delete`: forgets it (force=True kills it first)

Exec sessions run through conmon too (``conmon --exec``), in ``<bundle>/exec/<session>/``: conmon
holds the session's pty or pipes, which is what lets a ``-t`` exec work when dockyard's stdio is
not a terminal (``runc exec -t`` without ``--detach`` insists on a terminal on its own stdio or
/dev/tty), lets a detached session keep its pty, and reports runc's errors separately from the
process's output.  Session directories are removed when the session ends (foreground) or by the
next exec once their conmon is gone (detached).

Errors: NotFound (runc does not know the container), Conflict (already exists; delete of a
running container), FailedPrecondition (not running, paused, stopped ...), InvalidArgument
(bad id; command not found -- exit_code 127), FailedPrecondition with exit_code 126 (command not
executable), Unavailable (runc or conmon missing or failing in an unexpected way).
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO

from dockyard.errors import (
    Conflict,
    DockyardError,
    FailedPrecondition,
    InvalidArgument,
    NotFound,
    Unavailable,
)
from dockyard.runtime import conmon as cm
from dockyard.runtime.conmon import ContainerProcess

__all__ = ["ContainerProcess", "RuncRuntime", "RuntimeState", "runc_error_message", "runtime_error"]

_ID = re.compile(r"^[\w+.-]+$")
_STATUSES = {"creating": "created", "created": "created", "running": "running", "paused": "paused",
             "stopped": "stopped"}
_LOGRUS_MSG = re.compile(r'msg="((?:[^"\\]|\\.)*)"')
_EXEC_FAILURE = re.compile(r'exec: "[^"]*": ')
DEFAULT_DETACH_KEYS = b"\x10\x11"  # Ctrl-P Ctrl-Q


@dataclass(frozen=True)
class RuntimeState:
    """What ``runc state`` says: status is created | running | paused | stopped | unknown."""

    id: str
    status: str
    pid: int
    bundle: Path | None = None


def runc_error_message(text: str) -> str:
    """runc's error out of its stderr: the ``msg`` of JSON or logrus lines, else the raw text."""
    found = []
    for line in text.splitlines():
        line = line.strip()
        if not line:
            continue
        try:
            obj = json.loads(line)
        except ValueError:
            obj = None
        if isinstance(obj, dict) and "msg" in obj:
            if obj.get("level", "error") in ("error", "fatal", "panic"):
                found.append(str(obj["msg"]))
            continue
        m = _LOGRUS_MSG.search(line)
        if m:
            found.append(re.sub(r"\\(.)", r"\1", m.group(1)))
        else:
            found.append(line)
    return found[-1] if found else text.strip()


def runtime_error(message: str, cid: str) -> DockyardError:
    """The error kind for a runc message (Docker's exit codes 126/127 for commands that cannot run)."""
    low = message.lower()
    if _EXEC_FAILURE.search(message):
        if "not found" in low or "no such file or directory" in low:
            return InvalidArgument(message, exit_code=127)
        return FailedPrecondition(message, exit_code=126)
    if "does not exist" in low:
        return NotFound(f"container {cid} does not exist in the runtime")
    if "exists" in low:
        return Conflict(message)
    if "not stopped" in low:
        return Conflict(message)
    return FailedPrecondition(message)


class RuncRuntime:
    """runc + conmon, for the containers of one data root (``state_root`` is runc's ``--root``).

    The object holds no container state: every method asks runc or reads conmon's files, so any
    number of dockyard processes (and threads) can use the same containers at once.
    """

    def __init__(self, state_root: Path, runc: str = "runc", conmon: str = "conmon") -> None:
        self.state_root = Path(state_root)
        self._runc = runc
        self._conmon = conmon
        # Bundles of the containers this object created: attach/resize right after create need
        # no `runc state` to find them.  A cache only (forgotten at delete); runc stays the truth.
        self._bundles: dict[str, Path] = {}

    # --- binaries and the runc CLI -------------------------------------------------------------

    @property
    def runc_path(self) -> str:
        return _which(self._runc)

    @property
    def conmon_path(self) -> str:
        return _which(self._conmon)

    def _runc_global(self) -> list[str]:
        return ["--root", str(self.state_root), "--log-format", "json"]

    def _run(self, cid: str, *args: str, input: bytes | None = None, timeout: float = 120) -> bytes:
        cmd = [self.runc_path, *self._runc_global(), *args]
        try:
            p = subprocess.run(cmd, input=input, capture_output=True, timeout=timeout, check=False)
        except subprocess.TimeoutExpired as exc:
            raise Unavailable(f"runc {args[0]} {cid}: no answer in {timeout:.0f}s") from exc
        if p.returncode != 0:
            raise runtime_error(runc_error_message(p.stderr.decode(errors="replace")), cid)
        return p.stdout

    # --- lifecycle -------------------------------------------------------------------------------

    def create(self, cid: str, bundle: Path, *, log_path: Path, exit_dir: Path, persist_dir: Path,
               tty: bool, stdin: bool, exit_command: list[str] | None, log_max_size: int | None = None,
               stdin_once: bool = False) -> ContainerProcess:
        """Create the container under a new conmon; it is CREATED (its init waits for :meth:`start`).

        ``stdin`` gives the container a stdin that attach clients write to.  ``stdin_once`` is
        Docker's StdinOnce: the container's stdin closes when the first attached client ends its
        input; otherwise (and always with a tty, as in Docker) stdin stays open across attaches.
        ``exit_command`` (argv; the program is resolved on PATH) runs when the container has exited
        and its exit code is written -- also after a failed create.  Stale exit/oom/pid files of an
        earlier run in the same directories are removed first.

        Raises InvalidArgument for a bad id or a missing command (exit_code 127), FailedPrecondition
        for other runc create failures (126 for a command that cannot be executed), Conflict if
        runc already has ``cid``, Unavailable if conmon fails.  On any failure no conmon and no runc
        container is left behind.
        """
        _check_id(cid)
        bundle = Path(bundle)
        if os.path.lexists(self.state_root / cid):  # what `runc create` itself checks; no `runc state`
            raise Conflict(f"container {cid} already exists in the runtime")
        for d in (self.state_root, exit_dir, persist_dir, log_path.parent):
            Path(d).mkdir(parents=True, exist_ok=True, mode=0o700)
        for stale in (bundle / "conmon.pid", bundle / "pidfile", bundle / "oom", Path(exit_dir) / cid,
                      Path(persist_dir) / "exit", Path(persist_dir) / "oom"):
            stale.unlink(missing_ok=True)
        argv = self._conmon_base(cid, cid, bundle) + [
            "--exit-dir", str(exit_dir), "--persist-dir", str(persist_dir),
            "-l", f"k8s-file:{log_path}",
        ]
        if log_max_size is not None and log_max_size > 0:
            argv += ["--log-size-max", str(log_max_size)]
        if tty:
            argv.append("-t")
        if stdin:
            argv.append("-i")
            if tty or not stdin_once:
                argv.append("--leave-stdin-open")
        if exit_command:
            argv += ["--exit-command", _which(exit_command[0])]
            for arg in exit_command[1:]:
                argv += ["--exit-command-arg", arg]
        launch = cm.ConmonLaunch(argv, cwd=bundle, pid_file=bundle / "conmon.pid")
        try:
            conmon_pid = launch.release()
            msg = launch.read_sync()
            if msg is None:
                raise Unavailable(f"conmon exited without creating {cid}: {launch.stderr_text() or '?'}")
            if msg.data <= 0:
                _wait_gone(conmon_pid, 5.0)  # it exits by itself (running the exit command)
                raise runtime_error(runc_error_message(msg.message) or "runc create failed", cid)
            self._bundles[cid] = bundle.absolute()
            return ContainerProcess(pid=msg.data, conmon_pid=conmon_pid)
        except BaseException as exc:
            launch.kill()
            if not isinstance(exc, Conflict):  # never remove a container someone else created
                with contextlib.suppress(DockyardError):
                    self.delete(cid, force=True)
            raise
        finally:
            launch.close()

    def _conmon_base(self, cid: str, uuid: str, socket_dir: Path) -> list[str]:
        runtime_args = []
        for arg in self._runc_global():
            runtime_args += ["--runtime-arg", arg]
        return [
            self.conmon_path, "--api-version", "1", "-c", cid, "-u", uuid, "-n", cid,
            "-r", self.runc_path, *runtime_args,
            "-b", str(socket_dir), "-p", str(socket_dir / "pidfile"),
            "-P", str(socket_dir / "conmon.pid"), "--full-attach", "--log-level", "error",
        ]

    def start(self, cid: str) -> None:
        """Run the created container's process. FailedPrecondition if it is not CREATED."""
        self._run(cid, "start", cid)

    def state(self, cid: str) -> RuntimeState:
        """``runc state``. NotFound if runc does not know ``cid``."""
        _check_id(cid)
        return _to_state(json.loads(self._run(cid, "state", cid)))

    def list_containers(self) -> list[RuntimeState]:
        """Every container runc knows under this state root."""
        if not self.state_root.exists():
            return []
        out = self._run("", "list", "--format", "json")
        return [_to_state(obj) for obj in json.loads(out or b"null") or []]

    def kill(self, cid: str, signal: str | int, all_processes: bool = False) -> None:
        """Send ``signal`` ("TERM", "SIGKILL", 9) to the init process (or every process).

        FailedPrecondition if the container is not running.
        """
        sig = str(int(signal)) if isinstance(signal, int) else signal
        self._run(cid, "kill", *(["--all"] if all_processes else []), cid, sig)

    def delete(self, cid: str, force: bool = False) -> None:
        """Forget a stopped container (``force``: kill it first). Conflict if it still runs."""
        self.begin_delete(cid, force)()

    def begin_delete(self, cid: str, force: bool = False) -> Callable[[], None]:
        """Start :meth:`delete` in the background; returns the function that waits for it and raises
        as :meth:`delete` does.  An exit's other clean-up runs meanwhile on the other core."""
        self._bundles.pop(cid, None)
        cmd = [self.runc_path, *self._runc_global(), "delete", *(["--force"] if force else []), cid]
        proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)

        def wait(timeout: float = 120) -> None:
            try:
                _, err = proc.communicate(timeout=timeout)
            except subprocess.TimeoutExpired as exc:
                proc.kill()
                proc.wait()
                raise Unavailable(f"runc delete {cid}: no answer in {timeout:.0f}s") from exc
            if proc.returncode != 0:
                raise runtime_error(runc_error_message(err.decode(errors="replace")), cid)

        return wait

    def pause(self, cid: str) -> None:
        self._run(cid, "pause", cid)

    def resume(self, cid: str) -> None:
        self._run(cid, "resume", cid)

    def update(self, cid: str, resources: dict[str, Any]) -> None:
        """Change cgroup limits; ``resources`` is OCI LinuxResources JSON (``runc update -r -``)."""
        self._run(cid, "update", "--resources", "-", cid, input=json.dumps(resources).encode())

    def ps(self, cid: str) -> list[int]:
        """Host pids of the container's processes."""
        return [int(p) for p in json.loads(self._run(cid, "ps", "--format", "json", cid) or b"null") or []]

    # --- files conmon writes ---------------------------------------------------------------------

    read_exit_code = staticmethod(cm.read_exit_code)
    oom_killed = staticmethod(cm.oom_killed)

    def conmon_pid(self, bundle: Path) -> int | None:
        """The pid of the container's conmon if it is still alive."""
        pid = cm.read_pid_file(Path(bundle) / "conmon.pid")
        return pid if pid and cm.process_alive(pid) else None

    # --- stdio -----------------------------------------------------------------------------------

    def _bundle(self, cid: str) -> Path:
        known = self._bundles.get(cid)
        if known is not None:
            return known
        st = self.state(cid)
        if st.bundle is None:
            raise Unavailable(f"runc does not say where the bundle of {cid} is")
        return st.bundle

    def attach(self, cid: str, *, stdin: BinaryIO | None, stdout: BinaryIO, stderr: BinaryIO, tty: bool,
               detach_keys: bytes = DEFAULT_DETACH_KEYS,
               on_attached: Callable[[], None] | None = None) -> bool:
        """Attach local streams to the container's stdio through conmon; blocks until the container
        exits (False) or the detach keys are typed (True).

        conmon does not replay output to late clients, so ``docker run``-style callers attach to the
        CREATED container and start it from ``on_attached``, which runs once the connection stands
        (an exception from it closes the connection and propagates).  See conmon.proxy_attach for
        terminal handling.  FailedPrecondition if the container has no monitor any more.
        """
        bundle = self._bundle(cid)
        sock = cm.connect_attach(bundle)
        if on_attached is not None:
            try:
                on_attached()
            except BaseException:
                sock.close()
                raise
        return cm.proxy_attach(sock, stdin=stdin, stdout=stdout, stderr=stderr, tty=tty,
                               detach_keys=detach_keys, socket_dir=bundle)

    def resize(self, cid: str, rows: int, cols: int) -> None:
        """Resize the container's pty (a no-op for containers without one)."""
        if rows <= 0 or cols <= 0:
            raise InvalidArgument(f"invalid terminal size {rows}x{cols}")
        cm.write_resize(self._bundle(cid), rows, cols)

    def exec(self, cid: str, process: dict[str, Any], *, tty: bool, detach: bool, stdin: bool,
             stdin_stream: BinaryIO | None = None, stdout_stream: BinaryIO | None = None,
             stderr_stream: BinaryIO | None = None, on_session: Callable[[Path], None] | None = None) -> int:
        """Run ``process`` (an OCI process object) in the running container; returns its exit code.

        In the foreground the session is connected to the given streams (default: this process's
        stdio; stdin only when ``stdin``); with ``tty`` the local terminal is put in raw mode and its
        size follows SIGWINCH.  ``detach`` returns 0 as soon as the process runs.  Raises
        FailedPrecondition if the container is not running, InvalidArgument (127) /
        FailedPrecondition (126) if the command cannot be started.
        """
        st = self.state(cid)
        if st.status != "running" or st.bundle is None:
            raise FailedPrecondition(f"container {cid} is not running")
        root = st.bundle / "exec"
        _sweep_sessions(root)
        session = root / os.urandom(8).hex()
        session.mkdir(parents=True, mode=0o700)
        if on_session is not None:
            on_session(session)  # e.g. a server that resizes the session's pty later
        (session / "process.json").write_text(json.dumps({**process, "terminal": tty}))
        argv = self._conmon_base(cid, session.name, session) + [
            "-e", "--exec-process-spec", str(session / "process.json"),
            "--exit-dir", str(session), "--persist-dir", str(session), "-l", "none",
        ]
        if tty:
            argv.append("-t")
        if stdin and not detach:
            argv.append("-i")
        if not detach:
            argv.append("--exec-attach")
        launch = cm.ConmonLaunch(argv, cwd=session, pid_file=session / "conmon.pid", attach=not detach)
        sock = None
        started = False
        try:
            launch.release()
            if not detach:
                if launch.read_attach_ready() is None:
                    raise Unavailable(f"conmon exited before the exec session began: {launch.stderr_text()}")
                sock = cm.connect_attach(session)
                launch.start_exec()
            msg = launch.read_sync()
            if msg is None:
                raise Unavailable(f"conmon exited without starting the exec session: {launch.stderr_text()}")
            if msg.data <= 0:
                raise runtime_error(runc_error_message(msg.message) or "runc exec failed", cid)
            started = True
            if sock is None:
                return 0  # detached: conmon holds the session's stdio and reaps it
            attached, sock = sock, None  # proxy_attach closes it
            cm.proxy_attach(
                attached, stdin=(stdin_stream or sys.stdin.buffer) if stdin else None,
                stdout=stdout_stream or sys.stdout.buffer, stderr=stderr_stream or sys.stderr.buffer,
                tty=tty, detach_keys=b"", socket_dir=session)
            result = launch.read_sync()  # follows the end of the output at once
            if result is None:
                raise Unavailable(f"the monitor of an exec session in {cid} died without an exit code")
            with contextlib.suppress(Unavailable):
                launch.read_sync(timeout=5.0)  # EOF: conmon is done with the session directory
            shutil.rmtree(session, ignore_errors=True)
            return result.data
        except BaseException:
            # Once the process runs it is left to its conmon (like a Docker exec whose client went
            # away: its stdin closes); the next exec sweeps the session directory.
            if not started:
                launch.kill()
                shutil.rmtree(session, ignore_errors=True)
            raise
        finally:
            if sock is not None:
                sock.close()
            launch.close()


def _which(program: str) -> str:
    path = program if os.sep in program else shutil.which(program)
    if not path or not os.access(path, os.X_OK):
        raise Unavailable(f"{program} is not installed (not found on PATH)")
    return os.path.abspath(path)


def _check_id(cid: str) -> None:
    if not cid or not _ID.match(cid) or cid in (".", ".."):
        raise InvalidArgument(f"invalid container id {cid!r}")


def _to_state(obj: dict[str, Any]) -> RuntimeState:
    bundle = obj.get("bundle")
    return RuntimeState(id=str(obj.get("id", "")), status=_STATUSES.get(str(obj.get("status")), "unknown"),
                        pid=int(obj.get("pid") or 0), bundle=Path(bundle) if bundle else None)


def _wait_gone(pid: int, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while pid and cm.process_alive(pid) and time.monotonic() < deadline:
        time.sleep(0.02)


def _sweep_sessions(root: Path) -> None:
    """Remove the directories of exec sessions whose conmon has finished."""
    if not root.is_dir():
        return
    for session in root.iterdir():
        pid = cm.read_pid_file(session / "conmon.pid")
        if (session / "exit").exists() or (pid is not None and not cm.process_alive(pid)):
            shutil.rmtree(session, ignore_errors=True)
