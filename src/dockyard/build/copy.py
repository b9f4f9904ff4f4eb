"""COPY and ADD: files from the context, another stage or image, a heredoc or a URL, into a build
step's root filesystem, with Docker's (BuildKit's) rules.

A :class:`CopyStep` is used in two phases, because the build cache needs to know what would be
copied before anything is: :meth:`CopyStep.resolve` finds the sources (and downloads URLs), so
:meth:`CopyStep.digest` can key the cache; on a miss :meth:`CopyStep.apply` copies into the
mounted root filesystem of the step's snapshot.

Rules (BuildKit's ``dispatchCopy`` and file op):

- Sources are relative to the source root (``../x`` cannot leave it); a source that is a symlink
  is followed, symlinks inside copied directories are copied as links.  Wildcards (``*``, ``?``,
  ``[...]``) match per path component; nothing matching is ``"/x*": not found``.
- A directory source copies its *contents*; a file goes to ``dest/<name>`` when the destination
  ends in ``/`` (or ``.``), already is a directory, or several sources are copied, else to
  ``dest`` itself.  A relative destination is relative to WORKDIR.  ``--parents`` keeps each
  source's path (from a ``/./`` marker in it, if any).  ``--exclude`` patterns leave paths out.
- Owners: files from the context are root's (0:0), files from ``--from`` keep theirs; ``--chown``
  (names looked up in the destination's /etc/passwd and /etc/group; a user alone also gives the
  group with the same number) sets both for everything copied and for directories created.
  ``--chmod`` (octal) sets the mode of everything copied.  Missing destination directories are
  created 0755.
- ADD also extracts local tar archives (plain, gzip, bzip2, xz) into the destination, keeping the
  owners in the archive unless ``--chown``; URLs are downloaded (mode 0600, the
  ``Last-Modified`` time), checked against ``--checksum=sha256:...`` when given, and never
  extracted.

Safety: everything is written by streaming a tar into
:func:`dockyard.containers.archive.extract_to`, which resolves every path inside the root
filesystem with chroot semantics (a symlink in the image cannot send a file to the host), and the
same goes for extracted archives.
"""

from __future__ import annotations

import hashlib
import os
import posixpath
import stat
import tarfile
import tempfile
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from dockyard.build.context import BuildContext, Entry, has_wildcards
from dockyard.errors import DockyardError, InvalidArgument, NotFound, Unavailable


@dataclass
class _Source:
    """One resolved source: a context/stage entry, inline bytes (heredoc) or a downloaded file."""

    shown: str                      # as the user wrote it (for messages)
    entry: Entry | None = None      # a file, link or directory of the source root
    data: bytes | None = None       # a heredoc's content
    name: str = ""                  # the file name for data/URL sources
    download: Path | None = None    # a downloaded URL
    mtime: float = 0.0
    parents_rel: str = ""           # with --parents: the path kept below the destination


