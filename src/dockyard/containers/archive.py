"""``docker cp``: tars out of and into a container's filesystem, and the same rules on the host side.

The engine mounts the container's root filesystem and passes its host directory plus the
container's other mounts (volumes, binds) as ``(container_path, host_path[, read_only])``; those
are not visible in the rootfs directory, so :class:`~dockyard.containers.fsview.FSView` lays them
over it, and resolves every path the way the container would, with chroot semantics and without
ever letting the kernel follow a symlink there (``/etc -> /tmp/hostdir`` leads to
``<rootfs>/tmp/hostdir``, never to the host's /tmp).

Tar entries are extracted through the same view: an entry's parent is resolved in the container
(a symlink, in the archive or already in the container, can move it elsewhere *inside* the
container, never out); names climbing above the extraction directory are refused, and so are
relative symlinks climbing out of it, hard links to anything but a file of the same archive, and
``trusted.overlay.*`` xattrs.  On the host side (:func:`local_extract`) the extraction directory
is the root of that confinement.  ``.wh.*`` names are ordinary files here (no whiteouts).

Archive naming (moby ``containerArchivePath``/``TarResourceRebase``)::

    source          entries                      source            entries
    /a/file         file                         /a/dir/.          ./  ./x  ./sub/y
    /a/dir          dir/  dir/x  dir/sub/y       /                 /  /x  (Docker's root quirk)
    /a/dir/         dir/ ... (follows a link)    /a/link           link (the symlink itself)
    -L /a/link      link/ ... (the target, named as the link)

Destination rules (docker/cli ``copyToContainer`` + moby ``PrepareArchiveCopy``): a symlink
destination is replaced by its target; then

    destination                 source is a file              source is a directory
    existing directory          copied into it                copied into it (contents if "/.")
    existing file               replaced (renamed to it)      "cannot copy directory"
    missing, parent exists      created with that name        created with that name
    missing, ends with "/"      "no such directory"           created with that name
    missing parent              "Could not find the file /parent in container NAME"

The source name and kind come from the archive's first entry (an archive made by this module or
Docker has one top-level entry); entries under another top-level name are extracted unrenamed.
Existing directories are never replaced by non-directories or the reverse ("cannot overwrite ..."),
as Docker's ``NoOverwriteDirNonDir``.  Ownership: into a container, the tar's uid/gid are kept
(Docker's real behaviour) unless ``copy_uidgid`` with a ``user`` (``-a``: chown to the container's
user); on the host, files belong to the caller (Docker's ``NoLchown``).
"""

from __future__ import annotations

import errno
import io
import os
import posixpath
import shutil
import stat
import tarfile
from collections import OrderedDict
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import BinaryIO

from dockyard.containers.fsview import TRUSTED_DIR, CopyMount, FSView, MountArg, Node, lstat_at
from dockyard.errors import (
    DataLoss,
    DockyardError,
    FailedPrecondition,
    InvalidArgument,
    NotFound,
    PermissionDenied,
    Unavailable,
)
from dockyard.snapshots.tarfs import COPY_CHUNK, clean_name, proc_path

__all__ = [
    "CopyMount", "MountArg", "PathStat", "archive_from", "extract_to", "go_file_mode", "local_archive",
    "local_extract", "stat_path",
]

_DIR_READ = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
_PAX_XATTR = "SCHILY.xattr."
_CAPABILITY = "security.capability"  # the one xattr Docker puts into cp archives


@dataclass(frozen=True)
class PathStat:
    """What ``X-Docker-Container-Path-Stat`` carries (``mode`` is the Unix st_mode here)."""

    name: str
    size: int
    mode: int
    mtime: float
    link_target: str

    @property
    def go_mode(self) -> int:
        return go_file_mode(self.mode)

    def to_docker(self) -> dict[str, object]:
        """The JSON object Docker base64-encodes into the header (Go FileMode, RFC 3339 mtime)."""
        when = datetime.fromtimestamp(self.mtime, tz=UTC).isoformat().replace("+00:00", "Z")
        return {"name": self.name, "size": self.size, "mode": self.go_mode, "mtime": when,
                "linkTarget": self.link_target}


