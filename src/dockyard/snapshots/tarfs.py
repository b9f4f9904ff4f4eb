"""OCI layer tars <-> directories: safe, streaming application and deterministic generation.

Applying a layer (:func:`apply_layer`) is where hostile input meets the host filesystem, so every
write goes through file descriptors, never through path strings that the kernel would resolve:

- The extraction root is opened once (``O_PATH``); every parent directory of an entry is opened
  component by component relative to it with ``O_NOFOLLOW``.  A parent component that is a symlink
  (``etc -> /etc`` followed by ``etc/passwd``) is resolved with *chroot semantics*: absolute targets
  restart at the root, ``..`` stops at the root, like Docker's ``chrootarchive`` and
  ``filepath-securejoin``.  So ``etc/passwd`` lands at ``<root>/etc/passwd``, never at ``/etc/passwd``.
- The entry itself is created with ``*at`` calls that never follow its final component
  (``O_EXCL|O_NOFOLLOW``, ``linkat`` without ``AT_SYMLINK_FOLLOW``, ``follow_symlinks=False``);
  whatever already sits at that name (from an earlier entry or layer) is removed first.
- Names are cleaned lexically: a leading ``/`` is stripped (Docker does the same), ``a/../b`` is
  ``b``, and a name that climbs above the root (``../x``, ``a/../../x``) is refused with
  :class:`~dockyard.errors.InvalidArgument` naming the entry.  A symlink whose *relative* target
  climbs out of the root from the link's own directory is refused; absolute targets are fine (they
  are resolved inside the container's root at run time).  A hard link must name a regular file that
  this layer extracted earlier.  Character and block devices are refused unless ``allow_devices``.
- ``trusted.overlay.*`` xattrs in a tar are dropped: they would steer overlayfs (opaque, redirect,
  metacopy); the only overlay metadata in a layer directory is what this module writes itself.

Whiteouts (OCI image spec, "Representing Changes"): ``.wh.NAME`` deletes NAME of lower layers and
``.wh..wh..opq`` hides all lower content of its directory.  With ``overlay_whiteouts=True`` (one
directory per layer, stacked as overlay lowerdirs) they become overlayfs whiteouts: a 0/0 character
device NAME, and the xattr ``trusted.overlay.opaque=y`` on the directory.  With
``overlay_whiteouts=False`` (flattening layers into one directory, e.g. export) they delete.  A
whiteout never hides an entry of its own layer (the spec says whiteouts apply to lower layers only).

Generating layers (:func:`write_layer_from_dir`, :func:`write_layer_from_upper`) walks a tree in
sorted byte order and writes PAX tars with hard links detected by inode, numeric owners only and
whole-second mtimes, so the same tree always gives the same diff ID.  From an overlay upper dir the
conversion runs the other way: 0/0 character devices become ``.wh.NAME`` and opaque directories get
a ``.wh..wh..opq`` entry.

Errors: a truncated stream, a corrupt header, a missing end-of-archive marker or input that is not a
tar raises :class:`~dockyard.errors.DataLoss`; a hostile or unsupported entry raises
:class:`~dockyard.errors.InvalidArgument`; filesystem failures are translated with the entry name.
:func:`apply_layer` may leave a partially written root behind on any error: callers unpack into a
private temporary directory and discard it on failure (the overlay snapshotter renames it into place
only on success).
"""

from __future__ import annotations

import errno
import hashlib
import os
import posixpath
import shutil
import stat
import struct
import tarfile
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO, Callable, TypeVar

from dockyard.errors import (
    DataLoss,
    DockyardError,
    FailedPrecondition,
    InvalidArgument,
    PermissionDenied,
    Unavailable,
)
from dockyard.snapshots.compression import CORRUPT_STREAM_ERRORS

WHITEOUT_PREFIX = ".wh."
WHITEOUT_META_PREFIX = ".wh..wh."
WHITEOUT_OPAQUE = ".wh..wh..opq"
OVERLAY_OPAQUE_XATTR = "trusted.overlay.opaque"
_OVERLAY_XATTR_PREFIX = "trusted.overlay."
_PAX_XATTR_PREFIX = "SCHILY.xattr."
_T = TypeVar("_T")
_DIR_PATH_FLAGS = os.O_PATH | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
_DIR_READ_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC

#: Size of the reads tarfile's stream layer makes from the (decompressed) input.  tarfile copies
#: its buffer on every small read, so this stays moderate; file data is moved in COPY_CHUNK pieces.
_TAR_BUFSIZE = 64 * 1024
COPY_CHUNK = 1 << 20


@dataclass(frozen=True)
class ApplyResult:
    """What :func:`apply_layer` read: the diff ID (sha256 of the uncompressed tar) and bytes unpacked."""

    diff_id: str
    size: int


