"""The build context: where COPY and ADD find their files, and the Dockerfile that says what to do.

``docker build PATH | URL | -`` gives the context as:

- a directory (read in place; nothing is copied);
- ``-``: standard input holds a tar archive (plain, gzip, bzip2, xz or zstd), extracted into a
  private temporary directory, or, when it is not an archive, a Dockerfile alone (then there is
  no context: COPY has nothing to copy, as with ``docker build - < Dockerfile``);
- a URL: a Git repository (``https://host/x.git``, ``git@host:x``, ``github.com/...``; ``#ref:subdir``
  fragments) cloned shallowly, or a remote tar archive or a plain Dockerfile downloaded.

The Dockerfile is ``-f`` (relative to the current directory, as the docker CLI resolves it, and
possibly outside the context; ``-f -`` reads it from stdin) or ``Dockerfile`` at the context root
(``dockerfile`` as a fall-back).  The ignore file is ``<Dockerfile>.dockerignore`` beside the
Dockerfile if there is one, else ``.dockerignore`` at the context root.  Both files are always
read by the builder even when the ignore file excludes them; COPY and ADD do not see excluded
paths at all (they "were never sent"), so copying one fails with ``not found``.

Temporary directories live under the ``work_dir`` the caller gives (``<dataroot>/build/tmp``) and
go with :meth:`BuildContext.close`.  Tar extraction never escapes its directory (see
:func:`dockyard.containers.archive.local_extract`): names climbing out, absolute symlinks used as
parents, device nodes and hard links to outside files are refused.

Hashing (:meth:`BuildContext.digest`): the build cache keys a COPY/ADD on the names, types, modes,
link targets and contents of what it copies.  For a directory context the content digests are kept
between builds in ``<work_dir>/../hashes/<hash of the path>.json``, keyed by each file's size,
mtime, ctime and inode: an unchanged file is not read again (ctime changes with any write).

Errors: NotFound / InvalidArgument in Docker's words ("unable to prepare context: path "x" not
found", "failed to read dockerfile: open Dockerfile: no such file or directory"); DataLoss for a
corrupt archive; Unavailable when a URL cannot be fetched.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import posixpath
import re
import shutil
import stat
import subprocess
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import BinaryIO

from dockyard.errors import InvalidArgument, NotFound, Unavailable

DEFAULT_DOCKERFILE = "Dockerfile"
MAX_DOCKERFILE = 16 << 20
_ARCHIVE_MAGIC = (b"\x1f\x8b", b"BZh", b"\xfd7zXZ\x00", b"\x28\xb5\x2f\xfd")


@dataclass
class Entry:
    """A context path as COPY sees it: ``rel`` is "/"-separated, relative to the context root."""

    rel: str
    path: Path
    st: os.stat_result

    @property
    def is_dir(self) -> bool:
        return stat.S_ISDIR(self.st.st_mode)


@dataclass
class BuildContext:
    """An open build context; close() removes what was extracted or cloned for it."""

    root: Path | None                   # None: a Dockerfile alone, no files
    dockerfile: str                     # the Dockerfile's text
    dockerfile_name: str                # as messages show it ("Dockerfile", "Dockerfile.multi")
    ignore_patterns: list[str] = field(default_factory=list)
    ignore_file: str = ""               # which file the patterns came from ("" = none)
    temp: Path | None = None
    hash_file: Path | None = None       # where content digests of a directory context are kept
    _matcher: object = None
    _digests: dict[str, str] = field(default_factory=dict)
    _known: dict[str, list] | None = None
    _dirty: bool = False

    def __post_init__(self) -> None:
        from dockyard.build.dockerignore import IgnoreMatcher

        self._matcher = IgnoreMatcher(self.ignore_patterns)

    def close(self) -> None:
        if self.temp is not None:
            shutil.rmtree(self.temp, ignore_errors=True)
            self.temp = None

    def __enter__(self) -> BuildContext:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- what is in the context ------------------------------------------------------------------
    def excluded(self, rel: str, is_dir: bool = False) -> bool:
        return bool(rel) and self._matcher.excluded(rel, is_dir)  # type: ignore[attr-defined]

    def _descend(self, rel: str) -> bool:
        return self._matcher.may_contain_exceptions(rel)  # type: ignore[attr-defined]

    def lookup(self, rel: str, *, follow: bool = True) -> Entry | None:
        """The entry at ``rel`` (symlinks resolved inside the context, chroot-style), or None when
        it does not exist or is excluded (an excluded directory with exceptions inside exists)."""
        if self.root is None:
            return None
        from dockyard.containers.fsview import FSView

        node = FSView(self.root, host=True).resolve("/" + rel, follow=follow)
        try:
            if node.st is None:
                return None
            real = "/".join(node.real)
            st = node.st
        finally:
            node.close()
        is_dir = stat.S_ISDIR(st.st_mode)
        if real and self.excluded(real, is_dir) and not (is_dir and self._descend(real)):
            return None
        return Entry(real, self.root / real if real else self.root, st)

    def children(self, entry: Entry) -> list[Entry]:
        """Everything below a directory entry, parents before children, in byte order, with the
        ignore rules applied (an excluded directory appears only with included entries inside)."""
        out: list[Entry] = []
        self._walk(entry.rel, entry.path, out)
        return out

    def _walk(self, rel: str, path: Path, out: list[Entry]) -> None:
        try:
            names = sorted(os.listdir(path), key=os.fsencode)
        except OSError as exc:
            raise InvalidArgument(f"error from sender: open {rel or '.'}: {(exc.strerror or str(exc)).lower()}") \
                from exc
        for name in names:
            r = f"{rel}/{name}" if rel else name
            p = path / name
            st = os.lstat(p)
            is_dir = stat.S_ISDIR(st.st_mode)
            if self.excluded(r, is_dir):
                if is_dir and self._descend(r):
                    inner: list[Entry] = []
                    self._walk(r, p, inner)
                    if inner:
                        out.append(Entry(r, p, st))
                        out.extend(inner)
                continue
            out.append(Entry(r, p, st))
            if is_dir:
                self._walk(r, p, out)

    def glob(self, pattern: str) -> list[Entry]:
        """The entries a COPY source with wildcards names (Go's filepath.Match per component:
        ``*`` and ``?`` never match "/"), in byte order; excluded paths never match."""
        if self.root is None:
            return []
        parts = [p for p in pattern.split("/") if p not in ("", ".")]
        found: list[Entry] = []

        def step(rel: str, path: Path, i: int) -> None:
            if i == len(parts):
                e = self.lookup(rel, follow=True) if rel else None
                if e is not None:
                    found.append(Entry(rel, e.path, e.st))
                return
            part = parts[i]
            if not has_wildcards(part):
                nxt = f"{rel}/{part}" if rel else part
                if os.path.lexists(path / part):
                    step(nxt, path / part, i + 1)
                return
            regex = _component_regex(part)
            try:
                names = sorted(os.listdir(path), key=os.fsencode)
            except OSError:
                return
            for name in names:
                if regex.fullmatch(name):
                    nxt = f"{rel}/{name}" if rel else name
                    p = path / name
                    if i + 1 < len(parts) and not p.is_dir():
                        continue
                    if self.excluded(nxt, p.is_dir()) and not (p.is_dir() and self._descend(nxt)):
                        continue
                    step(nxt, p, i + 1)

        step("", self.root, 0)
        return found

    # -- hashing ---------------------------------------------------------------------------------
    def digest(self, entries: list[Entry]) -> str:
        """One digest over names, types, modes, link targets and contents of ``entries`` and,
        for directories, everything below them (what COPY would copy)."""
        h = hashlib.sha256()
        for e in entries:
            h.update(self._entry_digest(e).encode())
            if e.is_dir:
                for c in self.children(e):
                    h.update(self._entry_digest(c).encode())
        return "sha256:" + h.hexdigest()

    def _entry_digest(self, e: Entry) -> str:
        st = e.st
        mode = st.st_mode
        key = f"{e.rel}\0{stat.S_IFMT(mode)}\0{stat.S_IMODE(mode):o}"
        if stat.S_ISREG(mode):
            cached = self._digests.get(e.rel)
            if cached is None:
                cached = self._content_digest(e)
                self._digests[e.rel] = cached
            key += f"\0{st.st_size}\0{cached}"
        elif stat.S_ISLNK(mode):
            key += "\0" + os.readlink(e.path)
        return hashlib.sha256(key.encode("utf-8", "surrogateescape")).hexdigest() + "\n"


    def _content_digest(self, e: Entry) -> str:
        """A file's SHA-256, read again only when its size, mtime, ctime or inode changed since an
        earlier build of the same directory (the digests are kept in ``hash_file``)."""
        st = e.st
        stamp = [st.st_size, st.st_mtime_ns, st.st_ctime_ns, st.st_ino]
        if self._known is None:
            self._known = {}
            if self.hash_file is not None:
                try:
                    self._known = json.loads(self.hash_file.read_text())
                except (OSError, ValueError):
                    self._known = {}
        seen = self._known.get(e.rel)
        if seen is not None and seen[:4] == stamp:
            return seen[4]
        with open(e.path, "rb") as f:
            digest = hashlib.file_digest(f, "sha256").hexdigest()
        self._known[e.rel] = [*stamp, digest]
        self._dirty = True
        return digest

    def save_hashes(self) -> None:
        """Keep the content digests computed by this build for the next one (best effort)."""
        if not self._dirty or self.hash_file is None or self._known is None:
            return
        try:
            self.hash_file.parent.mkdir(parents=True, exist_ok=True)
            tmp = self.hash_file.with_suffix(f".{os.getpid()}.tmp")
            tmp.write_text(json.dumps(self._known, separators=(",", ":")))
            os.replace(tmp, self.hash_file)
        except OSError:
            pass
        self._dirty = False


def has_wildcards(s: str) -> bool:
    return any(c in s for c in "*?[")


def _component_regex(pattern: str) -> re.Pattern[str]:
    """Go's path.Match for one path component (``*``, ``?``, ``[a-z]``, ``[^x]``, ``\\`` escapes)."""
    out = ""
    i = 0
    while i < len(pattern):
        c = pattern[i]
        if c == "*":
            out += "[^/]*"
        elif c == "?":
            out += "[^/]"
        elif c == "\\" and i + 1 < len(pattern):
            i += 1
            out += re.escape(pattern[i])
        elif c == "[":
            j = pattern.find("]", i + 1)
            if j < 0:
                raise InvalidArgument(f"syntax error in pattern: {pattern}")
            body = pattern[i + 1:j]
            if body.startswith(("^", "!")):
                body = "^" + body[1:].replace("\\", "\\\\")
            else:
                body = body.replace("\\", "\\\\").replace("^", "\\^")
            out += f"[{body}]"
            i = j
        else:
            out += re.escape(c)
        i += 1
    return re.compile(out, re.DOTALL)


