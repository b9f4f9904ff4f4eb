"""Layer compression: detect it by magic bytes, decompress while streaming, compress fast.

Layer blobs arrive gzip-compressed (``application/vnd.oci.image.layer.v1.tar+gzip``, Docker's
``...rootfs.diff.tar.gzip``), zstd-compressed (``...tar+zstd``) or as plain tars (``docker save``
of old images, ``docker import``).  The media type is not always trustworthy (``docker load`` tars
carry no media types at all), so the bytes decide: the first four bytes are compared with the
gzip and zstd magic numbers, anything else is treated as an uncompressed tar and left to the tar
reader to accept or refuse.

Nothing here needs a seekable input: the magic bytes are peeked when the file object can peek or
seek, and otherwise read and replayed in front of the rest of the stream, so a network response or
a pipe works as well as a file.

Speed: gzip goes through ``isal.igzip`` (Intel ISA-L, several times faster than zlib in both
directions), zstd through the ``zstandard`` stream reader; both are dependencies of dockyard.  They
are imported when a stream is first opened, not with this module: commands that never touch a layer
(``run``, ``ps``, ...) import the image and snapshot modules and should not pay for them.

Who closes what: the reader returned by :func:`open_layer_reader` never closes the file object it
wraps, and the writer returned by :func:`gzip_writer` writes the gzip trailer when it is closed but
leaves the underlying file object open.  The caller owns (and closes) the file objects it passes in.
"""

from __future__ import annotations

import io
from typing import BinaryIO

GZIP_MAGIC = b"\x1f\x8b"
ZSTD_MAGIC = b"\x28\xb5\x2f\xfd"

#: Compression names as returned by :func:`detect_compression` and :func:`open_layer_reader`.
GZIP = "gzip"
ZSTD = "zstd"
UNCOMPRESSED = "none"

_corrupt_stream_errors: tuple[type[BaseException], ...] | None = None


def corrupt_stream_errors() -> tuple[type[BaseException], ...]:
    """What a decompressing reader raises on corrupt or truncated input (gzip: BadGzipFile for bad
    headers/CRC, EOFError for a cut stream, isal's error for bad deflate data; zstd: ZstdError).
    Also available as the module attribute ``CORRUPT_STREAM_ERRORS``."""
    global _corrupt_stream_errors
    if _corrupt_stream_errors is None:
        import zstandard
        from isal import igzip, isal_zlib

        _corrupt_stream_errors = (EOFError, igzip.BadGzipFile, isal_zlib.error, zstandard.ZstdError)
    return _corrupt_stream_errors


def __getattr__(name: str) -> object:
    if name == "CORRUPT_STREAM_ERRORS":  # computed on first use: it needs the decompressors
        return corrupt_stream_errors()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


#: Read size used towards the compressed source; large reads keep the per-call overhead tiny.
READ_SIZE = 1 << 20

#: isal offers levels 0-3; level 1 compresses about like zlib's level 1-2 at several times its speed,
#: which is the right trade for layers we produce locally (commit, build, save).
DEFAULT_GZIP_LEVEL = 1


def detect_compression(head: bytes) -> str:
    """Name the compression of a stream from its first bytes (at least 4 for zstd).

    Returns :data:`GZIP`, :data:`ZSTD` or :data:`UNCOMPRESSED`; never raises: an unknown format is
    "uncompressed" and the tar reader decides whether it is a tar.
    """
    if head.startswith(GZIP_MAGIC):
        return GZIP
    if head.startswith(ZSTD_MAGIC):
        return ZSTD
    return UNCOMPRESSED