def go_file_mode(mode: int) -> int:
    """Unix st_mode -> Go's os.FileMode bits, which the docker CLI tests (IsDir, ModeSymlink)."""
    out = stat.S_IMODE(mode) & 0o777
    kind = stat.S_IFMT(mode)
    out |= {stat.S_IFDIR: 1 << 31, stat.S_IFLNK: 1 << 27, stat.S_IFBLK: 1 << 26,
            stat.S_IFCHR: (1 << 26) | (1 << 21), stat.S_IFIFO: 1 << 25, stat.S_IFSOCK: 1 << 24}.get(kind, 0)
    for bit, go in ((stat.S_ISUID, 1 << 23), (stat.S_ISGID, 1 << 22), (stat.S_ISVTX, 1 << 20)):
        if mode & bit:
            out |= go
    return out


# -- Docker's path rules (pure) ------------------------------------------------------------------


def _go_base(path: str) -> str:
    """Go's filepath.Base: trailing slashes ignored, "/" for the root, "." for ""."""
    stripped = path.rstrip("/")
    if not stripped:
        return "/" if path else "."
    return stripped.rpartition("/")[2]


def _preserve_trailing(cleaned: str, original: str) -> str:
    """moby's PreserveTrailingDotOrSeparator: keep a trailing "/." or "/" the cleaning removed."""
    if _go_base(cleaned) != "." and _go_base(original) == ".":
        cleaned = (cleaned if cleaned.endswith("/") else cleaned + "/") + "."
    if not cleaned.endswith("/") and original.endswith("/"):
        cleaned += "/"
    return cleaned


def _container_abs(path: str) -> str:
    """A container path as Docker takes it: absolute from the container root, cleaned."""
    return _preserve_trailing(posixpath.normpath("/" + path.lstrip("/")), path)  # not POSIX "//"


def _local_abs(path: str) -> str:
    return _preserve_trailing(os.path.abspath(path), path)


def _asserts_directory(path: str) -> bool:
    return path.endswith("/") or _go_base(path) == "."


def _split_dir_entry(path: str) -> tuple[str, str]:
    """moby's SplitPathDirEntry: (parent, base), keeping a trailing "." as the base."""
    cleaned = posixpath.normpath(path)
    if _go_base(path) == ".":
        cleaned = cleaned.rstrip("/") + "/."
    return posixpath.dirname(cleaned) or ".", _go_base(cleaned)


def _plan(dst: str, exists: bool, is_dir: bool, src_dir: bool) -> tuple[str, str | None]:
    """moby's PrepareArchiveCopy: (directory to extract into, new top-level name or None)."""
    parent, base = _split_dir_entry(dst)
    if exists and is_dir:
        return dst, None
    if exists and src_dir:
        raise InvalidArgument("cannot copy directory")
    if not exists and not src_dir and _asserts_directory(dst):
        raise NotFound("no such directory")
    return parent, base


def _source_of(first: tarfile.TarInfo) -> tuple[str, bool]:
    """(top-level name, is a directory) of an archive from its first entry; "" = contents of a dir."""
    stripped = first.name.lstrip("/")
    if stripped in ("", ".") or stripped.startswith("./"):
        return "", True
    top, _, rest = clean_name(first.name).partition("/")
    return top, first.isdir() or bool(rest)


def _rebase(name: str, old: str, new: str) -> str:
    """RebaseArchiveEntries, anchored at the first component; ``old`` "" renames a contents archive."""
    if not old:
        return f"{new}/{name}" if name else new
    if name == old or name.startswith(old + "/"):
        return new + name[len(old):]
    return name


def _not_found(path: str, container: str | None) -> NotFound:
    where = f" in container {container}" if container else ""
    return NotFound(f"Could not find the file {path}{where}")


def _os_error(what: str, exc: OSError) -> DockyardError:
    text = f"{what}: {exc.strerror or exc}"
    if exc.errno in (errno.ENOSPC, errno.EDQUOT):
        return Unavailable(text)
    if exc.errno in (errno.EPERM, errno.EACCES, errno.EROFS):
        return PermissionDenied(text)
    if exc.errno == errno.ENOENT:
        return NotFound(text)
    if exc.errno in (errno.ENOTDIR, errno.EISDIR, errno.ELOOP, errno.ENAMETOOLONG, errno.EINVAL):
        return InvalidArgument(text)
    return FailedPrecondition(text)


