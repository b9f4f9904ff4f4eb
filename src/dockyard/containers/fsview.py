"""A container's filesystem as the container sees it, resolved safely from the host side.

A container's view is its root filesystem directory with its mounts (volumes, binds, the
hosts/resolv.conf files) laid over it.  The engine has the rootfs mounted on the host but not the
mounts inside it, so :class:`FSView` composes them: a path is resolved component by component,
and a component whose (symlink-free) container path is a mount destination continues in that
mount's host directory (innermost mount wins, as in the kernel).

Nothing is ever resolved by the kernel inside the view: each component is opened with
``O_NOFOLLOW`` relative to the directory fd before it (``O_PATH`` fds), and a symlink is
re-resolved by us with *chroot semantics*: an absolute target restarts at the view's root, ``..``
stops at the root (filepath-securejoin, Docker's ``FollowSymlinkInScope``).  So a container's
``/etc -> /tmp/hostdir`` leads to ``<rootfs>/tmp/hostdir``, never to the host's /tmp, and a
directory swapped for a symlink while we walk cannot redirect us (``O_NOFOLLOW`` fails instead).
Mount destinations are themselves resolved in the view when the view is built (shallow first),
as runc does (``/var/run/x`` with ``/var/run -> /run`` is mounted at ``/run/x``); mount sources
are host paths the engine chose and are trusted.

The same class serves the host side of ``docker cp`` with the extraction directory as root (so an
archive cannot write outside it) or ``/`` (plain host path resolution).
"""

from __future__ import annotations

import os
import posixpath
import stat
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from dockyard.errors import InvalidArgument

_DIR_PATH = os.O_PATH | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
TRUSTED_DIR = os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC  # host paths we were given: may follow
_MAX_SYMLINKS = 40


@dataclass(frozen=True)
class CopyMount:
    """A mount in the container as cp needs it: where it appears, where its data is on the host."""

    destination: str
    source: Path
    read_only: bool = False


#: What callers may pass for a mount: a CopyMount or (destination, source[, read_only]).
MountArg = CopyMount | tuple[str, str | Path] | tuple[str, str | Path, bool]


@dataclass
class Node:
    """A resolved path: entry ``name`` in the directory fd ``dirfd`` ("." = the directory itself).

    ``st`` is None when it does not exist; ``dirfd`` is -1 when its parent does not exist either.
    ``mount`` is set when the node is a mount's root.  The node owns ``dirfd``: call close().
    """

    real: tuple[str, ...]
    dirfd: int
    name: str
    st: os.stat_result | None
    mount: CopyMount | None = None

    def close(self) -> None:
        if self.dirfd >= 0:
            os.close(self.dirfd)
            self.dirfd = -1


class FSView:
    """A root directory with mounts laid over it; paths resolve with chroot semantics.

    ``host`` only changes how paths are shown in messages (host paths instead of container paths).
    """

    def __init__(self, root: Path, mounts: Sequence[MountArg] = (), *, host: bool = False) -> None:
        self.root = Path(root)
        self.host = host
        self.mounts: dict[tuple[str, ...], CopyMount] = {}
        given = [m if isinstance(m, CopyMount) else _as_mount(*m) for m in mounts]
        # Destinations are resolved in the container (as runc does: /var/run/x lands in /run/x),
        # shallow ones first so that deeper ones resolve through them.
        for m in sorted(given, key=lambda m: len(_parts(m.destination))):
            node = self.resolve(m.destination, follow=True)
            node.close()
            self.mounts[node.real] = CopyMount(m.destination, Path(os.path.realpath(m.source)), m.read_only)

    def show(self, real: Sequence[str]) -> str:
        """How a path appears in messages: container paths, or host paths on the host side."""
        return os.path.join(self.root, *real) if self.host else "/" + "/".join(real)

    def mount_containing(self, real: tuple[str, ...]) -> CopyMount | None:
        for depth in range(len(real), -1, -1):
            if real[:depth] in self.mounts:
                return self.mounts[real[:depth]]
        return None

    def child_mounts(self, real: tuple[str, ...]) -> set[str]:
        return {k[-1] for k in self.mounts if len(k) == len(real) + 1 and k[:-1] == real}

    def resolve(self, path: str, *, follow: bool, create: bool = False) -> Node:
        """Resolve ``path`` (a trailing "/" or "/." makes the last component a followed directory).

        ``follow``: follow a symlink in the last component.  ``create``: make missing directories
        (0755) on the way, else stop with a node whose ``dirfd`` is -1.  Raises InvalidArgument
        for a non-directory in the middle or a symlink loop.
        """
        todo = path.split("/")[::-1]
        stack: list[tuple[int, str]] = []
        top = os.open(self.mounts[()].source if () in self.mounts else self.root, TRUSTED_DIR)
        links = 0
        try:
            while todo:
                name = todo.pop()
                if name in ("", "."):
                    continue
                if name == "..":
                    if stack:
                        os.close(stack.pop()[0])
                    continue
                cur = stack[-1][0] if stack else top
                real = (*(n for _, n in stack), name)
                final = not todo
                mount = self.mounts.get(real)
                if mount is not None:
                    if mount.source.is_dir():
                        stack.append((os.open(mount.source, TRUSTED_DIR), name))
                        continue
                    if not final:
                        raise InvalidArgument(f"{self.show(real)}: not a directory")
                    pfd = os.open(mount.source.parent, TRUSTED_DIR)
                    return Node(real, pfd, mount.source.name, lstat_at(pfd, mount.source.name), mount)
                st = lstat_at(cur, name)
                if st is not None and stat.S_ISLNK(st.st_mode) and (follow or not final):
                    links += 1
                    if links > _MAX_SYMLINKS:
                        raise InvalidArgument(f"{path}: too many levels of symbolic links")
                    target = os.readlink(name, dir_fd=cur)
                    if target.startswith("/"):
                        while stack:
                            os.close(stack.pop()[0])
                    todo.extend(target.split("/")[::-1])
                    continue
                if final:
                    return Node(real, os.dup(cur), name, st)
                if st is None:
                    if not create:
                        return Node(_lexical(real, todo[::-1]), -1, "", None)
                    os.mkdir(name, 0o755, dir_fd=cur)
                    os.chmod(name, 0o755, dir_fd=cur)
                elif not stat.S_ISDIR(st.st_mode):
                    raise InvalidArgument(f"{self.show(real)}: not a directory")
                stack.append((os.open(name, _DIR_PATH, dir_fd=cur), name))
            real = tuple(n for _, n in stack)
            fd = stack.pop()[0] if stack else os.dup(top)
            return Node(real, fd, ".", os.stat(fd), self.mounts.get(real))
        finally:
            for fd, _ in stack:
                os.close(fd)
            os.close(top)


def _as_mount(destination: str, source: str | Path, read_only: bool = False) -> CopyMount:
    return CopyMount(destination, Path(source), read_only)


def _parts(path: str) -> list[str]:
    return [p for p in posixpath.normpath("/" + path).split("/") if p]


def _lexical(real: tuple[str, ...], rest: list[str]) -> tuple[str, ...]:
    out = list(real)
    for part in rest:
        if part == "..":
            if out:
                out.pop()
        elif part not in ("", "."):
            out.append(part)
    return tuple(out)


def lstat_at(dirfd: int, name: str) -> os.stat_result | None:
    """lstat of ``name`` in the directory ``dirfd``; None if it does not exist."""
    try:
        return os.stat(name, dir_fd=dirfd, follow_symlinks=False)
    except FileNotFoundError:
        return None