# -- opening a context ---------------------------------------------------------------------------

def open_context(source: str, dockerfile: str = "", *, stdin: BinaryIO | None = None,
                 work_dir: Path, cwd: Path | None = None) -> BuildContext:
    """Open the context ``source`` (a directory, ``-`` or a URL) with Dockerfile ``dockerfile``
    ("" = the default; ``-`` = stdin).  The caller closes the result."""
    cwd = cwd or Path.cwd()
    if source == "-" and dockerfile == "-":
        raise InvalidArgument("invalid argument: can't use stdin for both build context and dockerfile")
    work_dir.mkdir(parents=True, exist_ok=True)
    if source == "-":
        data = stdin if stdin is not None else io.BytesIO()
        head, stream = _peek(data, 512)
        if not _is_archive(head):
            text = (head + stream.read(MAX_DOCKERFILE)).decode("utf-8", "replace")
            if dockerfile and dockerfile != "-":
                raise InvalidArgument("unable to prepare context: the Dockerfile (" + dockerfile + ") cannot be "
                                      "given with a context that is a Dockerfile read from stdin")
            return BuildContext(None, text, DEFAULT_DOCKERFILE)
        temp = Path(tempfile.mkdtemp(prefix="context-", dir=work_dir))
        try:
            _extract(stream, temp / "ctx")
            return _finish(temp / "ctx", dockerfile, stdin, cwd, temp, in_context_only=True)
        except BaseException:
            shutil.rmtree(temp, ignore_errors=True)
            raise
    if is_git_url(source):
        temp = Path(tempfile.mkdtemp(prefix="context-", dir=work_dir))
        try:
            root = _clone(source, temp)
            return _finish(root, dockerfile, stdin, cwd, temp, in_context_only=True)
        except BaseException:
            shutil.rmtree(temp, ignore_errors=True)
            raise
    if source.startswith(("http://", "https://")):
        return _remote(source, dockerfile, stdin, cwd, work_dir)
    path = Path(source) if os.path.isabs(source) else cwd / source
    if not path.exists():
        raise NotFound(f'unable to prepare context: path "{source}" not found')
    if not path.is_dir():
        raise InvalidArgument(f"unable to prepare context: context must be a directory: {path}")
    ctx = _finish(path.resolve(), dockerfile, stdin, cwd, None, in_context_only=False)
    key = hashlib.sha256(str(ctx.root).encode("utf-8", "surrogateescape")).hexdigest()[:32]
    ctx.hash_file = work_dir.parent / "hashes" / f"{key}.json"
    return ctx