class _HashingReader:
    """Passes reads through and hashes every byte, so the digest covers the tar as received."""

    def __init__(self, source: BinaryIO) -> None:
        self._source = source
        self._hash = hashlib.sha256()

    def read(self, size: int = -1) -> bytes:
        data = self._source.read(size)
        self._hash.update(data)
        return data

    def drain(self) -> None:
        """Read to EOF (end-of-archive blocks, record padding) so the digest covers every byte."""
        while self.read(COPY_CHUNK):
            pass

    def digest(self) -> str:
        return "sha256:" + self._hash.hexdigest()


class _HashingWriter:
    """A write-only file object that hashes what it forwards; ``tell()`` is what tarfile needs."""

    def __init__(self, out: BinaryIO) -> None:
        self._out = out
        self._hash = hashlib.sha256()
        self._count = 0

    def write(self, data: bytes) -> int:
        self._hash.update(data)
        view = memoryview(data)
        while view:
            n = self._out.write(view)
            view = view[n if n is not None else len(view) :]
        self._count += len(data)
        return len(data)

    def tell(self) -> int:
        return self._count

    def digest(self) -> str:
        return "sha256:" + self._hash.hexdigest()


_USTAR = struct.Struct("100s8s8s8s12s12s8sc100s6s2s32s32s8s8s155s12x")


def _octal(field: bytes) -> int:
    """A plain octal number field; ValueError for anything else (base-256, garbage)."""
    if field[0] & 0x80:
        raise ValueError("base-256 number")
    return int(field.split(b"\0", 1)[0].strip() or b"0", 8)


class _StrictTarInfo(tarfile.TarInfo):
    """Stricter and faster header parsing for :func:`apply_layer`.

    Strict: tarfile silently treats a bad or truncated header after the first as the end of the
    archive; Go's archive/tar (and so Docker) fails instead, and so do we.  We also require the
    end-of-archive marker, because a stream that simply stops at a member boundary is otherwise
    indistinguishable from a truncated download.

    Fast: ``frombuf`` parses the common ustar/GNU header with one struct unpack and an unsigned
    checksum; anything unusual (base-256 numbers, signed checksums, old GNU sparse, EOF blocks)
    falls back to tarfile's own parser, which also raises the proper header errors.
    """

    @classmethod
    def frombuf(cls, buf: bytes, encoding: str, errors: str) -> tarfile.TarInfo:  # type: ignore[override]
        if len(buf) != tarfile.BLOCKSIZE or buf[156:157] == tarfile.GNUTYPE_SPARSE:
            return super().frombuf(buf, encoding, errors)
        (name, mode, uid, gid, size, mtime, chksum, kind, linkname, _magic, _version, uname, gname,
         devmajor, devminor, prefix) = _USTAR.unpack(buf)
        try:
            checksum = _octal(chksum)
            if checksum != sum(buf) - sum(chksum) + 256:  # the field itself counts as 8 spaces
                raise ValueError("checksum")
            obj = cls()
            obj.mode, obj.uid, obj.gid = _octal(mode), _octal(uid), _octal(gid)
            obj.size, obj.mtime = _octal(size), _octal(mtime)
            if kind in (tarfile.CHRTYPE, tarfile.BLKTYPE):  # meaningless (and often junk) otherwise
                obj.devmajor, obj.devminor = _octal(devmajor), _octal(devminor)
        except ValueError:
            return super().frombuf(buf, encoding, errors)

        def text(field: bytes) -> str:
            end = field.find(b"\0")
            return (field if end == -1 else field[:end]).decode(encoding, errors)

        obj.chksum, obj.type = checksum, kind
        obj.name, obj.linkname = text(name), text(linkname)
        obj.uname, obj.gname = text(uname), text(gname)
        if kind == tarfile.AREGTYPE and obj.name.endswith("/"):
            obj.type = tarfile.DIRTYPE  # old V7 directories
        if obj.isdir():
            obj.name = obj.name.rstrip("/")
        head = text(prefix)
        if head and kind not in tarfile.GNU_TYPES:
            obj.name = head + "/" + obj.name
        return obj

    @classmethod
    def fromtarfile(cls, tarfile_: tarfile.TarFile) -> tarfile.TarInfo:  # type: ignore[override]
        position = tarfile_.fileobj.tell()  # type: ignore[union-attr]
        try:
            return super().fromtarfile(tarfile_)
        except tarfile.EOFHeaderError:
            raise  # a zero block: the regular end of the archive
        except tarfile.EmptyHeaderError:
            if position == 0:
                raise DataLoss("not a tar archive: the stream is empty") from None
            raise DataLoss(
                f"unexpected EOF at offset {position}: the tar has no end-of-archive marker"
            ) from None
        except tarfile.TruncatedHeaderError:
            if position == 0:
                raise DataLoss("not a tar archive: shorter than one tar header") from None
            raise DataLoss(f"unexpected EOF inside the tar header at offset {position}") from None
        except tarfile.InvalidHeaderError as exc:
            if position == 0:
                raise DataLoss(f"not a tar archive: {exc}") from None
            raise DataLoss(f"corrupt tar header at offset {position}: {exc}") from None


