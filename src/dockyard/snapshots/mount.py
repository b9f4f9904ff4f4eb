"""Mount values and the syscalls that apply them (containerd's ``mount.Mount``).

A snapshotter never mounts anything itself: it returns :class:`Mount` values that describe how to
assemble a root filesystem, and whoever needs the tree (the runtime, ``diff``, ``export``, a test)
calls :func:`mount_all` on a target directory and :func:`unmount` when done.  That keeps the
snapshotter usable from processes that must not hold mounts, and lets the runtime put the mounts in
the container's mount namespace.

The mount types dockyard produces:

- ``Mount("bind", "<snapshots>/<n>/fs", ["rbind", "rw"|"ro"])`` -- a single directory (an active
  snapshot without parent, or a read-only view of one layer).  ``ro`` binds are made read-only with
  the remount that bind mounts need.
- ``Mount("overlay", "overlay", ["index=off", ..., "workdir=...", "upperdir=...", "lowerdir=a:b:c"])``.

The overlay option string must fit in one page (the kernel copies at most ``PAGE_SIZE`` bytes of
mount data).  Like containerd, when it does not we make the lowerdirs relative to their common
parent directory and call mount(2) with that directory as the working directory.  Changing the
working directory of a multi-threaded process would race with every other thread, so the call runs
in a short-lived thread that first unshares its filesystem attributes (``unshare(CLONE_FS)``): its
``chdir`` is then invisible to the rest of the process.

Errors are translated with the target and the errno text: ENOENT/ENOTDIR -> NotFound,
EPERM/EACCES -> PermissionDenied, EBUSY -> FailedPrecondition, EINVAL -> InvalidArgument (for
overlay the kernel log says which option it disliked), ENODEV -> Unavailable, others ->
FailedPrecondition.
"""

from __future__ import annotations

import ctypes
import errno
import os
import posixpath
import threading
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from dockyard.errors import (
    DockyardError,
    FailedPrecondition,
    InvalidArgument,
    NotFound,
    PermissionDenied,
    Unavailable,
)

MS_RDONLY = 0x1
MS_NOSUID = 0x2
MS_NODEV = 0x4
MS_NOEXEC = 0x8
MS_SYNCHRONOUS = 0x10
MS_REMOUNT = 0x20
MS_MANDLOCK = 0x40
MS_DIRSYNC = 0x80
MS_NOATIME = 0x400
MS_NODIRATIME = 0x800
MS_BIND = 0x1000
MS_REC = 0x4000
MS_SILENT = 0x8000
MS_UNBINDABLE = 0x20000
MS_PRIVATE = 0x40000
MS_SLAVE = 0x80000
MS_SHARED = 0x100000
MS_RELATIME = 0x200000
MS_STRICTATIME = 0x1000000

MNT_DETACH = 0x2
UMOUNT_NOFOLLOW = 0x8
CLONE_FS = 0x200

PAGE_SIZE = os.sysconf("SC_PAGE_SIZE")

#: option -> (clear instead of set, flag); the same table as containerd and util-linux.
_FLAGS: dict[str, tuple[bool, int]] = {
    "async": (True, MS_SYNCHRONOUS),
    "atime": (True, MS_NOATIME),
    "bind": (False, MS_BIND),
    "defaults": (False, 0),
    "dev": (True, MS_NODEV),
    "diratime": (True, MS_NODIRATIME),
    "dirsync": (False, MS_DIRSYNC),
    "exec": (True, MS_NOEXEC),
    "mand": (False, MS_MANDLOCK),
    "noatime": (False, MS_NOATIME),
    "nodev": (False, MS_NODEV),
    "nodiratime": (False, MS_NODIRATIME),
    "noexec": (False, MS_NOEXEC),
    "nomand": (True, MS_MANDLOCK),
    "norelatime": (True, MS_RELATIME),
    "nostrictatime": (True, MS_STRICTATIME),
    "nosuid": (False, MS_NOSUID),
    "rbind": (False, MS_BIND | MS_REC),
    "relatime": (False, MS_RELATIME),
    "remount": (False, MS_REMOUNT),
    "ro": (False, MS_RDONLY),
    "rw": (True, MS_RDONLY),
    "strictatime": (False, MS_STRICTATIME),
    "suid": (True, MS_NOSUID),
    "sync": (False, MS_SYNCHRONOUS),
}