def _finish(root: Path, dockerfile: str, stdin: BinaryIO | None, cwd: Path, temp: Path | None, *,
            in_context_only: bool) -> BuildContext:
    """Find and read the Dockerfile and the ignore file for the context at ``root``."""
    if dockerfile == "-":
        text = (stdin.read(MAX_DOCKERFILE) if stdin is not None else b"").decode("utf-8", "replace")
        ignore_dir, name = None, DEFAULT_DOCKERFILE
    else:
        if not dockerfile:
            path = root / DEFAULT_DOCKERFILE
            if not path.exists() and (root / "dockerfile").exists():
                path = root / "dockerfile"
            name = path.name
        elif in_context_only:  # a remote context: -f names a file inside it
            name = dockerfile
            path = root / dockerfile.lstrip("/")
        else:
            name = dockerfile
            path = Path(dockerfile) if os.path.isabs(dockerfile) else cwd / dockerfile
        try:
            if path.is_dir():
                raise InvalidArgument(f"failed to read dockerfile: read {posixpath.basename(name)}: is a directory")
            with open(path, "rb") as f:
                text = f.read(MAX_DOCKERFILE).decode("utf-8", "replace")
        except FileNotFoundError:
            raise NotFound(f"failed to read dockerfile: open {posixpath.basename(name)}: "
                           "no such file or directory") from None
        except PermissionError:
            raise InvalidArgument(f"failed to read dockerfile: open {posixpath.basename(name)}: "
                                  "permission denied") from None
        ignore_dir = path.parent
        name = posixpath.basename(name) if not dockerfile else name
    patterns, ignore_file = _ignore_patterns(root, ignore_dir, name)
    return BuildContext(root, text, name, patterns, ignore_file, temp)