def clean_name(name: str) -> str:
    """Clean an archive path lexically; '' is the root.  Raises InvalidArgument if it escapes."""
    if "\x00" in name:
        raise InvalidArgument(f"tar entry {name!r}: NUL byte in name")
    stripped = name.lstrip("/")
    if not stripped:
        return ""
    cleaned = posixpath.normpath(stripped)
    if cleaned == ".." or cleaned.startswith("../"):
        raise InvalidArgument(f"tar entry {name!r}: path escapes the layer root")
    return "" if cleaned == "." else cleaned


def _fs_error(entry: str, exc: OSError) -> DockyardError:
    """Translate an OSError met while writing ``entry`` into a dockyard error naming it."""
    text = f"tar entry {entry!r}: {exc.strerror or exc}"
    if exc.errno in (errno.ENOSPC, errno.EDQUOT):
        return Unavailable(text)
    if exc.errno in (errno.EPERM, errno.EACCES):
        return PermissionDenied(text)
    if exc.errno in (errno.ENOTDIR, errno.EISDIR, errno.EEXIST, errno.ELOOP, errno.ENAMETOOLONG,
                     errno.EINVAL):
        return InvalidArgument(text)
    return FailedPrecondition(text)


def _current_umask() -> int:
    """The process umask, read without changing it (os.umask would race with other threads)."""
    try:
        with open("/proc/self/status", encoding="ascii", errors="replace") as status:
            for line in status:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError, IndexError):
        pass
    return 0o777  # unknown: treat every bit as cut, so modes are always set explicitly


def _ns(mtime: float | int) -> int:
    return mtime * 1_000_000_000 if isinstance(mtime, int) else round(mtime * 1e9)


def proc_path(fd: int, name: str | None = None) -> str:
    """A path naming ``name`` inside the directory open as ``fd`` (or the directory itself).

    For the few calls that take no ``dir_fd`` (``lsetxattr``/``llistxattr``): the kernel resolves
    ``/proc/self/fd/N`` to exactly the pinned directory, so no symlink in between can redirect it.
    """
    return f"/proc/self/fd/{fd}/{name}" if name else f"/proc/self/fd/{fd}"


class _DirTree:
    """Directory file descriptors below one root, resolved with chroot semantics.

    ``open_dir(rel)`` returns ``(fd, real)``: an ``O_PATH`` fd of the directory that the archive
    path ``rel`` names, and its symlink-free path relative to the root.  Components are opened one
    at a time with ``O_NOFOLLOW``; a symlink component is re-resolved from the root (absolute
    target) or from its directory (relative target), with ``..`` clamped at the root, so no fd
    ever points outside.  Missing directories are created 0755 when ``create`` is set.

    Lifecycle: fds are cached (tar entries arrive grouped by directory) and *borrowed* by callers;
    they stay valid until the next :meth:`trim`, which the extractor calls before each entry.
    :meth:`invalidate` (after removing a directory or symlink, which may change what a cached
    path resolves to) empties the cache but only retires the fds, for the same reason.
    """

    MAX_SYMLINKS = 40
    CACHE_SIZE = 128

    def __init__(self, root: Path) -> None:
        self.root_fd = os.open(root, _DIR_PATH_FLAGS & ~os.O_NOFOLLOW)  # the root itself is trusted
        self._cache: OrderedDict[str, tuple[int, str]] = OrderedDict()
        self._retired: list[int] = []

    def close(self) -> None:
        self.invalidate()
        self._close_retired()
        os.close(self.root_fd)

    def invalidate(self) -> None:
        self._retired.extend(fd for fd, _ in self._cache.values())
        self._cache.clear()

    def _close_retired(self) -> None:
        for fd in self._retired:
            os.close(fd)
        self._retired.clear()

    def trim(self) -> None:
        self._close_retired()
        while len(self._cache) > self.CACHE_SIZE:
            _, (fd, _) = self._cache.popitem(last=False)
            os.close(fd)

    def _put(self, key: str, value: tuple[int, str]) -> tuple[int, str]:
        old = self._cache.pop(key, None)
        if old is not None:
            self._retired.append(old[0])
        self._cache[key] = value
        return value

    def _mkdir(self, parent_fd: int, name: str) -> None:
        os.mkdir(name, 0o755, dir_fd=parent_fd)
        os.chmod(name, 0o755, dir_fd=parent_fd)  # independent of the umask

    def open_dir(self, rel: str, *, create: bool, entry: str) -> tuple[int, str] | None:
        """Resolve (and with ``create`` make) directory ``rel``; None if missing and not ``create``.

        Raises InvalidArgument if a component is not a directory (and ``create``) or on a symlink loop.
        """
        if not rel:
            return self.root_fd, ""
        hit = self._cache.get(rel)
        if hit is not None:
            self._cache.move_to_end(rel)
            return hit
        parts = rel.split("/")
        start, (fd, real) = 0, (self.root_fd, "")
        for i in range(len(parts) - 1, 0, -1):
            ancestor = self._cache.get("/".join(parts[:i]))
            if ancestor is not None:
                start, (fd, real) = i, ancestor
                break
        for j in range(start, len(parts)):
            name = parts[j]
            st = _lstat(fd, name)
            if st is None:
                if not create:
                    return None
                self._mkdir(fd, name)
            elif stat.S_ISLNK(st.st_mode):
                found = self._walk(parts, create=create, entry=entry)
                return None if found is None else self._put(rel, found)
            elif not stat.S_ISDIR(st.st_mode):
                if create:
                    shown = "/".join(parts[: j + 1])
                    raise InvalidArgument(f"tar entry {entry!r}: {shown!r} is not a directory")
                return None
            child = os.open(name, _DIR_PATH_FLAGS, dir_fd=fd)
            real = f"{real}/{name}" if real else name
            fd = self._put("/".join(parts[: j + 1]), (child, real))[0]
        return fd, real

    def _walk(self, parts: list[str], *, create: bool, entry: str) -> tuple[int, str] | None:
        """Full resolution from the root with chroot semantics (the symlink case of open_dir)."""
        todo = list(reversed(parts))
        fds: list[int] = []
        real: list[str] = []
        links = 0
        try:
            while todo:
                name = todo.pop()
                if name in ("", "."):
                    continue
                if name == "..":
                    if fds:
                        real.pop()
                        os.close(fds.pop())
                    continue
                cur = fds[-1] if fds else self.root_fd
                st = _lstat(cur, name)
                if st is not None and stat.S_ISLNK(st.st_mode):
                    links += 1
                    if links > self.MAX_SYMLINKS:
                        raise InvalidArgument(f"tar entry {entry!r}: too many levels of symbolic links")
                    target = os.readlink(name, dir_fd=cur)
                    if target.startswith("/"):
                        for fd in fds:
                            os.close(fd)
                        fds.clear()
                        real.clear()
                    todo.extend(reversed(target.split("/")))
                    continue
                if st is None:
                    if not create:
                        return None
                    self._mkdir(cur, name)
                elif not stat.S_ISDIR(st.st_mode):
                    if create:
                        shown = "/".join([*real, name])
                        raise InvalidArgument(f"tar entry {entry!r}: {shown!r} is not a directory")
                    return None
                fds.append(os.open(name, _DIR_PATH_FLAGS, dir_fd=cur))
                real.append(name)
            if not fds:
                return os.dup(self.root_fd), ""
            return fds.pop(), "/".join(real)
        finally:
            for fd in fds:
                os.close(fd)


