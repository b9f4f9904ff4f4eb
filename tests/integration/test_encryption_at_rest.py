"""Encryption at rest: EncryptedStorage over a FilesystemStorage in a temp dir.

The headline proof: a layer-like blob and a manifest pushed the way the registry pushes them (chunked
upload into ``_uploads/``, then a move into ``blobs/``) leave no plaintext run anywhere under the
storage root — not in the blobs, not in the upload files of an unfinished push, not in temp files.
Then key rotation: every data key re-wrapped, the data files byte-for-byte unchanged, and the files
read back with only the new master key.
"""

from __future__ import annotations

import asyncio
import base64
import gzip
import hashlib
import io
import json
import os
import stat
import tarfile
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from dockyard.errors import DataLoss, FailedPrecondition, InvalidArgument, NotFound
from dockyard.registry.storage.encryption import (
    CHUNK,
    HEADER_SIZE,
    KEY_SUFFIX,
    RECORD,
    EncryptedStorage,
    KeyRing,
    MasterKey,
    generate_key_file,
)
from dockyard.registry.storage.filesystem import FilesystemStorage

WINDOW = 16     # see plaintext_runs_on_disk: any 32-byte run contains an aligned 16-byte block


def make_layer() -> tuple[bytes, bytes]:
    """An uncompressed layer tar (text with tar headers and zero padding: low-entropy plaintext
    that would be easy to spot) and its gzip, as a registry stores it."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tar:
        files = {
            "etc/os-release": b'PRETTY_NAME="Debian GNU/Linux 12 (bookworm)"\nNAME="Debian GNU/Linux"\n',
            "app/server.py": "".join(f"def handler_{i}(request):\n    return {{'line': {i}}}\n"
                                     for i in range(12000)).encode(),
            "app/model.bin": os.urandom(700_000),
        }
        for name, data in files.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    raw = buf.getvalue()
    return raw, gzip.compress(raw, compresslevel=1)


def plaintext_runs_on_disk(root: Path, plaintexts: list[bytes]) -> list[str]:
    """Places under ``root`` where a 32-byte run of any plaintext appears.

    A run plaintext[p:p+32] always contains the 16-byte block starting at the next multiple of 16, so
    it is enough to look up every 16-byte window of every stored file (stride 1) in the set of the
    plaintexts' 16-aligned blocks.  (Blocks that are all zero are kept: tar padding must not leak either.)"""
    blocks = {pt[a:a + WINDOW] for pt in plaintexts for a in range(0, len(pt) - WINDOW + 1, WINDOW)}
    hits = []
    for dirpath, _, names in os.walk(root):
        for name in names:
            data = Path(dirpath, name).read_bytes()
            for q in range(len(data) - WINDOW + 1):
                if data[q:q + WINDOW] in blocks:
                    hits.append(f"{Path(dirpath, name).relative_to(root)}@{q}")
                    break
    return hits


def stored_digests(root: Path) -> dict[str, str]:
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in root.rglob("*") if p.is_file() and not p.name.endswith(KEY_SUFFIX)}


def run(coro: Any) -> Any:
    return asyncio.run(coro)


async def push_blob(store: EncryptedStorage, repo: str, data: bytes, chunks: list[int],
                    finish: bool = True) -> str:
    """Upload as the registry does: PATCHes appended to _uploads/<id>/data, then a move."""
    digest = hashlib.sha256(data).hexdigest()
    upload = f"repositories/{repo}/_uploads/{digest[:8]}/data"
    await store.put_bytes(f"repositories/{repo}/_uploads/{digest[:8]}/startedat", b"2024-01-01T00:00:00Z")
    pos = 0
    for size in chunks:
        w = await store.writer(upload, append=True)
        await w.write(data[pos:pos + size])
        await w.commit()
        pos += size
    assert pos == len(data)
    if finish:
        await store.move(upload, f"blobs/sha256/{digest[:2]}/{digest}/data")
        await store.delete(f"repositories/{repo}/_uploads/{digest[:8]}")
        await store.put_bytes(f"repositories/{repo}/_layers/sha256/{digest}/link", f"sha256:{digest}".encode())
    return digest