def _ignore_patterns(root: Path, dockerfile_dir: Path | None, dockerfile_name: str) -> tuple[list[str], str]:
    from dockyard.build.dockerignore import read_ignore_patterns

    candidates = []
    if dockerfile_dir is not None:
        candidates.append(dockerfile_dir / (posixpath.basename(dockerfile_name) + ".dockerignore"))
    candidates.append(root / ".dockerignore")
    for c in candidates:
        try:
            text = c.read_text(errors="replace")
        except FileNotFoundError:
            continue
        except OSError as exc:
            raise InvalidArgument(f"failed to read {c.name}: {exc.strerror}") from exc
        return read_ignore_patterns(text), c.name
    return [], ""


def _peek(stream: BinaryIO, n: int) -> tuple[bytes, BinaryIO]:
    """The first ``n`` bytes (fewer at EOF) and a stream that still yields everything."""
    head = b""
    while len(head) < n:
        chunk = stream.read(n - len(head))
        if not chunk:
            break
        head += chunk
    return head, _Chain(head, stream)  # type: ignore[return-value]


class _Chain(io.RawIOBase):
    def __init__(self, head: bytes, rest: BinaryIO) -> None:
        self.head, self.rest = head, rest

    def readable(self) -> bool:
        return True

    def readinto(self, b) -> int:  # type: ignore[override]
        if self.head:
            n = min(len(b), len(self.head))
            b[:n] = self.head[:n]
            self.head = self.head[n:]
            return n
        data = self.rest.read(len(b))
        b[:len(data)] = data
        return len(data)