@dataclass
class CopyStep:
    sources: list[str]
    dest: str
    workdir: str = "/"
    fs: BuildContext | None = None      # the source root (the context, or a stage/image view)
    from_image: bool = False            # --from: keep owners, no ignore hints
    add: bool = False
    chown: str = ""
    chmod: str = ""
    parents: bool = False
    excludes: list[str] = field(default_factory=list)
    heredocs: dict[str, bytes] = field(default_factory=dict)
    checksum: str = ""
    tmp_dir: Path | None = None
    resolved: list[_Source] = field(default_factory=list)

    # -- phase 1: sources ------------------------------------------------------------------------
    def resolve(self) -> None:
        """Find every source (download URLs); NotFound for a missing one, in BuildKit's words."""
        from dockyard.build.dockerignore import IgnoreMatcher

        self._exclude = IgnoreMatcher(self.excludes) if self.excludes else None
        if self.checksum and not (self.add and all(_is_url(s) for s in self.sources)):
            raise InvalidArgument("checksum can't be specified for non-HTTP(S) sources")
        out: list[_Source] = []
        for src in self.sources:
            if src.startswith("<<") and src[2:].strip("'\"-") in self.heredocs:
                name = src[2:].strip("'\"-")
                out.append(_Source(src, data=self.heredocs[name], name=name, mtime=time.time()))
                continue
            if _is_url(src):
                if not self.add:
                    raise InvalidArgument("source can't be a URL for COPY")
                out.append(self._download(src))
                continue
            out.extend(self._local(src))
        self.resolved = out

    def _local(self, src: str) -> list[_Source]:
        cleaned = posixpath.normpath("/" + src).lstrip("/")
        marker = ""
        if self.parents and "/./" in "/" + src:
            marker = posixpath.normpath("/" + src.split("/./", 1)[0]).lstrip("/") if not src.startswith("./") else ""
        if self.fs is None or self.fs.root is None:
            raise NotFound(self._missing(src))
        matches: list[tuple[str, Entry]]
        if has_wildcards(cleaned):
            matches = [(m.rel, m) for m in self.fs.glob(cleaned)]
        else:
            e = self.fs.lookup(cleaned, follow=True)
            matches = [(cleaned, e)] if e is not None else []
        if self._exclude is not None:
            matches = [(rel, e) for rel, e in matches if not self._exclude.excluded(rel)]
        if not matches:
            raise NotFound(self._missing(src))
        out = []
        for rel, e in matches:
            kept = rel
            if marker and (rel == marker or rel.startswith(marker + "/")):
                kept = rel[len(marker):].lstrip("/")
            out.append(_Source(src, entry=e, name=posixpath.basename(rel), parents_rel=kept))
        return out

    def _missing(self, src: str) -> str:
        shown = "/" + posixpath.normpath("/" + src).lstrip("/")
        msg = f'failed to compute cache key: failed to calculate checksum of ref: "{shown}": not found'
        if self.fs is None or self.from_image or not self.fs.ignore_file:
            return msg
        rel = shown.lstrip("/")
        if self.fs.root is not None and os.path.lexists(self.fs.root / rel) and self.fs.excluded(rel):
            return f"{msg} (excluded by {self.fs.ignore_file})"
        return f"{msg} (or excluded by {self.fs.ignore_file}?)"

    def _download(self, url: str) -> _Source:
        import email.utils
        import urllib.error
        import urllib.parse
        import urllib.request

        assert self.tmp_dir is not None
        fd, name = tempfile.mkstemp(prefix="add-", dir=self.tmp_dir)
        h = hashlib.sha256()
        try:
            with os.fdopen(fd, "wb") as out:
                try:
                    resp = urllib.request.urlopen(url, timeout=120)
                except urllib.error.HTTPError as exc:
                    raise Unavailable(f"failed to load cache key: invalid response status {exc.code}") from exc
                except (urllib.error.URLError, OSError) as exc:
                    raise Unavailable(f"failed to load cache key: {url}: {getattr(exc, 'reason', exc)}") from exc
                with resp:
                    while chunk := resp.read(1 << 20):
                        h.update(chunk)
                        out.write(chunk)
                    modified = resp.headers.get("Last-Modified")
        except BaseException:
            os.unlink(name)
            raise
        got = "sha256:" + h.hexdigest()
        if self.checksum and self.checksum != got:
            os.unlink(name)
            raise InvalidArgument(f"digest mismatch {self.checksum}: {got}")
        mtime = 0.0
        if modified:
            try:
                mtime = email.utils.parsedate_to_datetime(modified).timestamp()
            except (TypeError, ValueError):
                mtime = 0.0
        base = posixpath.basename(urllib.parse.urlparse(url).path)
        return _Source(url, download=Path(name), name=base, mtime=mtime or time.time(), data=None)

    def digest(self) -> str:
        """The sources' names, types, modes, link targets and contents, for the cache key."""
        h = hashlib.sha256()
        ctx_entries = []
        for s in self.resolved:
            h.update(f"{s.shown}\0{s.parents_rel}\0".encode("utf-8", "surrogateescape"))
            if s.data is not None:
                h.update(hashlib.sha256(s.data).digest())
            elif s.download is not None:
                with open(s.download, "rb") as f:
                    h.update(hashlib.file_digest(f, "sha256").digest())
            elif s.entry is not None:
                ctx_entries.append(s.entry)
        if ctx_entries and self.fs is not None:
            h.update(self.fs.digest(ctx_entries).encode())
        if self.excludes:
            h.update("\0".join(self.excludes).encode())
        return "sha256:" + h.hexdigest()

    def cleanup(self) -> None:
        for s in self.resolved:
            if s.download is not None:
                s.download.unlink(missing_ok=True)

    # -- phase 2: copying ------------------------------------------------------------------------
    def apply(self, rootfs: Path) -> None:
        """Copy the resolved sources into the mounted root filesystem ``rootfs``."""
        from dockyard.containers.fsview import FSView

        owner = resolve_chown(rootfs, self.chown) if self.chown else None
        mode = parse_chmod(self.chmod) if self.chmod else None
        dest = self.dest
        if not dest.startswith("/"):
            dest = posixpath.join(self.workdir or "/", dest)
        dir_hint = self.dest.endswith("/") or self.dest.endswith("/.") or self.dest in (".", "")
        if len(self.sources) > 1 and not dir_hint and not self.parents:
            raise InvalidArgument("When using COPY with more than one source file, the destination must be a "
                                  "directory and end with a /")
        node = FSView(rootfs).resolve(dest, follow=True)
        node.close()
        dest_real = "/".join(node.real)
        dest_is_dir = node.st is not None and stat.S_ISDIR(node.st.st_mode)
        into_dir = dir_hint or dest_is_dir or len(self.resolved) > 1 or self.parents
        archives = []
        entries: list[tuple[tarfile.TarInfo, object]] = []
        created: set[str] = set()

        def ensure_dirs(rel: str, last_mode: int | None = None) -> None:
            """Dir entries for missing components of ``rel`` (existing ones stay as they are)."""
            parts = [p for p in rel.split("/") if p]
            for i in range(1, len(parts) + 1):
                sub = "/".join(parts[:i])
                if sub in created:
                    continue
                n = FSView(rootfs).resolve("/" + sub, follow=True)
                n.close()
                created.add(sub)
                if n.st is not None:
                    continue
                info = tarfile.TarInfo(sub)
                info.type = tarfile.DIRTYPE
                info.mode = (last_mode if i == len(parts) and last_mode is not None else 0o755)
                info.uid, info.gid = owner or (0, 0)
                info.mtime = int(time.time())
                entries.append((info, None))

        for s in self.resolved:
            if s.entry is not None and s.entry.is_dir:
                base = dest_real
                if self.parents and s.parents_rel:
                    base = f"{dest_real}/{s.parents_rel}".strip("/")
                ensure_dirs(base, mode if mode is not None else stat.S_IMODE(s.entry.st.st_mode))
                for child in self.fs.children(s.entry) if self.fs is not None else []:
                    inner = child.rel[len(s.entry.rel):].lstrip("/") if s.entry.rel else child.rel
                    if self._exclude is not None and self._exclude.excluded(inner):
                        continue
                    entries.append(self._info(child, f"{base}/{inner}".strip("/"), owner, mode))
                continue
            if s.entry is not None and self.add and not self.from_image and _is_archive(s.entry.path):
                ensure_dirs(dest_real)
                archives.append((s.entry.path, dest_real or "."))
                continue
            name = s.name
            if self.parents and s.parents_rel:
                target = f"{dest_real}/{s.parents_rel}".strip("/")
                ensure_dirs(posixpath.dirname(target))
            elif into_dir:
                if not name:
                    raise InvalidArgument(f"cannot determine a file name for {s.shown}: name the destination file")
                ensure_dirs(dest_real)
                target = f"{dest_real}/{name}".strip("/")
            else:
                ensure_dirs(posixpath.dirname(dest_real))
                target = dest_real
            if s.entry is not None:
                entries.append(self._info(s.entry, target, owner, mode))
            else:
                info = tarfile.TarInfo(target)
                info.type = tarfile.REGTYPE
                info.mode = mode if mode is not None else (0o600 if s.download is not None else 0o644)
                info.uid, info.gid = owner or (0, 0)
                info.mtime = int(s.mtime)
                info.size = len(s.data) if s.data is not None else os.path.getsize(s.download)  # type: ignore[arg-type]
                entries.append((info, s.data if s.data is not None else s.download))
        if entries:
            _extract_stream(rootfs, _tar_stream(entries))
        for path, where in archives:
            from dockyard.containers.archive import extract_to

            with open(path, "rb") as f:
                extract_to(rootfs, [], "/" + where, f, as_is=True, copy_uidgid=owner is not None,
                           user=f"{owner[0]}:{owner[1]}" if owner else None)

    def _info(self, e: Entry, name: str, owner: tuple[int, int] | None,
              mode: int | None) -> tuple[tarfile.TarInfo, object]:
        st = e.st
        info = tarfile.TarInfo(name)
        info.mode = mode if mode is not None else stat.S_IMODE(st.st_mode)
        if owner is not None:
            info.uid, info.gid = owner
        elif self.from_image:
            info.uid, info.gid = st.st_uid, st.st_gid
        info.mtime = int(st.st_mtime)
        data: object = None
        if stat.S_ISDIR(st.st_mode):
            info.type = tarfile.DIRTYPE
        elif stat.S_ISREG(st.st_mode):
            info.type = tarfile.REGTYPE
            info.size = st.st_size
            data = e.path
        elif stat.S_ISLNK(st.st_mode):
            info.type = tarfile.SYMTYPE
            info.linkname = os.readlink(e.path)
            info.mode = stat.S_IMODE(st.st_mode)
        elif stat.S_ISFIFO(st.st_mode):
            info.type = tarfile.FIFOTYPE
        else:
            raise InvalidArgument(f"cannot copy {e.rel}: unsupported file type")
        return info, data