def test_no_plaintext_under_the_storage_root(tmp_path: Path) -> None:
    raw, gz = make_layer()
    manifest = json.dumps({"schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
                           "layers": [{"digest": "sha256:" + hashlib.sha256(gz).hexdigest(),
                                       "size": len(gz), "annotations": {"org.example.note": "x" * 64}}]},
                          indent=2).encode()
    root = tmp_path / "store"
    store = EncryptedStorage(FilesystemStorage(root, fsync=False), KeyRing(MasterKey(os.urandom(32))))

    async def main() -> None:
        # a monolithic push, a chunked push with unaligned chunks, and one left unfinished
        await push_blob(store, "team/app", gz, [len(gz)])
        third = len(raw) // 3
        await push_blob(store, "team/app", raw, [third, 100_001, len(raw) - third - 100_001])
        await push_blob(store, "team/other", raw[:CHUNK * 5 + 17], [CHUNK * 2, CHUNK * 3 + 17], finish=False)
        digest = hashlib.sha256(manifest).hexdigest()
        await store.put_bytes(f"blobs/sha256/{digest[:2]}/{digest}/data", manifest)
        await store.put_bytes("repositories/team/app/_manifests/tags/latest/current/link", f"sha256:{digest}".encode())
        assert await store.read_bytes(f"blobs/sha256/{hashlib.sha256(raw).hexdigest()[:2]}/"
                                      f"{hashlib.sha256(raw).hexdigest()}/data") == raw
        await store.close()

    run(main())
    assert plaintext_runs_on_disk(root, [raw, gz, manifest]) == []
    # the check itself finds plaintext when it is there
    (root / "leak").write_bytes(b"prefix" + raw[1000:1032] + b"suffix")
    assert plaintext_runs_on_disk(root, [raw]) == ["leak@6"]


def test_rotation_rewraps_keys_without_rewriting_data(tmp_path: Path) -> None:
    old, new, newer = (MasterKey(os.urandom(32)) for _ in range(3))
    root = tmp_path / "store"
    files = {f"blobs/sha256/{i:02x}/data": os.urandom(n) for i, n in enumerate([0, 1, CHUNK, 3 * CHUNK + 5, 300_000])}

    async def write() -> None:
        store = EncryptedStorage(FilesystemStorage(root, fsync=False), KeyRing(old))
        for path, data in files.items():
            await store.put_bytes(path, data)

    async def rotate(ring: KeyRing, to: MasterKey) -> int:
        store = EncryptedStorage(FilesystemStorage(root, fsync=False), ring)
        return await store.rotate(to)

    async def read_all(ring: KeyRing) -> dict[str, bytes]:
        store = EncryptedStorage(FilesystemStorage(root, fsync=False), ring)
        out = {p: await store.read_bytes(p) for p in files}
        out["range"] = b"".join([c async for c in store.reader("blobs/sha256/04/data", CHUNK - 3, 10)])
        return out

    run(write())
    before = stored_digests(root)
    assert run(rotate(KeyRing(old), new)) == len(files)
    assert stored_digests(root) == before                    # not one data byte rewritten
    assert len(list(root.rglob("*" + KEY_SUFFIX))) == len(files)
    got = run(read_all(KeyRing(new)))                        # the old master key is gone
    assert {p: got[p] for p in files} == files
    assert got["range"] == files["blobs/sha256/04/data"][CHUNK - 3:CHUNK + 7]
    with pytest.raises(FailedPrecondition):
        run(read_all(KeyRing(MasterKey(os.urandom(32)))))
    assert run(rotate(KeyRing(new), new)) == 0               # already done: idempotent
    assert run(rotate(KeyRing(new), newer)) == len(files)    # rotate again, from sidecars
    assert {p: v for p, v in run(read_all(KeyRing(newer))).items() if p in files} == files
    assert stored_digests(root) == before


def test_files_written_after_rotation_and_moves_keep_working(tmp_path: Path) -> None:
    old, new = MasterKey(os.urandom(32)), MasterKey(os.urandom(32))
    ring = KeyRing(old)
    store = EncryptedStorage(FilesystemStorage(tmp_path, fsync=False), ring)

    async def main() -> None:
        await store.put_bytes("a/data", b"written with the old key")
        await store.rotate(new)
        await store.put_bytes("b/data", b"written with the new key")
        await store.move("a/data", "c/data")                   # the sidecar travels with the file
        assert await store.list("c") == ["data"]               # sidecars are never listed
        only_new = EncryptedStorage(FilesystemStorage(tmp_path, fsync=False), KeyRing(new))
        assert await only_new.read_bytes("c/data") == b"written with the old key"
        assert await only_new.read_bytes("b/data") == b"written with the new key"
        await only_new.delete("c/data")
        assert not (tmp_path / "c").exists()

    run(main())