class _PrefixedReader(io.RawIOBase):
    """A raw reader that replays ``prefix`` and then reads ``source``; ``close()`` leaves ``source`` open.

    Used to give back the magic bytes consumed from a stream that can neither peek nor seek, and
    (with an empty prefix) to hand out a plain stream without transferring its ownership.
    """

    def __init__(self, prefix: bytes, source: BinaryIO) -> None:
        super().__init__()
        self._prefix = memoryview(prefix)
        self._source = source

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: bytearray | memoryview) -> int:  # type: ignore[override]
        view = memoryview(buffer).cast("B")
        if self._prefix:
            n = min(len(view), len(self._prefix))
            view[:n] = self._prefix[:n]
            self._prefix = self._prefix[n:]
            return n
        readinto = getattr(self._source, "readinto", None)
        if readinto is not None:
            got = readinto(view)
            return 0 if got is None else got
        data = self._source.read(len(view))
        view[: len(data)] = data
        return len(data)

    def read(self, size: int = -1) -> bytes:
        # Fast path: avoid RawIOBase's readinto round trip for the common big reads.
        if self._prefix:
            return super().read(size)
        if size is None or size < 0:
            return self._source.read()
        return self._source.read(size)


def _peek_head(fileobj: BinaryIO) -> tuple[bytes, BinaryIO]:
    """Return (first bytes, stream positioned so that nothing is lost)."""
    peek = getattr(fileobj, "peek", None)
    if peek is not None:
        try:
            head = peek(4)[:4]
        except (OSError, ValueError):
            head = None
        if head is not None and (len(head) >= 4 or not head):
            return head, _PrefixedReader(b"", fileobj)
    seekable = False
    try:
        seekable = fileobj.seekable()
    except (AttributeError, OSError, ValueError):
        seekable = False
    head = b""
    while len(head) < 4:
        chunk = fileobj.read(4 - len(head))
        if not chunk:
            break
        head += chunk
    if seekable:
        fileobj.seek(-len(head), io.SEEK_CUR)
        return head, _PrefixedReader(b"", fileobj)
    return head, _PrefixedReader(head, fileobj)


def open_layer_reader(fileobj: BinaryIO) -> tuple[BinaryIO, str]:
    """Open a decompressing reader over a layer blob; returns ``(reader, compression)``.

    ``reader.read(n)`` yields the uncompressed tar bytes.  Corrupt compressed data makes ``read``
    raise one of :data:`CORRUPT_STREAM_ERRORS` (the decompressors' own exception types);
    :func:`dockyard.snapshots.tarfs.apply_layer` translates them into
    :class:`~dockyard.errors.DataLoss`.  Note that a zstd stream cut at a block boundary reads as
    a shorter stream rather than an error (python-zstandard does not report unfinished frames):
    the tar reader catches that as a missing end-of-archive marker, and callers that know the
    expected diff ID compare it anyway.  Closing the reader releases the decompressor but never
    closes ``fileobj``.
    """
    head, stream = _peek_head(fileobj)
    kind = detect_compression(head)
    if kind == GZIP:
        from isal import igzip

        reader: BinaryIO = igzip.IGzipFile(fileobj=stream, mode="rb")  # type: ignore[assignment]
    elif kind == ZSTD:
        import zstandard

        # read_across_frames: zstd blobs may consist of several frames (parallel/streaming writers).
        reader = zstandard.ZstdDecompressor().stream_reader(  # type: ignore[assignment]
            stream, read_size=READ_SIZE, read_across_frames=True, closefd=False
        )
    else:
        reader = stream  # type: ignore[assignment]
    return reader, kind


def gzip_writer(fileobj: BinaryIO, level: int = DEFAULT_GZIP_LEVEL) -> BinaryIO:
    """Return a writable file object that gzip-compresses into ``fileobj`` with isal.

    The output is deterministic (mtime 0, no file name in the header), so compressing the same tar
    twice gives the same blob digest.  The caller must ``close()`` the writer to flush the gzip
    trailer; that does not close ``fileobj``.  ``level`` is isal's 0-3 (ValueError otherwise).
    """
    if not 0 <= level <= 3:
        raise ValueError(f"isal gzip level must be 0-3, not {level}")
    from isal import igzip

    return igzip.IGzipFile(  # type: ignore[return-value]
        filename="", mode="wb", compresslevel=level, fileobj=fileobj, mtime=0
    )
