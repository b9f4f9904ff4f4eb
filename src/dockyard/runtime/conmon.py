"""conmon, the monitor that owns a container once dockyard has let go of it.

dockyard is daemonless: the command that creates a container exits (or is SIGKILLed) while the
container runs on.  Each container therefore gets a conmon (2.1.x) that double-forks into its own
session, holds the container's stdio (pipes, or the pty master it receives from runc over a console
socket), writes the log, reaps the container (it is a child subreaper) and records the exit code in
files.  Any later dockyard process learns the truth from those files and ``runc state``.

What conmon leaves where, for a container ``<cid>`` started with ``-b B --exit-dir E -0 P``::

    B/config.json      the OCI spec (written by the caller)
    B/pidfile          container init pid (runc create --pid-file)
    B/conmon.pid       conmon's pid (-P; written by conmon's first process just before it exits)
    B/attach           SOCK_SEQPACKET attach socket (--full-attach: bound as /proc/self/fd/N/attach,
                       so the bundle path may be longer than sun_path's 108 bytes; clients connect
                       the same way); removed when conmon exits
    B/ctl              fifo: "1 <rows> <cols>\\n" resizes the pty, "2 0 0\\n" reopens the log
    B/winsz            fifo conmon uses internally for resizes
    B/oom              created on an OOM kill (conmon writes "oom" in its cwd, which we set to B)
    P/exit             the exit code, once the container has exited and the log is drained
    P/oom              created on an OOM kill
    E/<cid>            the exit code again (one directory for all containers, for inotify)

Exit codes are ``WEXITSTATUS`` or ``128 + signal`` (SIGKILL -> 137).

Start protocol (podman's, conmon ``--api-version 1``): the parent passes three pipes through the
environment.  conmon blocks on ``_OCI_STARTPIPE`` before forking (podman uses the pause to move it
into a cgroup), then runs ``runc create`` and reports on ``_OCI_SYNCPIPE`` one JSON line:
``{"data": <container pid>}`` or ``{"data": -1, "message": "<runc's stderr>"}``.  For an exec
session (``-e``) a second line carries the exit code.  With ``--exec-attach`` conmon also writes
``{"data": 0}`` on ``_OCI_ATTACHPIPE`` once its attach socket listens, and waits for a second start
message before running ``runc exec`` -- so the client can connect before any output is produced.

Attach protocol: every message conmon sends starts with one byte naming the stream (2 stdout, 3
stderr), the rest is data; every message the client sends is container stdin.  A client that shuts
down its write side (or disconnects) makes conmon close the container's stdin unless conmon was
started with ``--leave-stdin-open``.  Output produced while nobody is attached only goes to the log.
"""

from __future__ import annotations

import contextlib
import json
import os
import select
import selectors
import signal
import socket
import subprocess
import tempfile
import threading
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

from dockyard.errors import FailedPrecondition, Unavailable

STREAM_STDOUT = 2
STREAM_STDERR = 3
_RECV_SIZE = 1 << 16  # conmon sends at most 8 KiB + 1 per message
_SEND_SIZE = 8192
_SCRUB_ENV = ("NOTIFY_SOCKET", "LISTEN_PID", "LISTEN_FDS", "LISTEN_FDNAMES")


@dataclass(frozen=True)
class ContainerProcess:
    """A created container: its init pid and the pid of the conmon that watches it."""

    pid: int
    conmon_pid: int


@dataclass(frozen=True)
class SyncMessage:
    """One line conmon wrote on a sync/attach pipe: a pid, an exit code, or -1 and runc's error."""

    data: int
    message: str = ""