def _is_url(s: str) -> bool:
    return s.startswith(("http://", "https://"))


def _is_archive(path: Path) -> bool:
    """A local tar archive, plain or compressed (Docker's IsArchivePath: a tar header follows)."""
    try:
        with tarfile.open(path, "r:*") as tf:
            return tf.next() is not None
    except (tarfile.TarError, OSError, EOFError):
        return False


def resolve_chown(rootfs: Path, spec: str) -> tuple[int, int]:
    """``--chown=user[:group]`` against the destination's /etc/passwd and /etc/group."""
    user, _, group = spec.partition(":")
    if not user:
        raise InvalidArgument(f"invalid chown string: {spec}")

    def table(name: str) -> list[list[str]]:
        from dockyard.containers.fsview import FSView

        node = FSView(rootfs).resolve(f"/etc/{name}", follow=True)
        try:
            if node.st is None or not stat.S_ISREG(node.st.st_mode):
                return []
            fd = os.open(node.name, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=node.dirfd)
            with open(fd, "rb") as f:
                text = f.read(4 << 20).decode(errors="replace")
        finally:
            node.close()
        return [line.split(":") for line in text.splitlines() if line and not line.startswith("#")]

    if user.isdigit():
        uid = int(user)
    else:
        for f in table("passwd"):
            if len(f) >= 3 and f[0] == user and f[2].isdigit():
                uid = int(f[2])
                break
        else:
            raise InvalidArgument(f"unable to convert uid/gid chown string to host mapping: can't find uid for "
                                  f"user {user}: no such user: {user}")
    if not group:
        return uid, uid
    if group.isdigit():
        return uid, int(group)
    for f in table("group"):
        if len(f) >= 3 and f[0] == group and f[2].isdigit():
            return uid, int(f[2])
    raise InvalidArgument(f"unable to convert uid/gid chown string to host mapping: can't find gid for "
                          f"group {group}: no such group: {group}")


