"""OverlaySnapshotter on real overlayfs: chains, whiteouts, container diffs, 120 layers, concurrency.

Needs root (mounts).  Every test gets its own snapshotter root in a fresh directory under /var/tmp
(not /tmp: overlay cannot use every filesystem as upper dir, and /tmp may be tmpfs); every mount is
undone and the directory deleted even when the test fails.
"""

from __future__ import annotations

import hashlib
import io
import multiprocessing
import os
import shutil
import stat
import tarfile
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from dockyard.errors import AlreadyExists, DataLoss, FailedPrecondition, InvalidArgument, NotFound
from dockyard.snapshots.mount import PAGE_SIZE, Mount, is_mounted, mount_all, unmount
from dockyard.snapshots.overlay import OverlaySnapshotter
from dockyard.snapshots.tarfs import apply_layer

pytestmark = pytest.mark.root


# -- helpers ------------------------------------------------------------------------------------


def layer(*entries: tuple[str, str | bytes | None]) -> bytes:
    """A layer tar: (name, bytes) is a file, (name/, None) a directory, (name, "->target") a symlink,
    (name, "=>target") a hard link."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tf:
        for name, content in entries:
            info = tarfile.TarInfo(name.rstrip("/"))
            info.mtime = 1_700_000_000
            if content is None:
                info.type, info.mode = tarfile.DIRTYPE, 0o755
                tf.addfile(info)
            elif isinstance(content, str) and content.startswith("->"):
                info.type, info.linkname = tarfile.SYMTYPE, content[2:]
                tf.addfile(info)
            elif isinstance(content, str) and content.startswith("=>"):
                info.type, info.linkname = tarfile.LNKTYPE, content[2:]
                tf.addfile(info)
            else:
                data = content.encode() if isinstance(content, str) else content
                info.size, info.mode = len(data), 0o644
                tf.addfile(info, io.BytesIO(data))
    return buf.getvalue()


def chain_id(parent: str | None, diff_id: str) -> str:
    """OCI chain ID: what the image store will use as committed snapshot names."""
    if parent is None:
        return diff_id
    return "sha256:" + hashlib.sha256(f"{parent} {diff_id}".encode()).hexdigest()


def tree(root: Path) -> dict[str, tuple[str, object]]:
    """Comparable description of a directory tree (kind and content, no times)."""
    found: dict[str, tuple[str, object]] = {}
    for dirpath, dirnames, filenames in os.walk(root):
        for name in dirnames + filenames:
            path = Path(dirpath, name)
            rel = str(path.relative_to(root))
            st = os.lstat(path)
            if stat.S_ISLNK(st.st_mode):
                found[rel] = ("link", os.readlink(path))
            elif stat.S_ISDIR(st.st_mode):
                found[rel] = ("dir", stat.S_IMODE(st.st_mode))
            elif stat.S_ISREG(st.st_mode):
                found[rel] = ("file", (path.read_bytes(), stat.S_IMODE(st.st_mode)))
            else:
                found[rel] = ("other", st.st_mode)
    return found


@dataclass
class Env:
    base: Path
    snap: OverlaySnapshotter
    targets: list[Path] = field(default_factory=list)

    def mount(self, mounts: list[Mount]) -> Path:
        target = self.base / "mnt" / str(len(self.targets))
        target.mkdir(parents=True)
        self.targets.append(target)
        mount_all(mounts, target)
        return target

    def umount(self, target: Path) -> None:
        assert unmount(target) >= 1
        assert not is_mounted(target)

    def apply_chain(self, *layers: bytes) -> list[str]:
        names: list[str] = []
        parent: str | None = None
        for data in layers:
            name = chain_id(parent, "sha256:" + hashlib.sha256(data).hexdigest())
            result = self.snap.apply(name, parent, io.BytesIO(data))
            assert result.diff_id == "sha256:" + hashlib.sha256(data).hexdigest()
            names.append(name)
            parent = name
        return names


def _mounts_below(base: Path) -> list[str]:
    prefix = str(base) + "/"
    with open("/proc/self/mountinfo", encoding="utf-8") as info:
        points = [line.split(" ")[4] for line in info]
    return sorted((p for p in points if p.startswith(prefix)), key=len, reverse=True)


@pytest.fixture
def env() -> Iterator[Env]:
    base = Path(tempfile.mkdtemp(prefix="dockyard-overlay-", dir="/var/tmp"))
    try:
        yield Env(base, OverlaySnapshotter(base / "snapshots"))
    finally:
        for point in _mounts_below(base):  # whatever a failed test left mounted
            unmount(point, lazy=True)
        assert not _mounts_below(base)
        shutil.rmtree(base)


# -- prepare / view / commit ----------------------------------------------------------------------


def test_prepare_commit_chain_and_errors(env: Env) -> None:
    s = env.snap
    mounts = s.prepare("k1", None)
    assert [m.type for m in mounts] == ["bind"] and "rw" in mounts[0].options
    t = env.mount(mounts)
    (t / "a").write_text("1")
    (t / "dir").mkdir()
    (t / "dir" / "x").write_text("x")
    env.umount(t)
    s.commit("l1", "k1")
    info = s.stat("l1")
    assert (info.kind, info.parent, info.size) == ("committed", None, 2)
    with pytest.raises(NotFound):
        s.stat("k1")

    mounts = s.prepare("k2", "l1")
    assert mounts == s.mounts("k2") and mounts[0].type == "overlay"
    t = env.mount(mounts)
    assert (t / "a").read_text() == "1"
    (t / "b").write_text("2")
    os.remove(t / "a")
    env.umount(t)
    s.commit("l2", "k2")

    view = s.view("v2", "l2")
    assert view[0].type == "overlay" and "ro" in view[0].options
    t = env.mount(view)
    assert sorted(os.listdir(t)) == ["b", "dir"]
    with pytest.raises(OSError):
        (t / "c").write_text("read-only")
    env.umount(t)
    view1 = s.view("v1", "l1")
    assert view1 == [Mount("bind", str(s.root / "1" / "fs"), ["rbind", "ro"])]
    t = env.mount(view1)
    assert sorted(os.listdir(t)) == ["a", "dir"]
    with pytest.raises(OSError):
        (t / "c").write_text("read-only")
    env.umount(t)

    with pytest.raises(NotFound):
        s.prepare("k3", "missing")
    with pytest.raises(AlreadyExists):
        s.prepare("v1", "l1")
    with pytest.raises(FailedPrecondition):
        s.prepare("k3", "v1")  # parent must be committed
    with pytest.raises(FailedPrecondition):
        s.commit("l3", "l2")  # only active snapshots commit
    with pytest.raises(FailedPrecondition):
        s.mounts("l1")
    with pytest.raises(FailedPrecondition):
        s.remove("l1")  # has children
    with pytest.raises(NotFound):
        s.remove("missing")
    with pytest.raises(InvalidArgument):
        s.prepare("", None)

    assert [(i.name, i.kind, i.parent) for i in s.walk()] == [
        ("l1", "committed", None), ("l2", "committed", "l1"), ("v2", "view", "l2"), ("v1", "view", "l1"),
    ]
    assert s.usage("l1") > 0
    for name in ("v2", "v1", "l2", "l1"):
        s.remove(name)
    assert list(s.walk()) == []
    assert sorted(p.name for p in s.root.iterdir() if not p.name.startswith("metadata.db")) == ["tmp"]
    assert os.listdir(s.root / "tmp") == []


# -- images -------------------------------------------------------------------------------------

L1 = layer(
    ("etc/", None), ("etc/os-release", "debian"), ("etc/motd", "old motd"), ("etc/hostname", "box"),
    ("var/", None), ("var/lib/", None), ("var/lib/data/", None),
    ("var/lib/data/old1", "1"), ("var/lib/data/old2", "2"),
    ("bin/", None), ("bin/sh", "#!sh"), ("bin/ash", "=>bin/sh"), ("bin/bash", "->sh"),
    ("usr/", None), ("usr/share/", None), ("usr/share/doc", "doc"),
)
L2 = layer(
    ("etc/", None), ("etc/.wh.motd", b""), ("etc/issue", "welcome"),
    ("var/lib/data/", None), ("var/lib/data/.wh..wh..opq", b""), ("var/lib/data/new2", "n2"),
)
L3 = layer((".wh.usr", b""), ("etc/motd", "new motd"), ("bin/.wh.ash", b""))


def test_three_layer_image_merged_with_whiteouts(env: Env) -> None:
    names = env.apply_chain(L1, L2, L3)
    assert all(n.startswith("sha256:") and len(n) == 71 for n in names)
    root = env.snap.root
    assert env.snap.lower_dirs(names[-1]) == [root / "3" / "fs", root / "2" / "fs", root / "1" / "fs"]
    assert env.snap.lower_dirs("sha256:" + "0" * 64) == []
    t = env.mount(env.snap.view("export", names[-1]))
    assert sorted(os.listdir(t)) == ["bin", "etc", "var"]
    assert sorted(os.listdir(t / "etc")) == ["hostname", "issue", "motd", "os-release"]
    assert (t / "etc" / "motd").read_text() == "new motd"
    assert os.listdir(t / "var" / "lib" / "data") == ["new2"]
    assert sorted(os.listdir(t / "bin")) == ["bash", "sh"]
    merged = tree(t)
    env.umount(t)
    # The same layers flattened into one directory give the same tree.
    flat = env.base / "flat"
    flat.mkdir()
    for data in (L1, L2, L3):
        apply_layer(io.BytesIO(data), flat, overlay_whiteouts=False)
    assert tree(flat) == merged


def test_container_changes_become_a_layer(env: Env) -> None:
    names = env.apply_chain(L1, L2)
    s = env.snap
    t = env.mount(s.prepare("container-1", names[-1]))
    (t / "etc" / "os-release").write_text("modified")
    os.remove(t / "etc" / "hostname")
    shutil.rmtree(t / "usr")
    shutil.rmtree(t / "var" / "lib" / "data")
    (t / "var" / "lib" / "data").mkdir()
    (t / "var" / "lib" / "data" / "fresh").write_text("f")
    (t / "home" / "user").mkdir(parents=True)
    (t / "home" / "user" / "file").write_text("hello")
    os.chmod(t / "bin" / "sh", 0o755)
    expected = tree(t)
    env.umount(t)

    out = io.BytesIO()
    diff_id = s.diff("container-1", out)
    assert diff_id == "sha256:" + hashlib.sha256(out.getvalue()).hexdigest()
    with tarfile.open(fileobj=io.BytesIO(out.getvalue())) as tf:
        members = {m.name: m for m in tf.getmembers()}
    for name in ("etc/.wh.hostname", ".wh.usr", "var/lib/data/.wh..wh..opq", "var/lib/data/fresh",
                 "home/user/file", "etc/os-release", "bin/sh"):
        assert name in members, (name, sorted(members))
    assert members[".wh.usr"].isreg() and members[".wh.usr"].size == 0
    assert "etc/motd" not in members and "bin/ash" not in members  # untouched lower files
    xattrs = [k for m in members.values() for k in m.pax_headers if k.startswith("SCHILY.xattr.")]
    assert not [k for k in xattrs if k.startswith("SCHILY.xattr.trusted.overlay.")]

    # Applying the diff on the same parent reproduces the container's filesystem.
    s.apply("sha256:" + "c" * 64, names[-1], io.BytesIO(out.getvalue()))
    t = env.mount(s.view("check", "sha256:" + "c" * 64))
    assert tree(t) == expected
    env.umount(t)


def test_chain_of_120_layers_mounts(env: Env) -> None:
    layers = [layer(("layers/", None), (f"layers/f{i:03d}", f"layer {i}")) for i in range(120)]
    names = env.apply_chain(*layers)
    mounts = env.snap.prepare("big-container", names[-1])
    options = ",".join(mounts[0].options)
    assert len(options) > PAGE_SIZE - 512, "the test must exercise the relative-lowerdir path"
    t = env.mount(mounts)
    files = sorted(os.listdir(t / "layers"))
    assert files == [f"f{i:03d}" for i in range(120)]
    assert all((t / "layers" / f"f{i:03d}").read_text() == f"layer {i}" for i in range(120))
    (t / "layers" / "f000").write_text("changed in the container")
    env.umount(t)
    assert os.getcwd() != str(env.snap.root)  # the chdir stayed in the mount thread
    t = env.mount(env.snap.view("big-view", names[-1]))
    assert len(os.listdir(t / "layers")) == 120 and (t / "layers" / "f000").read_text() == "layer 0"
    env.umount(t)


# -- failures and crashes -------------------------------------------------------------------------


def test_failed_apply_leaves_nothing(env: Env) -> None:
    s = env.snap
    truncated = L1[: len(L1) // 2]
    with pytest.raises(DataLoss):
        s.apply("sha256:" + "1" * 64, None, io.BytesIO(truncated))
    with pytest.raises(InvalidArgument):
        s.apply("sha256:" + "2" * 64, None, io.BytesIO(layer(("../escape", "x"))))
    with pytest.raises(NotFound):
        s.apply("sha256:" + "3" * 64, "sha256:" + "9" * 64, io.BytesIO(L1))
    assert list(s.walk()) == []
    assert os.listdir(s.root / "tmp") == []
    env.apply_chain(L1)
    with pytest.raises(AlreadyExists):
        env.apply_chain(L1)


def test_cleanup_removes_crash_leftovers(env: Env) -> None:
    s = env.snap
    (name,) = env.apply_chain(L1)
    (s.root / "999" / "fs").mkdir(parents=True)  # renamed into place, then crashed before COMMIT
    (s.root / "tmp" / "rm-5-x" / "d").mkdir(parents=True)  # removal interrupted
    (s.root / "tmp" / "apply-stale" / "fs").mkdir(parents=True)  # unpack interrupted
    assert s.cleanup() == 3
    assert sorted(p.name for p in s.root.iterdir() if not p.name.startswith("metadata.db")) == ["1", "tmp"]
    assert os.listdir(s.root / "tmp") == []
    assert s.stat(name).kind == "committed"


# -- concurrency --------------------------------------------------------------------------------


Chain = list[tuple[str, str | None, bytes]]


def _apply_worker(root: str, chain: Chain, barrier, results) -> None:  # type: ignore[no-untyped-def]
    snap = OverlaySnapshotter(Path(root))
    barrier.wait()
    for name, parent, data in chain:
        try:
            snap.apply(name, parent, io.BytesIO(data))
            results.put(("applied", name))
        except AlreadyExists:
            results.put(("exists", name))
        except BaseException as exc:  # reported to the test, never swallowed
            results.put(("error", f"{name}: {exc!r}"))


def _run_workers(env: Env, chain: Chain, count: int) -> list[tuple[str, str]]:
    ctx = multiprocessing.get_context("fork")
    barrier = ctx.Barrier(count)
    results = ctx.Queue()
    args = (str(env.snap.root), chain, barrier, results)
    procs = [ctx.Process(target=_apply_worker, args=args) for _ in range(count)]
    for p in procs:
        p.start()
    try:
        got = [results.get(timeout=120) for _ in range(count * len(chain))]
    finally:
        for p in procs:
            p.join(timeout=60)
            if p.is_alive():
                p.kill()
                p.join()
    assert all(p.exitcode == 0 for p in procs)
    return got


def test_concurrent_apply_of_the_same_layer(env: Env) -> None:
    data = layer(*[(f"big/f{i}", os.urandom(1 << 20)) for i in range(16)])
    name = "sha256:" + hashlib.sha256(data).hexdigest()
    got = _run_workers(env, [(name, None, data)], 2)
    assert sorted(kind for kind, _ in got) == ["applied", "exists"], got
    infos = list(env.snap.walk())
    assert [(i.name, i.kind, i.size) for i in infos] == [(name, "committed", 16 << 20)]
    assert os.listdir(env.snap.root / "tmp") == []
    assert env.snap.cleanup() == 0
    t = env.mount(env.snap.view("check", name))
    assert len(os.listdir(t / "big")) == 16
    env.umount(t)


def test_concurrent_apply_of_a_shared_chain(env: Env) -> None:
    chain: Chain = []
    parent: str | None = None
    for i in range(6):
        data = layer((f"l{i}/", None), (f"l{i}/data", os.urandom(200_000)))
        name = chain_id(parent, "sha256:" + hashlib.sha256(data).hexdigest())
        chain.append((name, parent, data))
        parent = name
    got = _run_workers(env, chain, 4)
    assert not [g for g in got if g[0] == "error"], got
    assert sorted(n for kind, n in got if kind == "applied") == sorted(n for n, _, _ in chain)
    infos = {i.name: i for i in env.snap.walk()}
    assert set(infos) == {n for n, _, _ in chain}
    assert all(infos[n].parent == p for n, p, _ in chain)
    t = env.mount(env.snap.view("check", parent))
    assert sorted(os.listdir(t)) == [f"l{i}" for i in range(6)]
    env.umount(t)
    assert os.listdir(env.snap.root / "tmp") == []


def test_mount_errors_and_idempotent_unmount(env: Env) -> None:
    target = env.base / "mnt" / "errors"
    target.mkdir(parents=True)
    with pytest.raises(NotFound, match=str(target)):
        mount_all([Mount("overlay", "overlay", ["lowerdir=/nonexistent-a:/nonexistent-b"])], target)
    good = Mount("bind", str(env.base), ["rbind", "ro"])
    with pytest.raises(NotFound):  # all or nothing: the first mount is undone
        mount_all([good, Mount("bind", str(env.base / "missing"), ["rbind"])], target)
    assert not is_mounted(target)
    assert unmount(target) == 0 and unmount(env.base / "never-existed") == 0