def _is_archive(head: bytes) -> bool:
    if any(head.startswith(m) for m in _ARCHIVE_MAGIC):
        return True
    return len(head) >= 262 and head[257:262] == b"ustar"


def _extract(stream: BinaryIO, dest: Path) -> None:
    from dockyard.containers.archive import local_extract

    dest.mkdir(mode=0o700)
    local_extract(dest, io.BufferedReader(stream, 1 << 16) if isinstance(stream, io.RawIOBase) else stream)
    os.chmod(dest, 0o755)


# -- remote contexts -----------------------------------------------------------------------------

def is_git_url(source: str) -> bool:
    """docker/cli's urlutil.IsGitURL: git@, git://, github.com/ and http(s) URLs ending in .git."""
    if source.startswith(("git@", "git://", "github.com/")):
        return True
    if source.startswith(("http://", "https://")):
        path = source.split("#", 1)[0]
        return path.endswith(".git")
    return False


def _clone(source: str, temp: Path) -> Path:
    url, _, fragment = source.partition("#")
    ref, _, subdir = fragment.partition(":")
    if url.startswith("github.com/"):
        url = "https://" + url
    dest = temp / "repo"
    git = shutil.which("git")
    if git is None:
        raise Unavailable("unable to prepare context: git is not installed")
    args = [git, "clone", "--quiet", "--recurse-submodules", "--depth", "1"]
    if ref:
        args += ["--branch", ref]
    p = subprocess.run([*args, "--", url, str(dest)], capture_output=True, text=True, timeout=600,
                       env={**os.environ, "GIT_TERMINAL_PROMPT": "0"})
    if p.returncode != 0:
        raise Unavailable(f"unable to prepare context: unable to 'git clone' to temporary context directory: "
                          f"{p.stderr.strip()}")
    shutil.rmtree(dest / ".git", ignore_errors=True)
    root = (dest / subdir).resolve() if subdir else dest
    if not str(root).startswith(str(dest)) or not root.is_dir():
        raise InvalidArgument(f"unable to prepare context: subdirectory {subdir!r} not found in {url}")
    return root


def _remote(url: str, dockerfile: str, stdin: BinaryIO | None, cwd: Path, work_dir: Path) -> BuildContext:
    """A remote tar archive (the context) or a plain text file (the Dockerfile)."""
    import urllib.error
    import urllib.request

    temp = Path(tempfile.mkdtemp(prefix="context-", dir=work_dir))
    try:
        try:
            resp = urllib.request.urlopen(url, timeout=60)
        except (urllib.error.URLError, OSError) as exc:
            raise Unavailable(f"unable to prepare context: unable to download remote context {url}: {exc}") from exc
        with resp:
            head, stream = _peek(resp, 512)
            if not _is_archive(head):
                text = (head + stream.read(MAX_DOCKERFILE)).decode("utf-8", "replace")
                shutil.rmtree(temp, ignore_errors=True)
                return BuildContext(None, text, DEFAULT_DOCKERFILE)
            _extract(stream, temp / "ctx")
        return _finish(temp / "ctx", dockerfile, stdin, cwd, temp, in_context_only=True)
    except BaseException:
        shutil.rmtree(temp, ignore_errors=True)
        raise


def iter_entries(ctx: BuildContext) -> Iterator[Entry]:
    """Everything in the context after the ignore rules (what ``COPY . /dst`` copies)."""
    if ctx.root is None:
        return iter(())
    root = Entry("", ctx.root, os.stat(ctx.root))
    return iter(ctx.children(root))


__all__ = [
    "DEFAULT_DOCKERFILE",
    "BuildContext",
    "Entry",
    "has_wildcards",
    "is_git_url",
    "iter_entries",
    "open_context",
]