def parse_chmod(value: str) -> int:
    try:
        mode = int(value, 8)
    except ValueError:
        mode = -1
    if not 0 <= mode <= 0o7777:
        raise InvalidArgument(f"invalid chmod parameter {value}. it should be octal string and between 0 and 07777")
    return mode


def _tar_stream(entries: list[tuple[tarfile.TarInfo, object]]) -> Iterator[bytes]:
    """The entries as tar bytes (file data read from their paths as they are written)."""
    class Sink:
        def __init__(self) -> None:
            self.chunks: list[bytes] = []

        def write(self, b: bytes) -> int:
            self.chunks.append(bytes(b))
            return len(b)

    sink = Sink()
    tf = tarfile.open(fileobj=sink, mode="w|", format=tarfile.PAX_FORMAT)  # type: ignore[call-overload]
    for info, data in entries:
        if isinstance(data, Path):
            fd = os.open(data, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
            with open(fd, "rb") as f:
                if os.fstat(f.fileno()).st_size != info.size:
                    info.size = os.fstat(f.fileno()).st_size  # changed since the walk: take it as it is now
                tf.addfile(info, f)
        elif isinstance(data, bytes):
            import io

            tf.addfile(info, io.BytesIO(data))
        else:
            tf.addfile(info)
        if sink.chunks:
            yield b"".join(sink.chunks)
            sink.chunks.clear()
    tf.close()
    if sink.chunks:
        yield b"".join(sink.chunks)


def _extract_stream(rootfs: Path, chunks: Iterator[bytes]) -> None:
    """Feed the tar chunks through a pipe into extract_to (which reads a stream)."""
    from dockyard.containers.archive import extract_to

    r, w = os.pipe()
    errors: list[BaseException] = []

    def feed() -> None:
        try:
            with open(w, "wb", buffering=1 << 16) as out:
                out.writelines(chunks)
        except BrokenPipeError:
            pass
        except BaseException as exc:  # noqa: BLE001 - re-raised below
            errors.append(exc)

    t = threading.Thread(target=feed, name="copy-tar", daemon=True)
    t.start()
    try:
        with open(r, "rb", buffering=1 << 16) as src:
            try:
                extract_to(rootfs, [], "/", src, as_is=True, allow_overwrite_dir_with_file=False)
            except DockyardError:
                if errors:
                    raise errors[0] from None
                raise
            while src.read(1 << 16):
                pass
    finally:
        t.join()
    if errors:
        raise errors[0]