def _lstat(dfd: int, name: str) -> os.stat_result | None:
    try:
        return os.stat(name, dir_fd=dfd, follow_symlinks=False)
    except FileNotFoundError:
        return None


class _Extractor:
    """Applies one tar entry at a time to a root; see the module docstring for the rules."""

    def __init__(self, root: Path, *, allow_devices: bool, overlay_whiteouts: bool) -> None:
        self.root = root
        self.tree = _DirTree(root)
        self.allow_devices = allow_devices
        self.overlay = overlay_whiteouts
        self.chown = os.geteuid() == 0
        self.umask = _current_umask()
        self.size = 0
        self.unpacked: set[str] = set()  # real paths this layer created (whiteouts spare them)
        self.holders: set[str] = set()  # directories holding something this layer created
        self.files: set[str] = set()  # regular files this layer created (hard link targets)
        self.whiteouts: set[str] = set()  # overlay whiteout devices this layer created
        self.dir_times: dict[str, int] = {}  # directory mtimes, set last (children touch them)

    def close(self) -> None:
        self.tree.close()

    # -- entry dispatch ---------------------------------------------------------------------

    def apply(self, member: tarfile.TarInfo, tf: tarfile.TarFile) -> None:
        self.tree.trim()
        name = clean_name(member.name)
        if not name:
            self._root_entry(member)
            return
        parent, _, base = name.rpartition("/")
        if base.startswith(WHITEOUT_PREFIX):
            self._whiteout(member, parent, base)
            return
        # Validate everything about the entry before touching the filesystem.
        link_target = None
        if member.islnk():
            link_target = self._hardlink_target(member)
        elif member.issym():
            self._check_symlink(member, parent)
        elif member.ischr() or member.isblk():
            if not self.allow_devices:
                raise InvalidArgument(f"tar entry {member.name!r}: device nodes are not allowed in layers")
        elif not (member.isreg() or member.isdir() or member.isfifo()):
            raise InvalidArgument(f"tar entry {member.name!r}: unsupported tar entry type {member.type!r}")
        pfd, preal = self.tree.open_dir(parent, create=True, entry=member.name)  # type: ignore[misc]
        real = f"{preal}/{base}" if preal else base
        if member.isreg():
            self._regular(member, tf, pfd, base)
            self.files.add(real)
        elif member.isdir():
            self._directory(member, pfd, base, real)
        elif member.issym():
            self._create(pfd, base, lambda: os.symlink(member.linkname, base, dir_fd=pfd))
            self._at_meta(pfd, base, member, symlink=True)
        elif link_target is not None:
            tfd, tbase, treal = link_target
            if treal == real:
                raise InvalidArgument(f"tar entry {member.name!r}: hard link to itself")
            self._create(pfd, base, lambda: os.link(tbase, base, src_dir_fd=tfd, dst_dir_fd=pfd,
                                                    follow_symlinks=False))
            self.files.add(real)
        elif member.isfifo():
            self._create(pfd, base, lambda: os.mkfifo(base, 0o600, dir_fd=pfd))
            self._at_meta(pfd, base, member)
        else:
            kind = stat.S_IFCHR if member.ischr() else stat.S_IFBLK
            device = os.makedev(member.devmajor, member.devminor)
            self._create(pfd, base, lambda: os.mknod(base, kind | 0o600, device, dir_fd=pfd))
            self._at_meta(pfd, base, member)
        self.unpacked.add(real)
        while preal and preal not in self.holders:  # amortised O(1): stops at a known ancestor
            self.holders.add(preal)
            preal = preal.rpartition("/")[0]

    def _create(
        self, pfd: int, base: str, make: Callable[[], _T], *, keep_dir: bool = False
    ) -> _T | None:
        """Run ``make`` (an exclusive create); if the name is taken, remove the old entry and retry.

        Trying first saves a stat per entry in the common case (a fresh directory).  With
        ``keep_dir`` an existing directory is kept (a dir entry over a dir) and None is returned.
        """
        try:
            return make()
        except FileExistsError:
            existing = _lstat(pfd, base)
            if existing is not None:
                if keep_dir and stat.S_ISDIR(existing.st_mode):
                    return None
                self._remove(pfd, base, existing)
            return make()

    # -- entry kinds --------------------------------------------------------------------------

    def _root_entry(self, member: tarfile.TarInfo) -> None:
        if not member.isdir():
            raise InvalidArgument(f"tar entry {member.name!r}: the layer root must be a directory")
        fd = os.open(".", os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC, dir_fd=self.tree.root_fd)
        try:
            self._fd_meta(fd, member)
        finally:
            os.close(fd)
        self.dir_times[""] = _ns(member.mtime)

    def _regular(self, member: tarfile.TarInfo, tf: tarfile.TarFile, pfd: int, base: str) -> None:
        flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
        perm = member.mode & 0o777
        fd: int = self._create(pfd, base, lambda: os.open(base, flags, perm, dir_fd=pfd))  # type: ignore
        try:
            if member.sparse is not None:
                source = tf.extractfile(member)
                assert source is not None
                read = source.read
            else:
                read = tf.fileobj.read  # type: ignore[union-attr]  # positioned at member.offset_data
            remaining = member.size
            while remaining:
                chunk = read(min(remaining, COPY_CHUNK))
                if not chunk:
                    raise DataLoss(f"unexpected EOF in the data of tar entry {member.name!r}")
                view = memoryview(chunk)
                while view:
                    view = view[os.write(fd, view) :]
                remaining -= len(chunk)
            # The create mode already is the final mode unless the umask cut it or special bits
            # (setuid, setgid, sticky) are wanted: then chmod, after chown (which clears them).
            self._fd_meta(fd, member, chmod=bool(member.mode & 0o7000 or perm & self.umask))
        finally:
            os.close(fd)
        self.size += member.size

    def _directory(self, member: tarfile.TarInfo, pfd: int, base: str, real: str) -> None:
        self._create(pfd, base, lambda: os.mkdir(base, 0o700, dir_fd=pfd), keep_dir=True)
        fd = os.open(base, _DIR_READ_FLAGS, dir_fd=pfd)
        try:
            self._fd_meta(fd, member)
            if self.overlay and real in self.whiteouts:
                # ".wh.d" then "d/" in one layer: a fresh d that must hide the lower d entirely.
                os.setxattr(fd, OVERLAY_OPAQUE_XATTR, b"y")
        finally:
            os.close(fd)
        self.dir_times[real] = _ns(member.mtime)

    def _check_symlink(self, member: tarfile.TarInfo, parent: str) -> None:
        target = member.linkname
        if not target or "\x00" in target:
            raise InvalidArgument(f"tar entry {member.name!r}: empty or invalid symlink target")
        if not target.startswith("/"):
            resolved = posixpath.normpath(posixpath.join(parent, target))
            if resolved == ".." or resolved.startswith("../"):
                raise InvalidArgument(
                    f"tar entry {member.name!r}: symlink target {target!r} escapes the layer root"
                )

    def _hardlink_target(self, member: tarfile.TarInfo) -> tuple[int, str, str]:
        try:
            target = clean_name(member.linkname)
        except InvalidArgument:
            raise InvalidArgument(
                f"tar entry {member.name!r}: hard link target {member.linkname!r} escapes the layer root"
            ) from None
        refused = InvalidArgument(
            f"tar entry {member.name!r}: hard link target {member.linkname!r} is not a regular file "
            "extracted earlier from this layer"
        )
        if not target:
            raise refused
        tparent, _, tbase = target.rpartition("/")
        found = self.tree.open_dir(tparent, create=False, entry=member.name)
        if found is None:
            raise refused
        tfd, treal = found
        treal = f"{treal}/{tbase}" if treal else tbase
        st = _lstat(tfd, tbase)
        if treal not in self.files or st is None or not stat.S_ISREG(st.st_mode):
            raise refused
        return tfd, tbase, treal

    def _whiteout(self, member: tarfile.TarInfo, parent: str, base: str) -> None:
        if base == WHITEOUT_OPAQUE:
            found = self.tree.open_dir(parent, create=self.overlay, entry=member.name)
            if found is None:
                return
            dfd, dreal = found
            if self.overlay:
                os.setxattr(proc_path(dfd), OVERLAY_OPAQUE_XATTR, b"y")
            else:
                self._remove_lower_children(dfd, dreal)
            return
        if base.startswith(WHITEOUT_META_PREFIX):
            return  # other AUFS metadata (.wh..wh.plnk, ...): ignored, as Docker does
        victim = base[len(WHITEOUT_PREFIX) :]
        if victim in ("", ".", ".."):
            raise InvalidArgument(f"tar entry {member.name!r}: invalid whiteout")
        found = self.tree.open_dir(parent, create=self.overlay, entry=member.name)
        if found is None:
            return  # flattening and the directory does not exist: nothing to delete
        dfd, dreal = found
        real = f"{dreal}/{victim}" if dreal else victim
        if real in self.unpacked or real in self.holders:
            return  # whiteouts hide lower layers only, never this layer's own entries
        existing = _lstat(dfd, victim)
        if existing is not None:
            self._remove(dfd, victim, existing)
        if self.overlay:
            os.mknod(victim, stat.S_IFCHR | 0o600, os.makedev(0, 0), dir_fd=dfd)
            if self.chown:
                os.chown(victim, member.uid, member.gid, dir_fd=dfd, follow_symlinks=False)
            mtime = _ns(member.mtime)  # kept, so that write_layer_from_upper round-trips exactly
            os.utime(victim, ns=(mtime, mtime), dir_fd=dfd, follow_symlinks=False)
            self.whiteouts.add(real)

    def _remove_lower_children(self, dfd: int, dreal: str) -> None:
        """Flattened opaque directory: delete everything below it that this layer did not create.

        Directories this layer created are kept but searched too (their lower content is hidden
        as well).  Iterative, so hostile depth cannot hit the recursion limit.
        """
        pending = [(os.open(".", _DIR_READ_FLAGS, dir_fd=dfd), dreal)]
        try:
            while pending:
                fd, real_dir = pending.pop()
                try:
                    with os.scandir(fd) as entries:
                        children = [(e.name, e.is_dir(follow_symlinks=False)) for e in entries]
                    for child, is_dir in children:
                        real = f"{real_dir}/{child}" if real_dir else child
                        if real in self.unpacked or real in self.holders:
                            if is_dir:
                                pending.append((os.open(child, _DIR_READ_FLAGS, dir_fd=fd), real))
                            continue
                        st = _lstat(fd, child)
                        if st is not None:
                            self._remove(fd, child, st)
                finally:
                    os.close(fd)
        finally:
            for fd, _ in pending:
                os.close(fd)

    # -- helpers ------------------------------------------------------------------------------

    def _remove(self, dfd: int, name: str, st: os.stat_result) -> None:
        if stat.S_ISDIR(st.st_mode):
            shutil.rmtree(name, dir_fd=dfd)
            self.tree.invalidate()
        else:
            os.unlink(name, dir_fd=dfd)
            if stat.S_ISLNK(st.st_mode):
                self.tree.invalidate()

    def _xattrs(self, target: int | str, member: tarfile.TarInfo, *, follow: bool = True) -> None:
        for key, value in member.pax_headers.items():
            if not key.startswith(_PAX_XATTR_PREFIX):
                continue
            attr = key[len(_PAX_XATTR_PREFIX) :]
            if attr.startswith(_OVERLAY_XATTR_PREFIX):
                continue  # never let a tar steer overlayfs
            try:
                raw = value.encode("utf-8", "surrogateescape")
                os.setxattr(target, attr, raw, follow_symlinks=follow)
            except OSError as exc:
                # Like Docker: not every filesystem (or symlinks, for user.*) takes every xattr.
                if exc.errno not in (errno.ENOTSUP, errno.EOPNOTSUPP, errno.EPERM):
                    raise

    def _fd_meta(self, fd: int, member: tarfile.TarInfo, *, chmod: bool = True) -> None:
        """Owner, xattrs, mode (after chown, which clears setuid), then times, on an open fd."""
        if self.chown:
            os.fchown(fd, member.uid, member.gid)
        self._xattrs(fd, member)
        if chmod:
            os.fchmod(fd, member.mode & 0o7777)
        if not member.isdir():
            mtime = _ns(member.mtime)
            os.utime(fd, ns=(mtime, mtime))

    def _at_meta(self, pfd: int, base: str, member: tarfile.TarInfo, *, symlink: bool = False) -> None:
        """Metadata for entries we must not open (symlinks, devices, fifos), via ``*at`` calls."""
        if self.chown:
            os.chown(base, member.uid, member.gid, dir_fd=pfd, follow_symlinks=False)
        self._xattrs(proc_path(pfd, base), member, follow=False)
        if not symlink:
            os.chmod(base, member.mode & 0o7777, dir_fd=pfd)  # just created by us: not a symlink
        mtime = _ns(member.mtime)
        os.utime(base, ns=(mtime, mtime), dir_fd=pfd, follow_symlinks=False)

    def finish(self) -> None:
        """Set directory mtimes last: creating their children changed them."""
        for real, mtime in self.dir_times.items():
            self.tree.trim()
            if not real:
                os.utime(self.root, ns=(mtime, mtime))
                continue
            parent, _, base = real.rpartition("/")
            found = self.tree.open_dir(parent, create=False, entry=real)
            if found is None:
                continue
            st = _lstat(found[0], base)
            if st is not None and stat.S_ISDIR(st.st_mode):
                os.utime(base, ns=(mtime, mtime), dir_fd=found[0], follow_symlinks=False)