class ConmonLaunch:
    """One conmon being started, with the parent's ends of its start/sync(/attach) pipes.

    Lifecycle: construct (spawns conmon, which waits) -> :meth:`release` (conmon forks away; the
    first process is reaped and its pid file read) -> :meth:`read_sync` (pid or error) -> for exec
    sessions possibly :meth:`read_attach_ready` / :meth:`start_exec` / :meth:`read_sync` again ->
    :meth:`close`.  The pipes are created close-on-exec and handed to exactly this child, so
    concurrent launches from several threads never leak them to each other's conmon.

    Errors: :class:`Unavailable` when conmon cannot be run, fails before forking (its stderr is in
    the message) or does not answer within ``timeout``.
    """

    def __init__(self, argv: Sequence[str], *, cwd: Path, pid_file: Path, attach: bool = False,
                 timeout: float = 120.0) -> None:
        self.pid_file = pid_file
        self.timeout = timeout
        self.conmon_pid = 0
        self._sync_r, sync_w = os.pipe()
        start_r, self._start_w = os.pipe()
        child_fds = [sync_w, start_r]
        env = {k: v for k, v in os.environ.items() if k not in _SCRUB_ENV and not k.startswith("_OCI_")}
        env["_OCI_SYNCPIPE"], env["_OCI_STARTPIPE"] = str(sync_w), str(start_r)
        self._attach_r = -1
        if attach:
            self._attach_r, attach_w = os.pipe()
            child_fds.append(attach_w)
            env["_OCI_ATTACHPIPE"] = str(attach_w)
        self._stderr = tempfile.TemporaryFile()  # noqa: SIM115 - closed by close()
        self._buffers: dict[int, bytes] = {}
        try:
            self._proc = subprocess.Popen(
                list(argv), cwd=cwd, env=env, pass_fds=child_fds, start_new_session=True,
                stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=self._stderr)
        except OSError as exc:
            self.close()
            raise Unavailable(f"cannot run conmon ({argv[0]}): {exc.strerror}") from exc
        finally:
            for fd in child_fds:
                os.close(fd)

    def release(self) -> int:
        """Let conmon fork into the background; returns the monitor's pid (from its pid file)."""
        os.write(self._start_w, b"0")
        try:
            rc = self._proc.wait(timeout=self.timeout)
        except subprocess.TimeoutExpired as exc:
            self._proc.kill()
            self._proc.wait()
            raise Unavailable("conmon did not start in time") from exc
        if rc != 0:
            raise Unavailable(f"conmon failed (exit status {rc}): {self.stderr_text() or 'no output'}")
        self.conmon_pid = read_pid_file(self.pid_file) or 0
        return self.conmon_pid

    def read_attach_ready(self) -> SyncMessage | None:
        """Wait until conmon's attach socket listens (exec sessions with --exec-attach)."""
        return self._read(self._attach_r)

    def start_exec(self) -> None:
        """Second start message: conmon may now run ``runc exec`` (exec sessions with attach)."""
        os.write(self._start_w, b"0")

    def read_sync(self, timeout: float | None = -1.0) -> SyncMessage | None:
        """The next line on the sync pipe, or None when conmon closed it (it died or exited).

        ``timeout``: seconds, None to wait for ever, negative for the launch's default.
        """
        return self._read(self._sync_r, timeout)

    def _read(self, fd: int, timeout: float | None = -1.0) -> SyncMessage | None:
        limit = self.timeout if timeout is not None and timeout < 0 else timeout
        deadline = None if limit is None else time.monotonic() + limit
        buf = self._buffers.get(fd, b"")
        while b"\n" not in buf:
            left = None if deadline is None else max(0.0, deadline - time.monotonic())
            ready, _, _ = select.select([fd], [], [], left)
            if not ready:
                raise Unavailable("conmon did not report in time")
            chunk = os.read(fd, 4096)
            if not chunk:
                self._buffers[fd] = b""
                return None
            buf += chunk
        line, _, self._buffers[fd] = buf.partition(b"\n")
        try:
            obj = json.loads(line)
            return SyncMessage(int(obj["data"]), str(obj.get("message", "")))
        except (ValueError, KeyError, TypeError) as exc:
            raise Unavailable(f"conmon sent an unexpected message: {line[:200]!r}") from exc

    def stderr_text(self) -> str:
        self._stderr.seek(0)
        return self._stderr.read(8192).decode(errors="replace").strip()

    def kill(self) -> None:
        """SIGKILL the monitor (its runc child dies with it: conmon sets PDEATHSIG)."""
        if self.conmon_pid and process_alive(self.conmon_pid):
            with contextlib.suppress(ProcessLookupError):
                os.kill(self.conmon_pid, signal.SIGKILL)
        if self._proc.poll() is None:
            self._proc.kill()
            self._proc.wait()

    def close(self) -> None:
        for fd in (self._sync_r, self._start_w, self._attach_r):
            if fd >= 0:
                with contextlib.suppress(OSError):
                    os.close(fd)
        self._sync_r = self._start_w = self._attach_r = -1
        self._stderr.close()


