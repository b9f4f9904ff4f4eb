"""Content-addressed blob store (containerd's content store, trimmed to what dockyard needs).

On-disk layout under the store root (``<dataroot>/content``)::

    blobs/sha256/<hex>          committed blobs, named by the sha256 of their bytes; never modified
    ingest/<ref-hash>/data      an upload in progress (resumable by ``ref``); invisible to readers
    ingest/<ref-hash>/ref       the caller's ref, for listing and cleanup

A write is invisible until :meth:`Writer.commit` has flushed and fsynced the data, checked its size
and digest against what the caller expected, and renamed it into ``blobs/``.  The rename is atomic,
so a reader either sees the whole blob or nothing; a crash leaves at most a stale ingest directory,
which :meth:`ContentStore.clean_ingests` removes.  Two processes committing the same digest race
harmlessly: the bytes are identical and the second rename replaces the first.

Errors: :class:`~dockyard.errors.NotFound` for a missing blob, :class:`~dockyard.errors.DataLoss`
when the bytes do not match the expected digest or size (the ingest is aborted, nothing is stored).
"""

from __future__ import annotations

import os
import shutil
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

from dockyard.errors import DataLoss, InvalidArgument, NotFound
from dockyard.oci.digest import sha256_digest, validate_digest

# hashlib is imported where a digest is computed: loading OpenSSL would cost every command that
# only reads the store (`dockyard run` among them) a few milliseconds.

CHUNK = 1 << 20


@dataclass(frozen=True)
class BlobInfo:
    """A committed blob: its digest, size and when it was committed."""

    digest: str
    size: int
    committed_at: float