def apply_layer(
    stream: BinaryIO, root: Path, *, allow_devices: bool = False, overlay_whiteouts: bool = True
) -> ApplyResult:
    """Unpack the uncompressed layer tar read from ``stream`` onto the directory ``root``.

    ``stream`` is read to EOF (so the diff ID covers trailing padding) but not closed.  Returns the
    diff ID and the number of file bytes written.  Raises DataLoss for truncated/corrupt/non-tar
    input, InvalidArgument for hostile or unsupported entries, and a translated error (naming the
    entry) for filesystem failures; on any error ``root`` may hold a partial layer and the caller
    must discard it.  Ownership is applied only when running as root.
    """
    hashing = _HashingReader(stream)
    extractor = _Extractor(Path(root), allow_devices=allow_devices, overlay_whiteouts=overlay_whiteouts)
    member: tarfile.TarInfo | None = None
    try:
        reader = tarfile.open(fileobj=hashing, mode="r|", bufsize=_TAR_BUFSIZE, tarinfo=_StrictTarInfo)
        with reader as tf:
            for member in tf:
                try:
                    extractor.apply(member, tf)
                except OSError as exc:
                    if isinstance(exc, CORRUPT_STREAM_ERRORS):
                        raise
                    raise _fs_error(member.name, exc) from exc
        hashing.drain()
        extractor.finish()
    except tarfile.ReadError as exc:
        where = f" (after tar entry {member.name!r})" if member is not None else ""
        text = str(exc)
        if "unexpected end" in text:
            raise DataLoss(f"unexpected EOF{where}: the tar is truncated") from exc
        if member is None:
            raise DataLoss(f"not a tar archive: {text}") from exc
        raise DataLoss(f"corrupt tar{where}: {text}") from exc
    except tarfile.TarError as exc:
        raise DataLoss(f"corrupt tar: {exc}") from exc
    except CORRUPT_STREAM_ERRORS as exc:
        raise DataLoss(f"corrupt compressed layer stream: {exc}") from exc
    except OSError as exc:
        raise _fs_error(member.name if member is not None else str(root), exc) from exc
    finally:
        extractor.close()
    return ApplyResult(diff_id=hashing.digest(), size=extractor.size)