# -- stat and archive ------------------------------------------------------------------------


def stat_path(rootfs: Path, mounts: Sequence[MountArg], path: str, *, container: str | None = None) -> PathStat:
    """Docker's ``HEAD /containers/{id}/archive``: lstat the path (a trailing "/" follows a link);
    for a symlink, ``link_target`` is its full resolution inside the container.  NotFound if missing."""
    scope = FSView(rootfs, mounts)
    absolute = _container_abs(path)
    try:
        return _stat(scope, absolute, path, container)
    except OSError as exc:
        raise _os_error(path, exc) from exc


def _stat(scope: FSView, absolute: str, shown: str, container: str | None) -> PathStat:
    node = scope.resolve(absolute, follow=False)
    node.close()
    if node.st is None:
        raise _not_found(shown, container)
    target = ""
    if stat.S_ISLNK(node.st.st_mode):
        full = scope.resolve(absolute, follow=True)
        full.close()
        target = "/" + "/".join(full.real)
    return PathStat(name=_go_base(absolute), size=node.st.st_size, mode=node.st.st_mode,
                    mtime=node.st.st_mtime, link_target=target)


def archive_from(rootfs: Path, mounts: Sequence[MountArg], src_path: str, out: BinaryIO, *,
                 follow_link: bool = False, container: str | None = None) -> PathStat:
    """Write the tar of ``src_path`` (Docker's naming, see the module docstring) to ``out``.

    Returns the source's PathStat (as :func:`stat_path`, taken before the walk).  ``follow_link``
    is ``docker cp -L``: a symlink source is archived as its target under the link's name.
    Raises NotFound ("Could not find the file ...") if the source is missing.  ``out`` is not closed.
    """
    scope = FSView(rootfs, mounts)
    absolute = _container_abs(src_path)
    try:
        info = _stat(scope, absolute, src_path, container)
        _archive(scope, absolute, out, follow_link, lambda: _not_found(src_path, container))
    except OSError as exc:
        raise _os_error(src_path, exc) from exc
    return info


def local_archive(path: Path | str, out: BinaryIO, follow_link: bool = False) -> None:
    """The host side of ``docker cp HOSTSRC CONTAINER:DST``: the same naming for a host path."""
    absolute = _local_abs(str(path))
    try:
        _archive(FSView(Path("/"), host=True), absolute, out, follow_link,
                 lambda: NotFound(f"lstat {absolute.rstrip('/') or '/'}: no such file or directory"))
    except OSError as exc:
        raise _os_error(str(path), exc) from exc


def _archive(scope: FSView, absolute: str, out: BinaryIO, follow: bool,
             missing: Callable[[], DockyardError]) -> None:
    node = scope.resolve(absolute, follow=follow)
    try:
        if node.st is None:
            raise missing()
        base = _go_base(absolute)
        _TarWriter(scope, out).write(node, "" if base == "/" else base)
    finally:
        node.close()