class Writer:
    """An open ingest.  Use as a context manager: leaving the block without ``commit`` aborts."""

    def __init__(self, store: ContentStore, directory: Path, resumable: bool) -> None:
        self._store = store
        self._dir = directory
        self._resumable = resumable
        import hashlib
        self._hash = hashlib.sha256()
        data = directory / "data"
        self.offset = 0
        if data.exists() and resumable:
            # Resume: re-hash what is already there so the final digest covers every byte.
            with open(data, "rb") as f:
                while chunk := f.read(CHUNK):
                    self._hash.update(chunk)
                    self.offset += len(chunk)
        self._file: BinaryIO | None = open(data, "ab" if resumable else "wb")
        self.digest: str | None = None

    @property
    def size(self) -> int:
        return self.offset

    def write(self, data: bytes) -> int:
        assert self._file is not None, "writer is closed"
        self._file.write(data)
        self._hash.update(data)
        self.offset += len(data)
        return len(data)

    def copy_from(self, src: BinaryIO, limit: int | None = None) -> int:
        """Copy ``src`` (to EOF, or ``limit`` bytes) into the ingest; returns bytes copied."""
        n = 0
        while limit is None or n < limit:
            chunk = src.read(CHUNK if limit is None else min(CHUNK, limit - n))
            if not chunk:
                break
            self.write(chunk)
            n += len(chunk)
        return n

    def current_digest(self) -> str:
        return "sha256:" + self._hash.hexdigest()

    def commit(self, expected: str | None = None, size: int | None = None) -> str:
        """Make the blob visible under its digest; DataLoss (and abort) when it does not match."""
        assert self._file is not None, "writer is closed"
        self._file.flush()
        os.fsync(self._file.fileno())
        self._file.close()
        self._file = None
        actual = self.current_digest()
        if expected is not None and expected != actual:
            self.abort()
            raise DataLoss(f"digest mismatch: expected {expected}, got {actual}")
        if size is not None and size != self.offset:
            self.abort()
            raise DataLoss(f"size mismatch for {actual}: expected {size} bytes, got {self.offset}")
        target = self._store.blob_path(actual)
        target.parent.mkdir(parents=True, exist_ok=True)
        os.replace(self._dir / "data", target)
        _fsync_dir(target.parent)
        shutil.rmtree(self._dir, ignore_errors=True)
        self.digest = actual
        return actual

    def abort(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None
        shutil.rmtree(self._dir, ignore_errors=True)

    def close(self) -> None:
        """Stop writing but keep a resumable ingest for a later writer with the same ref."""
        if self._file is not None:
            self._file.flush()
            self._file.close()
            self._file = None
        if not self._resumable:
            shutil.rmtree(self._dir, ignore_errors=True)

    def __enter__(self) -> Writer:
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if self.digest is None:
            self.close() if (self._resumable and exc_type is not None) else self.abort()


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


class ContentStore:
    """Blobs by digest.  Safe for many processes at once (atomic renames, no shared mutable files)."""

    def __init__(self, root: Path) -> None:
        self.root = Path(root)
        self.blobs = self.root / "blobs" / "sha256"
        self.ingest_dir = self.root / "ingest"
        self.blobs.mkdir(parents=True, exist_ok=True)
        self.ingest_dir.mkdir(parents=True, exist_ok=True)

    # -- reading -------------------------------------------------------------------------------
    def blob_path(self, digest: str) -> Path:
        digest = validate_digest(digest)
        algo, hexpart = digest.split(":", 1)
        if algo != "sha256":
            raise InvalidArgument(f"unsupported digest algorithm: {algo}")
        return self.blobs / hexpart

    def path(self, digest: str) -> Path:
        p = self.blob_path(digest)
        if not p.exists():
            raise NotFound(f"content {digest}: not found")
        return p

    def exists(self, digest: str) -> bool:
        return self.blob_path(digest).exists()

    def info(self, digest: str) -> BlobInfo:
        st = self.path(digest).stat()
        return BlobInfo(digest, st.st_size, st.st_mtime)

    def open(self, digest: str) -> BinaryIO:
        try:
            return open(self.blob_path(digest), "rb")
        except FileNotFoundError as exc:
            raise NotFound(f"content {digest}: not found") from exc

    def read_bytes(self, digest: str) -> bytes:
        with self.open(digest) as f:
            return f.read()

    def walk(self) -> Iterator[BlobInfo]:
        for entry in os.scandir(self.blobs):
            st = entry.stat()
            yield BlobInfo("sha256:" + entry.name, st.st_size, st.st_mtime)

    # -- writing -------------------------------------------------------------------------------
    def writer(self, ref: str | None = None) -> Writer:
        """Open an ingest.  With ``ref`` the ingest is resumable: a later writer with the same ref
        continues where this one stopped (``writer.offset`` says where)."""
        if ref is None:
            d = self.ingest_dir / uuid.uuid4().hex
            d.mkdir(parents=True)
            return Writer(self, d, resumable=False)
        import hashlib
        d = self.ingest_dir / hashlib.sha256(ref.encode()).hexdigest()[:32]
        d.mkdir(parents=True, exist_ok=True)
        (d / "ref").write_text(ref)
        return Writer(self, d, resumable=True)

    def put_bytes(self, data: bytes, expected: str | None = None) -> str:
        digest = sha256_digest(data)
        if expected is not None and expected != digest:
            raise DataLoss(f"digest mismatch: expected {expected}, got {digest}")
        if self.exists(digest):
            return digest
        with self.writer() as w:
            w.write(data)
            return w.commit(digest, len(data))

    def adopt(self, path: Path, digest: str, size: int) -> None:
        """Move an already-hashed file (same filesystem, e.g. an ingest temp) into the store."""
        target = self.blob_path(digest)
        if target.exists():
            os.unlink(path)
            return
        with open(path, "rb+") as f:
            os.fsync(f.fileno())
        if os.stat(path).st_size != size:
            raise DataLoss(f"size mismatch for {digest}")
        os.replace(path, target)

    def temp_dir(self) -> Path:
        """A fresh scratch directory inside the ingest area (same filesystem as the blobs)."""
        d = self.ingest_dir / ("tmp-" + uuid.uuid4().hex)
        d.mkdir(parents=True)
        return d

    def delete(self, digest: str) -> None:
        try:
            os.unlink(self.blob_path(digest))
        except FileNotFoundError as exc:
            raise NotFound(f"content {digest}: not found") from exc

    def clean_ingests(self, older_than: float = 24 * 3600) -> int:
        """Remove ingests untouched for ``older_than`` seconds (left by killed processes)."""
        removed = 0
        cutoff = time.time() - older_than
        for entry in os.scandir(self.ingest_dir):
            try:
                if entry.stat().st_mtime < cutoff:
                    shutil.rmtree(entry.path, ignore_errors=True)
                    removed += 1
            except FileNotFoundError:
                continue
        return removed