# -- generating layers ------------------------------------------------------------------------


def write_layer_from_dir(root: Path, out: BinaryIO) -> str:
    """Write the whole tree under ``root`` as an uncompressed PAX layer tar; returns its diff ID.

    The root directory itself gets no entry; sockets are skipped (tar cannot carry them).  ``out``
    is written to and not closed; the caller compresses if it wants to (see compression.gzip_writer).
    """
    return _write_tree(Path(root), out, upper=False)


def write_layer_from_upper(upper: Path, out: BinaryIO) -> str:
    """Write an overlay upper directory as an OCI layer tar (whiteouts converted); returns its diff ID.

    0/0 character devices become empty ``.wh.NAME`` files, directories marked
    ``trusted.overlay.opaque=y`` are followed by a ``.wh..wh..opq`` entry, and no
    ``trusted.overlay.*`` xattr is written.  The upper dir should not be mounted-and-changing while
    this runs (stop the container, or pause it).  ``out`` is not closed.
    """
    return _write_tree(Path(upper), out, upper=True)


def _list_xattrs(target: int | str) -> dict[str, str]:
    follow = isinstance(target, int)  # an fd: nothing to follow; a path: never follow
    try:
        names = os.listxattr(target, follow_symlinks=follow)
    except OSError as exc:
        if exc.errno in (errno.ENOTSUP, errno.EOPNOTSUPP):
            return {}
        raise
    found: dict[str, str] = {}
    for name in sorted(names):
        if name.startswith(_OVERLAY_XATTR_PREFIX):
            continue
        try:
            value = os.getxattr(target, name, follow_symlinks=follow)
        except OSError as exc:
            if exc.errno in (errno.ENODATA, errno.ENOTSUP, errno.EOPNOTSUPP):
                continue
            raise
        found[_PAX_XATTR_PREFIX + name] = value.decode("utf-8", "surrogateescape")
    return found