# --- files -------------------------------------------------------------------------------------


def read_pid_file(path: Path) -> int | None:
    try:
        text = path.read_text().strip()
    except FileNotFoundError:
        return None
    return int(text) if text.isdigit() else None


def process_alive(pid: int, name: str | None = "conmon") -> bool:
    """True if ``pid`` runs (zombies count as dead) and, when ``name`` is given, is that program."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except (FileNotFoundError, ProcessLookupError):
        return False
    comm, _, rest = stat.partition("(")[2].rpartition(")")
    if rest.split()[0:1] in (["Z"], ["X"]):
        return False
    return name is None or comm == name


def read_exit_code(exit_dir: Path, cid: str) -> int | None:
    """The exit code conmon recorded in ``exit_dir/<cid>``; None while the container runs.

    conmon writes the file atomically (temp file + rename) after the log is drained, so a present
    file is complete.  A container whose conmon was killed never gets one: callers then fall back
    to ``runc state`` (stopped, exit code unknown).
    """
    try:
        text = (exit_dir / cid).read_text().strip()
    except FileNotFoundError:
        return None
    try:
        return int(text)
    except ValueError:
        return None


def oom_killed(persist_dir: Path, bundle: Path | None = None) -> bool:
    """True when conmon saw an OOM kill in the container's memory cgroup (it writes ``oom`` files)."""
    return (persist_dir / "oom").exists() or (bundle is not None and (bundle / "oom").exists())


def write_resize(socket_dir: Path, rows: int, cols: int) -> None:
    """Ask conmon to resize the pty through its ``ctl`` fifo (ignored for non-tty containers).

    Raises FailedPrecondition when no conmon reads the fifo (the container has exited).
    """
    try:
        fd = os.open(socket_dir / "ctl", os.O_WRONLY | os.O_NONBLOCK | os.O_CLOEXEC)
    except OSError as exc:  # ENOENT, or ENXIO: a fifo nobody reads
        raise FailedPrecondition("container is not running (no monitor to resize its terminal)") from exc
    try:
        os.write(fd, f"1 {int(rows)} {int(cols)}\n".encode())
    except OSError as exc:
        raise FailedPrecondition("container is not running (its monitor went away)") from exc
    finally:
        os.close(fd)


# --- attach ------------------------------------------------------------------------------------


def connect_attach(socket_dir: Path) -> socket.socket:
    """Connect to conmon's attach socket in ``socket_dir`` (a bundle or an exec session dir).

    The path goes through ``/proc/self/fd/<dirfd>/attach`` so its length never matters.
    Raises FailedPrecondition when nobody listens (the container is not running).
    """
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET | socket.SOCK_CLOEXEC)
    try:
        dfd = os.open(socket_dir, os.O_PATH | os.O_CLOEXEC)
    except FileNotFoundError as exc:
        sock.close()
        raise FailedPrecondition("container is not running") from exc
    try:
        sock.connect(f"/proc/self/fd/{dfd}/attach")
    except (FileNotFoundError, ConnectionRefusedError) as exc:
        sock.close()
        raise FailedPrecondition("container is not running (its attach socket is gone)") from exc
    finally:
        os.close(dfd)
    return sock


@contextlib.contextmanager
def raw_terminal(fd: int | None) -> Iterator[None]:
    """Raw mode on the terminal ``fd`` for the duration (no-op if it is not a terminal)."""
    if fd is None or not os.isatty(fd):
        yield
        return
    import termios
    import tty as ttymod

    saved = termios.tcgetattr(fd)
    try:
        ttymod.setraw(fd, termios.TCSANOW)
        yield
    finally:
        termios.tcsetattr(fd, termios.TCSADRAIN, saved)


def terminal_size(*fds: int | None) -> tuple[int, int] | None:
    """(rows, cols) of the first terminal among ``fds``."""
    for fd in fds:
        if fd is not None and os.isatty(fd):
            with contextlib.suppress(OSError):
                cols, rows = os.get_terminal_size(fd)
                if rows > 0 and cols > 0:
                    return rows, cols
    return None


