"""The pull's helpers: platform choice, error reporting from a task group, the worker-thread wrapper
that must not let a cancelled pull roll back under a running unpack, and the reader that follows a
blob while it is written (a file and a thread here; the real download is in the integration tests)."""

from __future__ import annotations

import asyncio
import os
import threading
import time
from pathlib import Path

import pytest

from dockyard.errors import DataLoss, InvalidArgument, NotFound, Unavailable
from dockyard.oci.models import Descriptor, Index, Platform
from dockyard.remotes.pull import choose_manifest, parse_platform
from dockyard.remotes.stream import IngestFollower, first_error, in_thread

MANIFEST = "application/vnd.oci.image.manifest.v1+json"


def desc(n: int, arch: str, variant: str | None = None) -> Descriptor:
    return Descriptor(media_type=MANIFEST, digest="sha256:" + f"{n:x}" * 64, size=1,
                      platform=Platform(os="linux", architecture=arch, variant=variant))


def test_platform_parsing_and_choice() -> None:
    assert parse_platform(None) == ("linux", "amd64", None)
    assert parse_platform("linux/arm/v7") == ("linux", "arm", "v7")
    with pytest.raises(InvalidArgument):
        parse_platform("linux")
    index = Index(manifests=[desc(1, "arm", "v6"), desc(2, "arm", "v7"), desc(3, "amd64")])
    assert choose_manifest(index, ("linux", "amd64", None)).digest == index.manifests[2].digest
    assert choose_manifest(index, ("linux", "arm", "v7")).digest == index.manifests[1].digest
    with pytest.raises(NotFound, match="no matching manifest for linux/s390x"):
        choose_manifest(index, ("linux", "s390x", None))


def test_first_error_skips_cancellations_and_nesting() -> None:
    lost = Unavailable("connection lost")
    group = BaseExceptionGroup("g", [asyncio.CancelledError(), ExceptionGroup("inner", [lost]), DataLoss("x")])
    assert first_error(group) is lost
    only = asyncio.CancelledError()
    assert first_error(BaseExceptionGroup("g", [only])) is only


def test_a_cancelled_caller_waits_for_its_thread() -> None:
    finished = threading.Event()

    def slow() -> None:
        time.sleep(0.3)
        finished.set()

    async def main() -> bool:
        task = asyncio.create_task(in_thread(slow))
        await asyncio.sleep(0.05)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        return finished.is_set()          # the rollback that follows a cancellation sees a quiet store

    assert asyncio.run(main()) is True



def test_follower_reads_a_growing_file_to_the_end(tmp_path: Path) -> None:
    data = os.urandom(3 << 20)
    path = tmp_path / "data"
    path.write_bytes(b"")
    follower = IngestFollower(path, batch=256 << 10)

    def write() -> None:
        with open(path, "ab", buffering=0) as f:
            for i in range(0, len(data), 100_000):
                f.write(data[i:i + 100_000])
                follower.grew(f.tell())
                time.sleep(0.001)
        os.rename(path, tmp_path / "committed")            # a commit renames; the reader keeps reading
        follower.finish()

    t = threading.Thread(target=write)
    t.start()
    got = bytearray()
    while chunk := follower.read(1 << 16):
        got += chunk
    t.join()
    follower.close()
    assert bytes(got) == data


def test_follower_raises_when_the_download_fails(tmp_path: Path) -> None:
    path = tmp_path / "data"
    path.write_bytes(b"partial")
    follower = IngestFollower(path)
    threading.Timer(0.1, follower.finish, ["connection lost"]).start()
    assert follower.read(100) == b"partial"
    with pytest.raises(Unavailable, match="connection lost"):
        follower.read(100)
    follower.close()