_PROPAGATION: dict[str, int] = {
    "private": MS_PRIVATE,
    "rprivate": MS_PRIVATE | MS_REC,
    "shared": MS_SHARED,
    "rshared": MS_SHARED | MS_REC,
    "slave": MS_SLAVE,
    "rslave": MS_SLAVE | MS_REC,
    "unbindable": MS_UNBINDABLE,
    "runbindable": MS_UNBINDABLE | MS_REC,
}

_libc = ctypes.CDLL(None, use_errno=True)
_libc.mount.argtypes = [ctypes.c_char_p, ctypes.c_char_p, ctypes.c_char_p, ctypes.c_ulong, ctypes.c_char_p]
_libc.mount.restype = ctypes.c_int
_libc.umount2.argtypes = [ctypes.c_char_p, ctypes.c_int]
_libc.umount2.restype = ctypes.c_int
_libc.unshare.argtypes = [ctypes.c_int]
_libc.unshare.restype = ctypes.c_int


@dataclass
class Mount:
    """One mount(2) call: ``type`` (``overlay``, ``bind``, ...), ``source`` and fstab-style options."""

    type: str
    source: str
    options: list[str] = field(default_factory=list)


def _translate(what: str, target: str, err: int, hint: str = "") -> DockyardError:
    text = f"{what} {target}: {os.strerror(err)}{hint}"
    if err in (errno.ENOENT, errno.ENOTDIR):
        return NotFound(text)
    if err in (errno.EPERM, errno.EACCES):
        return PermissionDenied(text)
    if err == errno.EBUSY:
        return FailedPrecondition(text)
    if err == errno.EINVAL:
        return InvalidArgument(text)
    if err in (errno.ENODEV, errno.ENOMEM, errno.ENOSPC):
        return Unavailable(text)
    return FailedPrecondition(text)


def parse_options(options: Iterable[str]) -> tuple[int, int, list[str]]:
    """Split fstab-style options into (mount flags, propagation flags, filesystem data options)."""
    flags = propagation = 0
    data: list[str] = []
    for option in options:
        if option in _FLAGS:
            clear, flag = _FLAGS[option]
            flags = flags & ~flag if clear else flags | flag
        elif option in _PROPAGATION:
            propagation |= _PROPAGATION[option]
        else:
            data.append(option)
    return flags, propagation, data


def _compact_lowerdirs(data: list[str]) -> tuple[str | None, list[str]]:
    """Make the lowerdir paths relative to their common parent; returns (that parent, new data).

    Returns (None, data) unchanged when there is no useful common parent (``/``).
    """
    index = next((i for i, opt in enumerate(data) if opt.startswith("lowerdir=")), None)
    if index is None:
        return None, data
    dirs = data[index][len("lowerdir=") :].split(":")
    if not all(d.startswith("/") for d in dirs):
        return None, data
    common = posixpath.commonpath(dirs) if len(dirs) > 1 else posixpath.dirname(dirs[0])
    if common in ("", "/"):
        return None, data
    if common in dirs:  # a lowerdir is the common parent itself: step one level up
        common = posixpath.dirname(common)
    relative = [posixpath.relpath(d, common) for d in dirs]
    return common, [*data[:index], "lowerdir=" + ":".join(relative), *data[index + 1 :]]


def _mount(source: str, target: str, fstype: str, flags: int, data: str, cwd: str | None = None) -> int:
    """mount(2); returns 0 or an errno.  With ``cwd``, runs in a thread with a private cwd."""
    args = (source.encode(), target.encode(), fstype.encode(), flags, data.encode() if data else None)
    if cwd is None:
        return 0 if _libc.mount(*args) == 0 else ctypes.get_errno()
    result: list[int] = []

    def run() -> None:
        # This OS thread gets its own fs_struct (cwd, root, umask); the thread ends right after,
        # so the chdir never leaks to the rest of the process.
        if _libc.unshare(CLONE_FS) != 0:
            result.append(ctypes.get_errno())
            return
        try:
            os.chdir(cwd)
        except OSError as exc:
            result.append(exc.errno or errno.EIO)
            return
        result.append(0 if _libc.mount(*args) == 0 else ctypes.get_errno())

    worker = threading.Thread(target=run, name="dockyard-mount", daemon=True)
    worker.start()
    worker.join()
    return result[0] if result else errno.EIO