class DetachScanner:
    """Finds the detach key sequence in a stream of stdin chunks (Docker's escape proxy).

    Bytes that could start the sequence are held back; if the next byte breaks the match they are
    passed on after all, so typing Ctrl-P alone still reaches the container.
    """

    def __init__(self, keys: bytes) -> None:
        self.keys = keys
        self._held = bytearray()

    def feed(self, data: bytes) -> tuple[bytes, bool]:
        """(bytes to send on, whether the sequence is complete)."""
        if not self.keys:
            return data, False
        out = bytearray()
        for byte in data:
            if byte == self.keys[len(self._held)]:
                self._held.append(byte)
                if len(self._held) == len(self.keys):
                    self._held.clear()
                    return bytes(out), True
                continue
            out += self._held
            self._held.clear()
            if byte == self.keys[0]:
                self._held.append(byte)
            else:
                out.append(byte)
        return bytes(out), False


def _stdin_fd(stdin: BinaryIO | None) -> tuple[int | None, threading.Thread | None]:
    """A readable fd for ``stdin``; objects without one are pumped into a pipe by a thread."""
    if stdin is None:
        return None, None
    try:
        return stdin.fileno(), None
    except (AttributeError, OSError, ValueError):
        pass
    r, w = os.pipe()

    def pump() -> None:
        try:
            while chunk := stdin.read(_SEND_SIZE):
                os.write(w, chunk)
        except OSError:
            pass
        finally:
            os.close(w)

    thread = threading.Thread(target=pump, name="attach-stdin", daemon=True)
    thread.start()
    return r, thread


def proxy_attach(sock: socket.socket, *, stdin: BinaryIO | None, stdout: BinaryIO, stderr: BinaryIO,
                 tty: bool, detach_keys: bytes, socket_dir: Path | None = None) -> bool:
    """Copy between an attach socket and local streams until the container exits or the user
    detaches; returns True when the detach keys were typed.

    With ``tty`` and a terminal on stdin, that terminal is in raw mode for the duration and restored
    afterwards; the local terminal's size is passed to the container's pty (through ``socket_dir``'s
    ctl fifo) at the start and on SIGWINCH (the handler is only installed in the main thread).
    End of local stdin shuts down our write side, which closes the container's stdin unless conmon
    runs with --leave-stdin-open.  The socket is closed on return.
    """
    in_fd, pump = _stdin_fd(stdin)
    owned_fd = in_fd if pump is not None else None
    scanner = DetachScanner(detach_keys if stdin is not None else b"")
    out_fd = _fileno(stdout)
    sel = selectors.DefaultSelector()
    sel.register(sock, selectors.EVENT_READ)
    if in_fd is not None:
        sel.register(in_fd, selectors.EVENT_READ)
    old_winch = None
    if tty and socket_dir is not None:
        size = terminal_size(out_fd, in_fd)
        if size:
            with contextlib.suppress(FailedPrecondition):
                write_resize(socket_dir, *size)
            if threading.current_thread() is threading.main_thread():
                def on_winch(_signum: int, _frame: object) -> None:
                    new = terminal_size(out_fd, in_fd)
                    if new:
                        with contextlib.suppress(FailedPrecondition):
                            write_resize(socket_dir, *new)
                old_winch = signal.signal(signal.SIGWINCH, on_winch)
    try:
        with raw_terminal(in_fd if tty else None):
            while True:
                for key, _ in sel.select():
                    if key.fileobj is sock:
                        msg = sock.recv(_RECV_SIZE)
                        if not msg:
                            return False
                        target = stderr if msg[0] == STREAM_STDERR else stdout
                        try:
                            target.write(msg[1:])
                            target.flush()
                        except (BrokenPipeError, ValueError):
                            return False
                        continue
                    assert in_fd is not None
                    data = os.read(in_fd, _SEND_SIZE)
                    if not data:
                        sel.unregister(in_fd)
                        with contextlib.suppress(OSError):
                            sock.shutdown(socket.SHUT_WR)
                        continue
                    data, detached = scanner.feed(data)
                    if data:
                        try:
                            sock.sendall(data)
                        except (BrokenPipeError, ConnectionResetError):
                            pass
                    if detached:
                        return True
    finally:
        if old_winch is not None:
            signal.signal(signal.SIGWINCH, old_winch)
        sel.close()
        sock.close()
        if owned_fd is not None:
            os.close(owned_fd)


def _fileno(stream: BinaryIO) -> int | None:
    try:
        return stream.fileno()
    except (AttributeError, OSError, ValueError):
        return None