class _TarWriter:
    """Walks a resolved tree (mounts included, symlinks never followed) into a PAX tar."""

    def __init__(self, scope: FSView, out: BinaryIO) -> None:
        self.scope = scope
        self.out = out
        self.links: dict[tuple[int, int], str] = {}

    def write(self, node: Node, arcname: str) -> None:
        """Archive ``node`` (and, for a directory, everything below it) as ``arcname``."""
        assert node.st is not None
        with tarfile.open(fileobj=self.out, mode="w|", format=tarfile.PAX_FORMAT,  # type: ignore[call-overload]
                          copybufsize=COPY_CHUNK) as self.tf:
            self._walk(node, arcname)

    def _walk(self, node: Node, arcname: str) -> None:
        assert node.st is not None
        # An explicit stack (depth is the container's to choose): (dir fd, real, arc prefix, names).
        stack: list[tuple[int, tuple[str, ...], str, list[str]]] = []
        try:
            fd = self._add(node.dirfd, node.name, node.st, arcname)
            if fd is not None:
                stack.append((fd, node.real, arcname, self._names(fd, node.real)))
            while stack:
                dfd, real, prefix, names = stack[-1]
                if not names:
                    os.close(dfd)
                    stack.pop()
                    continue
                name = names.pop()
                child, arc = (*real, name), f"{prefix}/{name}"
                mount = self.scope.mounts.get(child)
                if mount is not None:
                    is_dir = mount.source.is_dir()
                    pfd = os.open(mount.source if is_dir else mount.source.parent, TRUSTED_DIR)
                    pname = "." if is_dir else mount.source.name
                    try:
                        st = lstat_at(pfd, pname)
                        fd = self._add(pfd, pname, st, arc) if st is not None else None
                    finally:
                        os.close(pfd)
                else:
                    st = lstat_at(dfd, name)
                    fd = self._add(dfd, name, st, arc) if st is not None else None  # gone meanwhile
                if fd is not None:
                    stack.append((fd, child, arc, self._names(fd, child)))
        finally:
            for dfd, _, _, _ in stack:
                os.close(dfd)

    def _names(self, fd: int, real: tuple[str, ...]) -> list[str]:
        names = set(os.listdir(fd)) | self.scope.child_mounts(real)
        return sorted(names, key=os.fsencode, reverse=True)  # popped from the end: byte order

    def _add(self, dfd: int, name: str, st: os.stat_result, arc: str) -> int | None:
        """Write one entry; returns an open directory fd to descend into, for directories."""
        info = tarfile.TarInfo(arc)
        info.mode, info.uid, info.gid = stat.S_IMODE(st.st_mode), st.st_uid, st.st_gid
        info.mtime, info.uname, info.gname = int(st.st_mtime), "", ""
        mode = st.st_mode
        if stat.S_ISDIR(mode):
            fd = os.open(name, _DIR_READ, dir_fd=dfd)
            info.type = tarfile.DIRTYPE
            self.tf.addfile(info)
            return fd
        if stat.S_ISREG(mode):
            key = (st.st_dev, st.st_ino)
            if st.st_nlink > 1 and key in self.links:
                info.type, info.linkname = tarfile.LNKTYPE, self.links[key]
                self.tf.addfile(info)
                return None
            if st.st_nlink > 1:
                self.links[key] = arc
            fd = os.open(name, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=dfd)
            with open(fd, "rb", buffering=0) as data:
                info.size = os.fstat(fd).st_size
                try:
                    info.pax_headers = {_PAX_XATTR + _CAPABILITY:
                                        os.getxattr(fd, _CAPABILITY).decode("utf-8", "surrogateescape")}
                except OSError:
                    pass
                self.tf.addfile(info, data)
            return None
        if stat.S_ISLNK(mode):
            info.type, info.linkname = tarfile.SYMTYPE, os.readlink(name, dir_fd=dfd)
        elif stat.S_ISCHR(mode) or stat.S_ISBLK(mode):
            info.type = tarfile.CHRTYPE if stat.S_ISCHR(mode) else tarfile.BLKTYPE
            info.devmajor, info.devminor = os.major(st.st_rdev), os.minor(st.st_rdev)
        elif stat.S_ISFIFO(mode):
            info.type = tarfile.FIFOTYPE
        else:
            return None  # sockets cannot be archived: skipped, as Docker does
        self.tf.addfile(info)
        return None


# -- extraction --------------------------------------------------------------------------------


def extract_to(rootfs: Path, mounts: Sequence[MountArg], dst_path: str, stream: BinaryIO, *,
               copy_uidgid: bool = False, user: str | None = None, container: str | None = None,
               as_is: bool = False, readonly_rootfs: bool = False,
               allow_overwrite_dir_with_file: bool = False) -> None:
    """Extract the tar read from ``stream`` (uncompressed, gzip, bzip2 or xz) to ``dst_path``.

    With the destination rules of the module docstring; ``as_is`` is the Engine API's
    ``PUT /containers/{id}/archive`` (and ``docker cp - C:DIR``): ``dst_path`` must be an existing
    directory and the archive is extracted into it unchanged.  ``copy_uidgid`` with ``user``
    (the container's Config.User, "name[:group]" or "uid[:gid]", looked up in the container's
    /etc/passwd and /etc/group) chowns everything to that user.  Errors: NotFound, InvalidArgument
    (Docker's wording; hostile entries name the entry), FailedPrecondition ("cannot overwrite
    ..."), DataLoss for corrupt input.  A failure part-way leaves the entries written so far.
    """
    scope = FSView(rootfs, mounts)
    label = f"{container}:{dst_path}" if container else dst_path
    try:
        owner = _container_user(scope, user) if copy_uidgid and user else None
        with _open_tar(stream) as tf:
            first = tf.next()
            if as_is:
                target, rename = _container_abs(dst_path), None
            else:
                target, rename = _container_plan(scope, dst_path, first, label)
            base = _extraction_point(scope, target, container)
            _check_writable(scope, base.real, readonly_rootfs)
            extractor = _Extractor(scope, base.real, chown=os.geteuid() == 0, owner=owner,
                                   no_overwrite=not allow_overwrite_dir_with_file, allow_devices=True,
                                   readonly_rootfs=readonly_rootfs)
            extractor.run(tf, first, rename)
    except OSError as exc:
        raise _os_error(dst_path, exc) from exc


