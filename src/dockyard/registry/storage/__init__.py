"""Registry storage: a plain path store (``RegistryStorage``); OCI meaning lives in ``layout.py``.

Paths are relative, "/"-separated, never absolute and never containing "..": the layout builds
them from validated repository names and digests, and every driver must refuse anything else
(InvalidArgument) so that no path can leave the store.

Lifecycle of a write: ``w = await storage.writer(path)``; ``await w.write(b)`` ...; then
``await w.commit()`` makes the file visible atomically at ``path`` (readers never see a partial
file), or ``await w.cancel()`` discards it.  ``writer(path, append=True)`` resumes an upload file
(uploads are written under ``_uploads/`` and moved into place with ``move`` once verified).

Errors: NotFound for a missing path; Unavailable when the backend cannot be reached.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Protocol


@dataclass(frozen=True)
class FileInfo:
    path: str
    size: int
    modified: float           # seconds since the epoch
    is_dir: bool = False


class FileWriter(Protocol):
    size: int                 # bytes written so far (including what an appended-to file held)

    async def write(self, data: bytes) -> None: ...
    async def commit(self) -> None: ...
    async def cancel(self) -> None: ...


class RegistryStorage(Protocol):
    name: str                 # "filesystem", "azureblob"

    def reader(self, path: str, offset: int = 0, length: int | None = None) -> AsyncIterator[bytes]: ...
    async def read_bytes(self, path: str) -> bytes: ...
    async def writer(self, path: str, append: bool = False) -> FileWriter: ...
    async def put_bytes(self, path: str, data: bytes) -> None: ...   # atomic
    async def stat(self, path: str) -> FileInfo: ...
    async def list(self, path: str) -> list[str]: ...                 # direct children names; NotFound if none
    async def move(self, src: str, dst: str) -> None: ...
    async def delete(self, path: str) -> None: ...                    # a file or a whole prefix
    async def close(self) -> None: ...