def mount(m: Mount, target: Path) -> None:
    """Mount one :class:`Mount` on ``target`` (which must exist).  Raises a translated error."""
    where = os.path.abspath(target)
    flags, propagation, data_opts = parse_options(m.options)
    fstype = m.type
    if fstype == "bind":
        fstype, flags = "none", flags | MS_BIND
    cwd = None
    data = ",".join(data_opts)
    if fstype == "overlay" and len(data.encode()) >= PAGE_SIZE - 512:
        cwd, data_opts = _compact_lowerdirs(data_opts)
        data = ",".join(data_opts)
    if len(data.encode()) >= PAGE_SIZE:
        raise InvalidArgument(
            f"mount {where}: options are {len(data)} bytes, more than one page even compacted"
        )
    hint = " (see the kernel log: dmesg)" if fstype == "overlay" else ""
    if not flags & MS_REMOUNT or data:
        err = _mount(m.source, where, fstype, flags, data, cwd)
        if err:
            raise _translate(f"mount {fstype} {m.source} on", where, err, hint)
    if propagation:
        err = _mount("", where, "", propagation | MS_REC | MS_SILENT, "")
        if err:
            unmount(where)
            raise _translate("set propagation of", where, err)
    if flags & (MS_BIND | MS_RDONLY) == MS_BIND | MS_RDONLY:
        # A bind mount ignores MS_RDONLY on creation; read-only takes a remount.
        err = _mount("", where, "", flags | MS_REMOUNT, "")
        if err:
            unmount(where)
            raise _translate("remount read-only", where, err)


def mount_all(mounts: Sequence[Mount], target: Path) -> None:
    """Mount ``mounts`` on ``target`` in order (stacked).  All or nothing: on error, undone."""
    done = 0
    try:
        for m in mounts:
            mount(m, target)
            done += 1
    except BaseException:
        for _ in range(done):
            _umount_once(os.path.abspath(target), MNT_DETACH)
        raise


def _umount_once(target: str, flags: int) -> int:
    return 0 if _libc.umount2(target.encode(), flags | UMOUNT_NOFOLLOW) == 0 else ctypes.get_errno()


def unmount(target: Path | str, lazy: bool = False) -> int:
    """Unmount everything stacked on ``target``; returns how many mounts were removed.

    Idempotent: a target that is not a mount point (or does not exist) returns 0, which makes it
    safe in cleanup paths.  ``lazy`` detaches (MNT_DETACH) instead of failing while busy.  Raises
    FailedPrecondition (EBUSY) or PermissionDenied.
    """
    where = os.path.abspath(target)
    count = 0
    for _ in range(1024):  # stacked mounts are few; the bound only guards against a kernel surprise
        err = _umount_once(where, MNT_DETACH if lazy else 0)
        if err in (errno.EINVAL, errno.ENOENT):
            return count
        if err:
            raise _translate("unmount", where, err)
        count += 1
    return count


def _unescape(path: str) -> str:
    """Undo the octal escapes (space, tab, newline, backslash) of /proc/self/mountinfo."""
    if "\\" not in path:
        return path
    raw = path.encode()
    out = bytearray()
    i = 0
    while i < len(raw):
        if raw[i] == 0x5C and i + 4 <= len(raw) and raw[i + 1 : i + 4].isdigit():
            out.append(int(raw[i + 1 : i + 4], 8))
            i += 4
        else:
            out.append(raw[i])
            i += 1
    return out.decode(errors="surrogateescape")


def is_mounted(target: Path | str) -> bool:
    """Whether ``target`` is a mount point in this mount namespace (from /proc/self/mountinfo)."""
    where = os.path.realpath(target)
    with open("/proc/self/mountinfo", encoding="utf-8", errors="surrogateescape") as info:
        return any(_unescape(line.split(" ", 5)[4]) == where for line in info)