def local_extract(dst: Path | str, stream: BinaryIO, *, allow_devices: bool = False) -> None:
    """The host side of ``docker cp CONTAINER:SRC HOSTDST``: the same destination rules, files
    owned by the caller.  Device nodes are refused unless ``allow_devices`` (a container's
    device node would be usable on the host)."""
    path = _local_abs(str(dst))
    try:
        parent = os.path.dirname(os.path.normpath(path))
        if not os.path.exists(parent):
            raise InvalidArgument(f'invalid output path: directory "{parent}" does not exist')
        if os.path.exists(path) and not (os.path.isdir(path) or os.path.isfile(path)):
            raise InvalidArgument(f'invalid output path: "{path}" must be a directory or a regular file')
        with _open_tar(stream) as tf:
            first = tf.next()
            if os.path.islink(path):
                path = os.path.realpath(path)  # CopyInfoDestinationPath: the link's target
            exists = os.path.lexists(path)
            if not exists:
                where = os.path.dirname(os.path.normpath(path))
                if not os.path.isdir(where):
                    raise NotFound(f"stat {where}: no such file or directory") if not os.path.exists(where) \
                        else InvalidArgument(f"{where}: not a directory")
            if first is None:
                return
            src, src_dir = _source_of(first)
            into, new = _plan(path, exists, os.path.isdir(path), src_dir)
            scope = FSView(Path(into), host=True)
            extractor = _Extractor(scope, (), chown=False, owner=None, no_overwrite=True,
                                   allow_devices=allow_devices, readonly_rootfs=False)
            extractor.run(tf, first, (src, new) if new is not None else None)
    except OSError as exc:
        raise _os_error(str(dst), exc) from exc


def _open_tar(stream: BinaryIO) -> tarfile.TarFile:
    """A streaming reader (64 KiB: tarfile copies its buffer on every read); an empty stream is
    an empty archive, as for Docker."""
    try:
        return tarfile.open(fileobj=stream, mode="r|*", bufsize=64 * 1024)
    except tarfile.ReadError as exc:
        if str(exc) == "empty file":
            return tarfile.open(fileobj=io.BytesIO(bytes(2 * tarfile.BLOCKSIZE)), mode="r|")
        raise DataLoss(f"not a tar archive: {exc}") from exc
    except tarfile.TarError as exc:
        raise DataLoss(f"not a tar archive: {exc}") from exc


def _container_plan(scope: FSView, dst_path: str, first: tarfile.TarInfo | None,
                    label: str) -> tuple[str, tuple[str, str] | None]:
    """docker/cli's copyToContainer + PrepareArchiveCopy against the container's view of dst."""
    absolute = _container_abs(dst_path)
    node = scope.resolve(absolute, follow=False)
    node.close()
    if node.st is not None and stat.S_ISLNK(node.st.st_mode):
        node = scope.resolve(absolute, follow=True)
        node.close()
        absolute = "/" + "/".join(node.real)
    st = node.st
    if st is not None and (stat.S_ISCHR(st.st_mode) or stat.S_ISBLK(st.st_mode)):
        raise InvalidArgument(f'destination "{label}" must be a directory or a regular file: got a device')
    if first is None:
        return absolute if st is not None and stat.S_ISDIR(st.st_mode) else posixpath.dirname(absolute), None
    src, src_dir = _source_of(first)
    into, new = _plan(absolute, st is not None, st is not None and stat.S_ISDIR(st.st_mode), src_dir)
    return into, (src, new) if new is not None else None