def test_tampering_is_detected_per_chunk(tmp_path: Path) -> None:
    store = EncryptedStorage(FilesystemStorage(tmp_path, fsync=False), KeyRing(MasterKey(os.urandom(32))))
    data = os.urandom(4 * CHUNK)

    async def main() -> None:
        await store.put_bytes("f", data)
        p = tmp_path / "f"
        raw = bytearray(p.read_bytes())
        raw[HEADER_SIZE + 2 * RECORD + 100] ^= 1                 # a bit in chunk 2
        p.write_bytes(bytes(raw))
        assert b"".join([c async for c in store.reader("f", 0, 2 * CHUNK)]) == data[:2 * CHUNK]
        with pytest.raises(DataLoss):
            await store.read_bytes("f")
        p.write_bytes(bytes(raw[:HEADER_SIZE + RECORD + 20]))  # cut inside chunk 1's nonce+tag
        with pytest.raises(DataLoss):
            await store.stat("f")
        p.write_bytes(bytes(raw[:HEADER_SIZE + RECORD + 40]))  # cut inside chunk 1's data
        with pytest.raises(DataLoss):
            await store.read_bytes("f")

    run(main())


class CountingStorage(FilesystemStorage):
    """Counts the bytes the wrapper fetches from the inner store."""

    fetched = 0

    async def reader(self, path: str, offset: int = 0, length: int | None = None) -> AsyncIterator[bytes]:
        async for chunk in super().reader(path, offset, length):
            CountingStorage.fetched += len(chunk)
            yield chunk


def test_range_reads_fetch_only_the_needed_chunks(tmp_path: Path) -> None:
    store = EncryptedStorage(CountingStorage(tmp_path, fsync=False), KeyRing(MasterKey(os.urandom(32))))
    data = os.urandom(8 * 1024 * 1024)

    async def main() -> None:
        await store.put_bytes("big", data)
        assert (await store.stat("big")).size == len(data)
        CountingStorage.fetched = 0
        got = b"".join([c async for c in store.reader("big", 5 * CHUNK - 10, 20)])
        assert got == data[5 * CHUNK - 10:5 * CHUNK + 10]
        assert CountingStorage.fetched == HEADER_SIZE + 2 * RECORD

    run(main())


def test_reserved_names_and_key_files(tmp_path: Path) -> None:
    store = EncryptedStorage(FilesystemStorage(tmp_path / "s", fsync=False), KeyRing(MasterKey(os.urandom(32))))

    async def main() -> None:
        with pytest.raises(InvalidArgument):
            await store.put_bytes("a/data" + KEY_SUFFIX, b"x")
        with pytest.raises(NotFound):
            await store.read_bytes("nothing")

    run(main())
    key_file = tmp_path / "master.key"
    key = generate_key_file(key_file)
    assert stat.S_IMODE(key_file.stat().st_mode) == 0o600
    assert len(base64.b64decode(key_file.read_text())) == 32
    assert MasterKey.from_file(key_file) == key and key.kid in repr(key) and key.key.hex() not in repr(key)
    with pytest.raises(InvalidArgument):
        generate_key_file(key_file)                       # never overwrite a master key
    second = generate_key_file(tmp_path / "second.key")
    ring = KeyRing.from_files(tmp_path / "second.key", [key_file])
    assert ring.current() == second and ring.get(key.kid) == key
    by_file = EncryptedStorage(FilesystemStorage(tmp_path / "s", fsync=False), key_file=tmp_path / "second.key",
                               previous_key_files=[key_file])
    assert by_file.keys.current() == second and by_file.keys.get(key.kid) == key
    with pytest.raises(InvalidArgument):
        EncryptedStorage(FilesystemStorage(tmp_path / "s", fsync=False))
    (tmp_path / "bad.key").write_text("c2hvcnQ=\n")
    with pytest.raises(InvalidArgument):
        MasterKey.from_file(tmp_path / "bad.key")