def _info(name: str, st: os.stat_result, kind: bytes) -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.type = kind
    info.mode = stat.S_IMODE(st.st_mode)
    info.uid, info.gid = st.st_uid, st.st_gid
    info.uname = info.gname = ""
    info.mtime = int(st.st_mtime)
    return info


def _write_tree(root: Path, out: BinaryIO, *, upper: bool) -> str:
    writer = _HashingWriter(out)
    tf = tarfile.TarFile(  # type: ignore[call-overload]
        fileobj=writer, mode="w", format=tarfile.PAX_FORMAT, copybufsize=COPY_CHUNK
    )
    links: dict[tuple[int, int], str] = {}
    # An explicit stack, not recursion: a container can build directory trees deeper than Python's
    # recursion limit.  Each frame: (dir fd, name prefix, names still to write, reverse-sorted).
    stack: list[tuple[int, str, list[str]]] = []
    try:
        root_fd = os.open(root, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        stack.append((root_fd, "", _sorted_names(root_fd)))
        while stack:
            dfd, prefix, names = stack[-1]
            if not names:
                os.close(dfd)
                stack.pop()
                continue
            name = names.pop()
            rel = prefix + name
            st = os.stat(name, dir_fd=dfd, follow_symlinks=False)
            mode = st.st_mode
            if stat.S_ISDIR(mode):
                fd = os.open(name, _DIR_READ_FLAGS, dir_fd=dfd)
                stack.append((fd, rel + "/", []))
                info = _info(rel, st, tarfile.DIRTYPE)
                info.pax_headers = _list_xattrs(fd)
                tf.addfile(info)
                if upper and _is_opaque(fd):
                    tf.addfile(_info(f"{rel}/{WHITEOUT_OPAQUE}", st, tarfile.REGTYPE))
                stack[-1][2].extend(_sorted_names(fd))
            elif stat.S_ISREG(mode):
                key = (st.st_dev, st.st_ino)
                if st.st_nlink > 1 and key in links:
                    info = _info(rel, st, tarfile.LNKTYPE)
                    info.linkname = links[key]
                    tf.addfile(info)
                    continue
                if st.st_nlink > 1:
                    links[key] = rel
                fd = os.open(name, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=dfd)
                with open(fd, "rb", buffering=0) as data:
                    info = _info(rel, st, tarfile.REGTYPE)
                    info.size = st.st_size
                    info.pax_headers = _list_xattrs(fd)
                    tf.addfile(info, data)
            elif stat.S_ISLNK(mode):
                info = _info(rel, st, tarfile.SYMTYPE)
                info.linkname = os.readlink(name, dir_fd=dfd)
                info.pax_headers = _list_xattrs(proc_path(dfd, name))
                tf.addfile(info)
            elif stat.S_ISCHR(mode) and upper and st.st_rdev == 0:
                tf.addfile(_info(f"{prefix}{WHITEOUT_PREFIX}{name}", st, tarfile.REGTYPE))
            elif stat.S_ISCHR(mode) or stat.S_ISBLK(mode) or stat.S_ISFIFO(mode):
                kind = _DEVICE_TYPES[stat.S_IFMT(mode)]
                info = _info(rel, st, kind)
                if kind != tarfile.FIFOTYPE:
                    info.devmajor, info.devminor = os.major(st.st_rdev), os.minor(st.st_rdev)
                info.pax_headers = _list_xattrs(proc_path(dfd, name))
                tf.addfile(info)
            # sockets (and anything else) cannot be represented in a tar: skipped, as Docker does
        tf.close()
    finally:
        for dfd, _, _ in stack:
            os.close(dfd)
    return writer.digest()


_DEVICE_TYPES = {stat.S_IFCHR: tarfile.CHRTYPE, stat.S_IFBLK: tarfile.BLKTYPE, stat.S_IFIFO: tarfile.FIFOTYPE}


def _sorted_names(fd: int) -> list[str]:
    """Directory entries in reverse byte order (popped from the end: written in byte order)."""
    return sorted(os.listdir(fd), key=os.fsencode, reverse=True)


def _is_opaque(fd: int) -> bool:
    try:
        return os.getxattr(fd, OVERLAY_OPAQUE_XATTR) == b"y"
    except OSError:
        return False