def _extraction_point(scope: FSView, path: str, container: str | None) -> Node:
    """moby's containerExtractToDir check: the directory must exist (links followed)."""
    node = scope.resolve(path, follow=True)
    node.close()
    if node.st is None:
        raise _not_found(path, container)
    if not stat.S_ISDIR(node.st.st_mode):
        raise InvalidArgument("extraction point is not a directory")
    return node


def _check_writable(scope: FSView, real: tuple[str, ...], readonly_rootfs: bool) -> None:
    mount = scope.mount_containing(real)
    if mount is not None and mount.read_only:
        raise InvalidArgument("mounted volume is marked read-only")
    if mount is None and readonly_rootfs:
        raise InvalidArgument("container rootfs is marked read-only")


def _container_user(scope: FSView, user: str) -> tuple[int, int]:
    """uid/gid of "name[:group]" / "uid[:gid]" from the container's own passwd and group files."""
    name, _, group = user.partition(":")
    uid: int | None = int(name) if name.isdigit() else None
    gid = 0
    for line in _read_small(scope, "/etc/passwd").splitlines():
        fields = line.split(":")
        if len(fields) >= 4 and (fields[0] == name or (uid is not None and fields[2] == name)) \
                and fields[2].isdigit() and fields[3].isdigit():
            uid, gid = int(fields[2]), int(fields[3])
            break
    if uid is None:
        raise NotFound(f"unable to find user {name}: no matching entries in passwd file")
    if group.isdigit():
        gid = int(group)
    elif group:
        for line in _read_small(scope, "/etc/group").splitlines():
            fields = line.split(":")
            if len(fields) >= 3 and fields[0] == group and fields[2].isdigit():
                gid = int(fields[2])
                break
        else:
            raise NotFound(f"unable to find group {group}: no matching entries in group file")
    return uid, gid


def _read_small(scope: FSView, path: str) -> str:
    node = scope.resolve(path, follow=True)
    try:
        if node.st is None or not stat.S_ISREG(node.st.st_mode):
            return ""
        fd = os.open(node.name, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=node.dirfd)
        with open(fd, "rb") as f:
            return f.read(4 << 20).decode(errors="replace")
    finally:
        node.close()


class _Extractor:
    """Writes tar entries below ``base`` (a resolved directory) of a scope; one entry at a time."""

    CACHE_SIZE = 64

    def __init__(self, scope: FSView, base: tuple[str, ...], *, chown: bool, owner: tuple[int, int] | None,
                 no_overwrite: bool, allow_devices: bool, readonly_rootfs: bool) -> None:
        self.scope, self.base = scope, base
        self.chown, self.owner = chown, owner
        self.no_overwrite, self.allow_devices, self.readonly_rootfs = no_overwrite, allow_devices, readonly_rootfs
        self.dirs: OrderedDict[tuple[str, ...], tuple[int, tuple[str, ...]]] = OrderedDict()
        self.retired: list[int] = []
        self.files: dict[str, tuple[str, ...]] = {}  # archive name -> real path (hard link targets)
        self.dir_times: dict[tuple[str, ...], int] = {}
        self.rename: tuple[str, str] | None = None  # (old, new) top-level name

    def run(self, tf: tarfile.TarFile, first: tarfile.TarInfo | None, rename: tuple[str, str] | None) -> None:
        """Extract ``first`` and every following entry of ``tf``, renaming the top level per ``rename``."""
        self.rename = rename
        member = first
        try:
            while member is not None:
                self._flush()
                try:
                    self.apply(member, tf)
                except OSError as exc:
                    raise _os_error(f"tar entry {member.name!r}", exc) from exc
                member = tf.next()
            self._finish()
        except (tarfile.TarError, EOFError) as exc:
            raise DataLoss(f"corrupt or truncated tar: {exc}") from exc
        finally:
            self.retired.extend(fd for fd, _ in self.dirs.values())
            self.dirs.clear()
            self._flush()

    def apply(self, member: tarfile.TarInfo, tf: tarfile.TarFile) -> None:
        name = clean_name(member.name)
        if self.rename is not None:
            name = _rebase(name, *self.rename)
        if not name:
            return  # the extraction directory itself: left as it is (Docker skips ".")
        parent_name, _, base = name.rpartition("/")
        parent = tuple(parent_name.split("/")) if parent_name else ()
        link_target = self._validate(member, name, parent)
        pfd, preal = self._dir(parent, member.name)
        real = (*preal, base)
        _check_writable(self.scope, real, self.readonly_rootfs)
        shown = self.scope.show(real)
        mount = self.scope.mounts.get(real)
        if mount is not None:
            if not (member.isdir() and mount.source.is_dir()):
                raise FailedPrecondition(f"cannot overwrite mount point {shown}")
            fd = os.open(mount.source, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
            try:
                self._fd_meta(fd, member)
            finally:
                os.close(fd)
            self.dir_times[real] = int(member.mtime * 1e9)
            return
        existing = lstat_at(pfd, base)
        if existing is not None:
            was_dir = stat.S_ISDIR(existing.st_mode)
            into = self.scope.show(preal)
            if self.no_overwrite and was_dir and not member.isdir():
                raise FailedPrecondition(f'cannot overwrite directory "{shown}" with non-directory "{into}"')
            if self.no_overwrite and not was_dir and member.isdir():
                raise FailedPrecondition(f'cannot overwrite non-directory "{shown}" with directory "{into}"')
            if not (was_dir and member.isdir()):
                if was_dir:
                    shutil.rmtree(base, dir_fd=pfd)
                else:
                    os.unlink(base, dir_fd=pfd)
                if was_dir or stat.S_ISLNK(existing.st_mode):
                    self._invalidate()
        self._create(member, tf, pfd, base, real, name, link_target)

    def _validate(self, member: tarfile.TarInfo, name: str,
                  parent: tuple[str, ...]) -> tuple[int, str] | None:
        """Refuse what Docker's Untar refuses (breakouts) and what we never write; hard link source."""
        if member.issym():
            target = member.linkname
            if not target or "\x00" in target:
                raise InvalidArgument(f"tar entry {member.name!r}: invalid symlink target")
            climbed = posixpath.normpath(posixpath.join("/".join(parent), target))
            if not target.startswith("/") and (climbed == ".." or climbed.startswith("../")):
                raise InvalidArgument(f'invalid symlink "{member.name}" -> "{target}"')
        elif member.islnk():
            return self._link_source(member)
        elif member.ischr() or member.isblk():
            if not self.allow_devices:
                raise InvalidArgument(f"tar entry {member.name!r}: device nodes are not copied to the host")
        elif not (member.isreg() or member.isdir() or member.isfifo()):
            raise InvalidArgument(f"tar entry {member.name!r}: unsupported tar entry type {member.type!r}")
        return None

    def _link_source(self, member: tarfile.TarInfo) -> tuple[int, str]:
        refused = InvalidArgument(f'invalid hardlink "{member.name}" -> "{member.linkname}": '
                                  "not a file extracted earlier from this archive")
        try:
            target = clean_name(member.linkname)
        except InvalidArgument:
            raise refused from None
        if self.rename is not None:
            target = _rebase(target, *self.rename)
        real = self.files.get(target)
        if real is None:
            raise refused
        tparent, _, tbase = target.rpartition("/")
        tfd, treal = self._dir(tuple(tparent.split("/")) if tparent else (), member.name)
        st = lstat_at(tfd, tbase)
        if (*treal, tbase) != real or st is None or not stat.S_ISREG(st.st_mode):
            raise refused
        return tfd, tbase

    def _dir(self, parent: tuple[str, ...], entry: str) -> tuple[int, tuple[str, ...]]:
        """The directory ``base/parent`` (created if missing), resolved in the scope; cached."""
        hit = self.dirs.get(parent)
        if hit is not None:
            self.dirs.move_to_end(parent)
            return hit
        path = "/" + "/".join((*self.base, *parent)) + "/"
        node = self.scope.resolve(path, follow=True)
        if node.dirfd < 0:  # missing directories: check where they would go before creating them
            _check_writable(self.scope, node.real, self.readonly_rootfs)
            node = self.scope.resolve(path, follow=True, create=True)
        self.dirs[parent] = (node.dirfd, node.real)
        while len(self.dirs) > self.CACHE_SIZE:
            self.retired.append(self.dirs.popitem(last=False)[1][0])
        return node.dirfd, node.real

    def _invalidate(self) -> None:
        """A directory or symlink was removed: cached resolutions may be stale (fds stay valid
        until the next entry, since the current one may be using one)."""
        self.retired.extend(fd for fd, _ in self.dirs.values())
        self.dirs.clear()

    def _flush(self) -> None:
        for fd in self.retired:
            os.close(fd)
        self.retired.clear()

    def _create(self, member: tarfile.TarInfo, tf: tarfile.TarFile, pfd: int, base: str,
                real: tuple[str, ...], name: str, link: tuple[int, str] | None) -> None:
        if member.isreg():
            flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
            fd = os.open(base, flags, 0o600, dir_fd=pfd)
            try:
                source = tf.extractfile(member)
                assert source is not None
                while chunk := source.read(COPY_CHUNK):
                    view = memoryview(chunk)
                    while view:
                        view = view[os.write(fd, view):]
                self._fd_meta(fd, member)
            finally:
                os.close(fd)
            self.files[name] = real
        elif member.isdir():
            if lstat_at(pfd, base) is None:
                os.mkdir(base, 0o700, dir_fd=pfd)
            fd = os.open(base, _DIR_READ, dir_fd=pfd)
            try:
                self._fd_meta(fd, member)
            finally:
                os.close(fd)
            self.dir_times[real] = int(member.mtime * 1e9)
        elif link is not None:
            os.link(link[1], base, src_dir_fd=link[0], dst_dir_fd=pfd, follow_symlinks=False)
        else:
            if member.issym():
                os.symlink(member.linkname, base, dir_fd=pfd)
            elif member.isfifo():
                os.mkfifo(base, 0o600, dir_fd=pfd)
            else:
                kind = stat.S_IFCHR if member.ischr() else stat.S_IFBLK
                os.mknod(base, kind | 0o600, os.makedev(member.devmajor, member.devminor), dir_fd=pfd)
            self._at_meta(pfd, base, member)

    def _ids(self, member: tarfile.TarInfo) -> tuple[int, int]:
        return self.owner or (member.uid, member.gid)

    def _xattrs(self, target: int | str, member: tarfile.TarInfo, follow: bool = True) -> None:
        for key, value in member.pax_headers.items():
            attr = key[len(_PAX_XATTR):]
            if not key.startswith(_PAX_XATTR) or attr.startswith("trusted.overlay."):
                continue  # never let an archive steer overlayfs
            try:
                os.setxattr(target, attr, value.encode("utf-8", "surrogateescape"), follow_symlinks=follow)
            except OSError as exc:
                if exc.errno not in (errno.ENOTSUP, errno.EOPNOTSUPP, errno.EPERM):
                    raise

    def _fd_meta(self, fd: int, member: tarfile.TarInfo) -> None:
        if self.chown:
            os.fchown(fd, *self._ids(member))
        self._xattrs(fd, member)
        os.fchmod(fd, member.mode & 0o7777)  # after chown, which clears setuid/setgid
        if not member.isdir():
            mtime = int(member.mtime * 1e9)
            os.utime(fd, ns=(mtime, mtime))

    def _at_meta(self, pfd: int, base: str, member: tarfile.TarInfo) -> None:
        if self.chown:
            os.chown(base, *self._ids(member), dir_fd=pfd, follow_symlinks=False)
        self._xattrs(proc_path(pfd, base), member, follow=False)
        if not member.issym():
            os.chmod(base, member.mode & 0o7777, dir_fd=pfd)  # just created by us: not a symlink
        mtime = int(member.mtime * 1e9)
        os.utime(base, ns=(mtime, mtime), dir_fd=pfd, follow_symlinks=False)

    def _finish(self) -> None:
        """Directory times last: creating their children changed them."""
        for real, mtime in self.dir_times.items():
            node = self.scope.resolve("/" + "/".join(real), follow=False)
            try:
                if node.st is not None and stat.S_ISDIR(node.st.st_mode):
                    os.utime(node.name, ns=(mtime, mtime), dir_fd=node.dirfd, follow_symlinks=False)
            finally:
                node.close()
