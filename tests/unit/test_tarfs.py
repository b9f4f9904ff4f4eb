"""Layer tars: hostile input, whiteouts both ways, digests, compression.

Every test extracts into ``sandbox/root`` and keeps a sentinel directory ``sandbox/outside`` next to
it; after each hostile tar we check that nothing outside the root appeared or changed.  Tests that
create device nodes or trusted.* xattrs need root (this suite runs as root in CI).
"""

from __future__ import annotations

import gzip
import hashlib
import io
import os
import shutil
import stat
import tarfile
import tempfile
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import zstandard

from dockyard.errors import DataLoss, InvalidArgument
from dockyard.snapshots.compression import GZIP, UNCOMPRESSED, ZSTD, gzip_writer, open_layer_reader
from dockyard.snapshots.tarfs import (
    OVERLAY_OPAQUE_XATTR,
    apply_layer,
    clean_name,
    write_layer_from_dir,
    write_layer_from_upper,
)



def needs_root(test):  # type: ignore[no-untyped-def]
    """Mark a test that creates device nodes or trusted.* xattrs."""
    test = pytest.mark.root(test)
    return pytest.mark.root(test)


# -- building tars ------------------------------------------------------------------------------


@dataclass
class E:
    """One tar entry to build: name, type and the fields that matter here."""

    name: str
    kind: bytes = tarfile.REGTYPE
    data: bytes = b""
    link: str = ""
    mode: int = 0o644
    uid: int = 0
    gid: int = 0
    mtime: int = 1_600_000_000
    major: int = 0
    minor: int = 0
    pax: dict[str, str] = field(default_factory=dict)


def make_tar(*entries: E, fmt: int = tarfile.PAX_FORMAT) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=fmt) as tf:
        for e in entries:
            info = tarfile.TarInfo(e.name)
            info.type = e.kind
            info.mode, info.uid, info.gid, info.mtime = e.mode, e.uid, e.gid, e.mtime
            info.linkname = e.link
            info.devmajor, info.devminor = e.major, e.minor
            info.pax_headers = dict(e.pax)
            if e.kind in (tarfile.REGTYPE, tarfile.AREGTYPE):
                info.size = len(e.data)
                tf.addfile(info, io.BytesIO(e.data))
            else:
                tf.addfile(info)
    return buf.getvalue()


def D(name: str, **kw: object) -> E:
    return E(name, tarfile.DIRTYPE, mode=kw.pop("mode", 0o755), **kw)  # type: ignore[arg-type]


def S(name: str, target: str) -> E:
    return E(name, tarfile.SYMTYPE, link=target, mode=0o777)


def H(name: str, target: str) -> E:
    return E(name, tarfile.LNKTYPE, link=target)


def entries_of(data: bytes) -> dict[str, tarfile.TarInfo]:
    with tarfile.open(fileobj=io.BytesIO(data)) as tf:
        return {m.name: m for m in tf.getmembers()}


# -- fixtures -----------------------------------------------------------------------------------


@dataclass
class Sandbox:
    base: Path
    root: Path
    outside: Path

    def snapshot_outside(self) -> dict[str, bytes]:
        """Everything outside the root: the sentinel tree's names and contents, and base's names."""
        seen: dict[str, bytes] = {"<base>": "\n".join(sorted(os.listdir(self.base))).encode()}
        for dirpath, dirnames, filenames in os.walk(self.outside):
            for name in dirnames + filenames:
                path = Path(dirpath, name)
                seen[str(path)] = b"<dir>" if path.is_dir() and not path.is_symlink() else path.read_bytes()
        return seen

    def apply(self, data: bytes, **kw: object):  # type: ignore[no-untyped-def]
        return apply_layer(io.BytesIO(data), self.root, **kw)  # type: ignore[arg-type]


@pytest.fixture
def sandbox() -> Iterator[Sandbox]:
    base = Path(tempfile.mkdtemp(prefix="dockyard-tarfs-", dir="/var/tmp"))
    try:
        (base / "root").mkdir()
        (base / "outside").mkdir()
        (base / "outside" / "secret").write_text("do not touch")
        yield Sandbox(base, base / "root", base / "outside")
    finally:
        shutil.rmtree(base)


def refused(sandbox: Sandbox, data: bytes, error: type[Exception], match: str, **kw: object) -> None:
    before = sandbox.snapshot_outside()
    with pytest.raises(error, match=match):
        sandbox.apply(data, **kw)
    assert sandbox.snapshot_outside() == before


# -- names --------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "cleaned"),
    [
        ("a/b", "a/b"), ("./a/b/", "a/b"), ("/abs/path", "abs/path"), ("a/../b", "b"),
        ("./", ""), ("/", ""), ("a//b", "a/b"),
    ],
)
def test_clean_name(name: str, cleaned: str) -> None:
    assert clean_name(name) == cleaned


@pytest.mark.parametrize("name", ["..", "../escape", "a/../../x", "/../x", "./../x", "a/b/../../../x"])
def test_clean_name_refuses_escapes(name: str) -> None:
    with pytest.raises(InvalidArgument, match="escapes"):
        clean_name(name)


# -- hostile tars -------------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["../escape", "a/../../x", "../outside/secret", "x/../../outside/new"])
def test_dotdot_escape_refused(sandbox: Sandbox, name: str) -> None:
    refused(sandbox, make_tar(E(name, data=b"pwned")), InvalidArgument, "escapes the layer root")


def test_absolute_path_lands_inside_root(sandbox: Sandbox) -> None:
    sandbox.apply(make_tar(E("/abs/path", data=b"inside"), E(str(sandbox.outside / "abs"), data=b"x")))
    assert (sandbox.root / "abs" / "path").read_bytes() == b"inside"
    assert (sandbox.root / str(sandbox.outside).lstrip("/") / "abs").read_bytes() == b"x"
    assert not (sandbox.outside / "abs").exists()


def test_inner_dotdot_allowed(sandbox: Sandbox) -> None:
    sandbox.apply(make_tar(E("a/../b", data=b"b")))
    assert (sandbox.root / "b").read_bytes() == b"b"


def test_symlink_escaping_relative_refused_before_use(sandbox: Sandbox) -> None:
    hostile = make_tar(S("link", "../../.."), E("link/file", data=b"x"))
    refused(sandbox, hostile, InvalidArgument, "symlink target")
    assert not os.path.lexists(sandbox.root / "link")
    refused(sandbox, make_tar(S("a/b/link", "../../../outside")), InvalidArgument, "escapes")


def test_symlink_to_absolute_dir_then_file_stays_inside(sandbox: Sandbox) -> None:
    """``etc -> <sentinel>`` then ``etc/passwd``: chroot semantics put it under the root."""
    before = sandbox.snapshot_outside()
    sandbox.apply(
        make_tar(
            S("etc", str(sandbox.outside)), E("etc/passwd", data=b"root::0:0"), E("etc/secret", data=b"!")
        )
    )
    assert sandbox.snapshot_outside() == before
    landed = sandbox.root / str(sandbox.outside).lstrip("/")
    assert (landed / "passwd").read_bytes() == b"root::0:0"
    assert (landed / "secret").read_bytes() == b"!"
    assert os.readlink(sandbox.root / "etc") == str(sandbox.outside)


def test_symlink_to_host_etc_never_writes_host(sandbox: Sandbox) -> None:
    """``etc -> /etc`` inside a chroot points at itself: the write is refused, as chroot would."""
    canary = f"dockyard-test-canary-{uuid.uuid4().hex}"
    try:
        hostile = make_tar(S("etc", "/etc"), E(f"etc/{canary}", data=b"x"))
        refused(sandbox, hostile, InvalidArgument, "symbolic links")
        assert not os.path.lexists(f"/etc/{canary}")
        # with a real directory behind it, the same link works and stays inside the root
        sandbox.apply(make_tar(S("etc", "/private/etc"), D("private/etc"), E(f"etc/{canary}", data=b"x")))
        assert (sandbox.root / "private" / "etc" / canary).read_bytes() == b"x"
        assert not os.path.lexists(f"/etc/{canary}")
    finally:
        if os.path.lexists(f"/etc/{canary}"):
            os.unlink(f"/etc/{canary}")


def test_symlink_dotdot_clamped_at_root(sandbox: Sandbox) -> None:
    # "d/up -> .." is inside; "/.." as an absolute target is the root itself (chroot semantics).
    before = sandbox.snapshot_outside()
    sandbox.apply(
        make_tar(D("d"), S("d/up", ".."), E("d/up/f1", data=b"1"), S("top", "/.."), E("top/f2", data=b"2"))
    )
    assert (sandbox.root / "f1").read_bytes() == b"1"
    assert (sandbox.root / "f2").read_bytes() == b"2"
    assert sandbox.snapshot_outside() == before


def test_symlink_chain_through_absolute_links_stays_inside(sandbox: Sandbox) -> None:
    before = sandbox.snapshot_outside()
    sandbox.apply(
        make_tar(
            S("a", "/b/../../../.."), S("b", str(sandbox.base)), E("a/outside/secret", data=b"overwritten?")
        )
    )
    assert (sandbox.outside / "secret").read_text() == "do not touch"
    assert (sandbox.root / "outside" / "secret").read_bytes() == b"overwritten?"
    assert sandbox.snapshot_outside() == before


def test_symlink_loop_refused(sandbox: Sandbox) -> None:
    hostile = make_tar(S("a", "b"), S("b", "a"), E("a/x", data=b""))
    refused(sandbox, hostile, InvalidArgument, "symbolic links")


def test_existing_symlink_on_disk_is_replaced_not_followed(sandbox: Sandbox) -> None:
    os.symlink(sandbox.outside / "secret", sandbox.root / "evil")
    os.symlink(sandbox.outside, sandbox.root / "evildir")
    before = sandbox.snapshot_outside()
    data = make_tar(E("evil", data=b"replaced"), E("evildir/x", data=b"inside"))
    sandbox.apply(data, overlay_whiteouts=False)
    assert sandbox.snapshot_outside() == before
    assert not (sandbox.root / "evil").is_symlink()
    assert (sandbox.root / "evil").read_bytes() == b"replaced"
    assert (sandbox.root / str(sandbox.outside).lstrip("/") / "x").read_bytes() == b"inside"


def test_hardlink_escape_refused(sandbox: Sandbox) -> None:
    refused(sandbox, make_tar(H("h", "../outside/secret")), InvalidArgument, "hard link target")
    refused(sandbox, make_tar(H("h", "/etc/shadow")), InvalidArgument, "not a regular file extracted")
    refused(sandbox, make_tar(H("h", "/etc/passwd")), InvalidArgument, "not a regular file extracted")


def test_hardlink_through_symlink_or_to_preexisting_refused(sandbox: Sandbox) -> None:
    refused(sandbox, make_tar(S("l", str(sandbox.outside)), H("h", "l/secret")), InvalidArgument, "hard link")
    (sandbox.root / "old").write_text("from a lower layer")
    refused(sandbox, make_tar(H("h", "old")), InvalidArgument, "hard link")
    refused(sandbox, make_tar(D("d"), H("h", "d")), InvalidArgument, "hard link")
    refused(sandbox, make_tar(E("f", data=b"x"), H("f", "f")), InvalidArgument, "itself")


def test_hardlink_to_extracted_file(sandbox: Sandbox) -> None:
    sandbox.apply(
        make_tar(
            E("bin/busybox", data=b"\x7fELF", mode=0o755),
            H("bin/sh", "bin/busybox"),
            H("/bin/ls", "/bin/busybox"),
        )
    )
    st = os.stat(sandbox.root / "bin" / "busybox")
    assert st.st_nlink == 3
    assert os.stat(sandbox.root / "bin" / "sh").st_ino == st.st_ino


def test_device_nodes_refused_by_default(sandbox: Sandbox) -> None:
    refused(sandbox, make_tar(E("dev/sda", tarfile.BLKTYPE, major=8, minor=0)), InvalidArgument, "device")
    refused(sandbox, make_tar(E("mem", tarfile.CHRTYPE, major=1, minor=1)), InvalidArgument, "device")
    assert not os.path.lexists(sandbox.root / "dev")  # refused before creating parents


@needs_root
def test_device_nodes_allowed_when_asked(sandbox: Sandbox) -> None:
    sandbox.apply(make_tar(E("dev/null", tarfile.CHRTYPE, major=1, minor=3, mode=0o666)), allow_devices=True)
    st = os.lstat(sandbox.root / "dev" / "null")
    assert stat.S_ISCHR(st.st_mode) and os.major(st.st_rdev) == 1 and os.minor(st.st_rdev) == 3
    assert stat.S_IMODE(st.st_mode) == 0o666


def test_fifo_allowed(sandbox: Sandbox) -> None:
    sandbox.apply(make_tar(E("run/fifo", tarfile.FIFOTYPE, mode=0o620)))
    st = os.lstat(sandbox.root / "run" / "fifo")
    assert stat.S_ISFIFO(st.st_mode) and stat.S_IMODE(st.st_mode) == 0o620


def test_file_as_parent_refused(sandbox: Sandbox) -> None:
    refused(sandbox, make_tar(E("f", data=b""), E("f/child", data=b"")), InvalidArgument, "not a directory")


def test_unsupported_entry_type_refused(sandbox: Sandbox) -> None:
    refused(sandbox, make_tar(E("vol", b"V")), InvalidArgument, "unsupported")


# -- corrupt streams ----------------------------------------------------------------------------


def big_tar() -> bytes:
    return make_tar(D("d"), E("d/a", data=os.urandom(5000)), E("d/b", data=os.urandom(3000)))


# big_tar(): "d" header 0; "d/a" header 512, data 1024..6024, padding to 6144; "d/b" header 6144,
# data 6656..9656, padding to 9728; end-of-archive blocks from 9728.
@pytest.mark.parametrize("cut", [700, 2000, 6100, 6144 + 100, 7000, 9728, 9728 + 100])
def test_truncated_tar(sandbox: Sandbox, cut: int) -> None:
    data = big_tar()
    refused(sandbox, data[:cut], DataLoss, "unexpected EOF")


def test_truncated_at_member_boundary_missing_end_marker(sandbox: Sandbox) -> None:
    data = make_tar(E("a", data=b"x" * 512), E("b", data=b"y" * 512))
    end = data.index(b"y" * 512) + 512
    refused(sandbox, data[:end], DataLoss, "unexpected EOF")


def test_garbage_after_first_member(sandbox: Sandbox) -> None:
    data = make_tar(E("a", data=b"x" * 512))
    refused(sandbox, data[:1024] + os.urandom(512), DataLoss, "corrupt tar header")


def test_random_bytes_refused(sandbox: Sandbox) -> None:
    refused(sandbox, os.urandom(4096), DataLoss, "not a tar archive")
    refused(sandbox, os.urandom(100), DataLoss, "not a tar archive")


def test_empty_stream_refused(sandbox: Sandbox) -> None:
    refused(sandbox, b"", DataLoss, "not a tar archive")


def test_corrupt_gzip_is_data_loss(sandbox: Sandbox) -> None:
    blob = bytearray(gzip.compress(big_tar()))
    blob[len(blob) // 2] ^= 0xFF
    reader, kind = open_layer_reader(io.BytesIO(bytes(blob)))
    assert kind == GZIP
    with pytest.raises(DataLoss):
        apply_layer(reader, sandbox.root)


def test_empty_tar_is_fine(sandbox: Sandbox) -> None:
    data = make_tar()
    result = sandbox.apply(data)
    assert result.diff_id == "sha256:" + hashlib.sha256(data).hexdigest() and result.size == 0


# -- metadata -----------------------------------------------------------------------------------


def test_metadata_applied(sandbox: Sandbox) -> None:
    data = make_tar(
        D("usr", mode=0o755, mtime=1_000_000_000),
        E("usr/su", data=b"\x7fELF", mode=0o4755, uid=0, gid=0, mtime=1_234_567_890),
        E("usr/owned", data=b"x", mode=0o640, uid=1000, gid=1001),
        D("tmp", mode=0o1777),
        S("usr/link", "su"),
        E("usr/attr", pax={"SCHILY.xattr.user.comment": "hello", "SCHILY.xattr.trusted.overlay.opaque": "y"}),
    )
    sandbox.apply(data)
    su = os.lstat(sandbox.root / "usr" / "su")
    assert stat.S_IMODE(su.st_mode) == 0o4755 and su.st_mtime == 1_234_567_890
    assert stat.S_IMODE(os.lstat(sandbox.root / "tmp").st_mode) == 0o1777
    assert os.lstat(sandbox.root / "usr").st_mtime == 1_000_000_000  # set after its children
    assert os.readlink(sandbox.root / "usr" / "link") == "su"
    assert os.lstat(sandbox.root / "usr" / "link").st_mtime == 1_600_000_000
    assert os.getxattr(sandbox.root / "usr" / "attr", "user.comment") == b"hello"
    if os.geteuid() == 0:
        owned = os.lstat(sandbox.root / "usr" / "owned")
        assert (owned.st_uid, owned.st_gid) == (1000, 1001)
        assert "trusted.overlay.opaque" not in os.listxattr(sandbox.root / "usr" / "attr")


def test_binary_xattr_round_trip(sandbox: Sandbox) -> None:
    src = sandbox.base / "src"
    src.mkdir()
    (src / "f").write_bytes(b"data")
    os.setxattr(src / "f", "user.bin", b"\x00\xff\x01binary\x80")
    out = io.BytesIO()
    write_layer_from_dir(src, out)
    sandbox.apply(out.getvalue())
    assert os.getxattr(sandbox.root / "f", "user.bin") == b"\x00\xff\x01binary\x80"


def test_long_and_non_utf8_names(sandbox: Sandbox) -> None:
    long = "/".join(["d" * 60] * 5) + "/" + "f" * 200
    odd = os.fsdecode(b"caf\xe9-latin1")
    sandbox.apply(make_tar(E(long, data=b"long"), E(odd, data=b"odd")))
    assert (sandbox.root / long).read_bytes() == b"long"
    assert (sandbox.root / odd).read_bytes() == b"odd"


def test_replacing_entries_within_a_layer(sandbox: Sandbox) -> None:
    sandbox.apply(
        make_tar(
            D("x"), E("x/child", data=b"c"), E("x", data=b"now a file"),
            E("y", data=b"file"), D("y"), E("y/z", data=b"z"),
            S("s", "/nowhere"), E("s", data=b"regular"),
        )
    )
    assert (sandbox.root / "x").read_bytes() == b"now a file"
    assert (sandbox.root / "y" / "z").read_bytes() == b"z"
    assert (sandbox.root / "s").read_bytes() == b"regular"


# -- whiteouts ----------------------------------------------------------------------------------


@needs_root
def test_overlay_whiteouts_created(sandbox: Sandbox) -> None:
    sandbox.apply(make_tar(D("etc"), E("etc/.wh.motd"), E("var/.wh..wh..opq"), E(".wh..wh..plnk")))
    st = os.lstat(sandbox.root / "etc" / "motd")
    assert stat.S_ISCHR(st.st_mode) and st.st_rdev == 0
    assert os.getxattr(sandbox.root / "var", OVERLAY_OPAQUE_XATTR) == b"y"
    assert sorted(os.listdir(sandbox.root)) == ["etc", "var"]


@needs_root
def test_whiteout_never_hides_own_layer(sandbox: Sandbox) -> None:
    # Same layer: "a" then ".wh.a" keeps a; ".wh.d" then "d/" gives a fresh, opaque d.
    sandbox.apply(make_tar(E("a", data=b"mine"), E(".wh.a"), E(".wh.d"), D("d"), E("d/new", data=b"n")))
    assert (sandbox.root / "a").read_bytes() == b"mine"
    assert os.getxattr(sandbox.root / "d", OVERLAY_OPAQUE_XATTR) == b"y"
    assert os.listdir(sandbox.root / "d") == ["new"]


@needs_root
def test_whiteout_spares_implicit_directories_of_own_layer(sandbox: Sandbox) -> None:
    sandbox.apply(make_tar(E("d/x", data=b"x"), E(".wh.d")))
    assert (sandbox.root / "d" / "x").read_bytes() == b"x"


def test_flattened_opaque_keeps_own_entries_below_implicit_dirs(sandbox: Sandbox) -> None:
    sandbox.apply(make_tar(E("opq/sub/old", data=b"o"), E("opq/gone", data=b"g")), overlay_whiteouts=False)
    sandbox.apply(make_tar(E("opq/sub/new", data=b"n"), E("opq/.wh..wh..opq")), overlay_whiteouts=False)
    assert os.listdir(sandbox.root / "opq") == ["sub"]
    assert os.listdir(sandbox.root / "opq" / "sub") == ["new"]


def test_flattened_whiteouts_delete(sandbox: Sandbox) -> None:
    lower = make_tar(
        E("keep", data=b"k"), E("gone", data=b"g"), D("dir"), E("dir/old", data=b"o"),
        D("opq"), E("opq/old", data=b"o"), D("opq/sub"), E("opq/sub/old", data=b"o"),
    )
    upper = make_tar(
        E(".wh.gone"), E(".wh.dir"), E(".wh.never-existed"), D("opq"), E("opq/new", data=b"n"),
        D("opq/sub"), E("opq/.wh..wh..opq"), E("missing/.wh.x"),
    )
    sandbox.apply(lower, overlay_whiteouts=False)
    sandbox.apply(upper, overlay_whiteouts=False)
    assert sorted(os.listdir(sandbox.root)) == ["keep", "opq"]
    assert sorted(os.listdir(sandbox.root / "opq")) == ["new", "sub"]
    assert os.listdir(sandbox.root / "opq" / "sub") == []


@needs_root
def test_whiteouts_round_trip_through_upper(sandbox: Sandbox) -> None:
    layer = make_tar(
        D("etc"), E("etc/.wh.motd"), E("etc/new.conf", data=b"conf"),
        D("var", mode=0o750), E("var/.wh..wh..opq"), E("var/fresh", data=b"f"),
        E(".wh.tmp"),
    )
    sandbox.apply(layer)
    out = io.BytesIO()
    diff_id = write_layer_from_upper(sandbox.root, out)
    assert diff_id == "sha256:" + hashlib.sha256(out.getvalue()).hexdigest()
    got = entries_of(out.getvalue())
    assert sorted(got) == sorted(
        ["etc", "etc/.wh.motd", "etc/new.conf", "var", "var/.wh..wh..opq", "var/fresh", ".wh.tmp"]
    )
    assert got["etc/.wh.motd"].isreg() and got["etc/.wh.motd"].size == 0
    assert not any(k.startswith("SCHILY.xattr.trusted.overlay") for m in got.values() for k in m.pax_headers)
    # and back again: the same tree
    again = sandbox.base / "again"
    again.mkdir()
    apply_layer(io.BytesIO(out.getvalue()), again)
    out2 = io.BytesIO()
    assert write_layer_from_upper(again, out2) == diff_id


def test_write_layer_from_dir_deterministic_with_hardlinks(sandbox: Sandbox) -> None:
    src = sandbox.base / "src"
    (src / "b" / "deep").mkdir(parents=True)
    (src / "a").write_bytes(b"a" * 10000)
    os.link(src / "a", src / "b" / "a-link")
    os.symlink("../a", src / "b" / "sym")
    os.mkfifo(src / "fifo")
    (src / "b" / "deep" / "z").write_text("z")
    for path in [src / "a", src / "b" / "deep" / "z"]:
        os.utime(path, (1_500_000_000.7, 1_500_000_000.7))
    one, two = io.BytesIO(), io.BytesIO()
    d1 = write_layer_from_dir(src, one)
    d2 = write_layer_from_dir(src, two)
    assert d1 == d2 and one.getvalue() == two.getvalue()
    assert d1 == "sha256:" + hashlib.sha256(one.getvalue()).hexdigest()
    with tarfile.open(fileobj=io.BytesIO(one.getvalue())) as tf:
        members = tf.getmembers()
    names = [m.name for m in members]
    assert names == ["a", "b", "b/a-link", "b/deep", "b/deep/z", "b/sym", "fifo"]
    link = members[2]
    assert link.islnk() and link.linkname == "a"
    assert members[0].mtime == 1_500_000_000 and members[0].uname == ""
    result = apply_layer(io.BytesIO(one.getvalue()), sandbox.root)
    assert result.diff_id == d1 and result.size == 10001
    assert os.stat(sandbox.root / "b" / "a-link").st_ino == os.stat(sandbox.root / "a").st_ino


# -- digests and compression ----------------------------------------------------------------------


def test_diff_id_covers_whole_uncompressed_stream(sandbox: Sandbox) -> None:
    data = big_tar() + b"\0" * 4096 + b"trailing junk after the end marker"
    result = sandbox.apply(data)
    assert result.diff_id == "sha256:" + hashlib.sha256(data).hexdigest()
    assert result.size == 8000


def zstd_multiframe(data: bytes) -> bytes:
    half = len(data) // 2
    cctx = zstandard.ZstdCompressor()
    return cctx.compress(data[:half]) + cctx.compress(data[half:])


@pytest.mark.parametrize(
    ("encode", "kind"),
    [
        (lambda d: d, UNCOMPRESSED),
        (gzip.compress, GZIP),
        (lambda d: zstandard.ZstdCompressor().compress(d), ZSTD),
        (zstd_multiframe, ZSTD),
    ],
)
def test_compressed_inputs(sandbox: Sandbox, encode, kind: str) -> None:  # type: ignore[no-untyped-def]
    data = big_tar()
    blob = io.BufferedReader(io.BytesIO(encode(data)))  # type: ignore[arg-type]
    reader, detected = open_layer_reader(blob)  # type: ignore[arg-type]
    assert detected == kind
    result = apply_layer(reader, sandbox.root)
    assert result.diff_id == "sha256:" + hashlib.sha256(data).hexdigest()
    assert len((sandbox.root / "d" / "a").read_bytes()) == 5000


class _Pipe(io.RawIOBase):
    """A non-seekable, non-peekable stream (like a socket) handing out small chunks."""

    def __init__(self, data: bytes) -> None:
        self._data = memoryview(data)

    def readable(self) -> bool:
        return True

    def readinto(self, b) -> int:  # type: ignore[no-untyped-def]
        n = min(len(b), 3, len(self._data))
        b[:n] = self._data[:n]
        self._data = self._data[n:]
        return n


def test_detection_on_unseekable_stream(sandbox: Sandbox) -> None:
    data = big_tar()
    reader, kind = open_layer_reader(_Pipe(gzip.compress(data)))  # type: ignore[arg-type]
    assert kind == GZIP
    assert apply_layer(reader, sandbox.root).diff_id == "sha256:" + hashlib.sha256(data).hexdigest()


def test_gzip_writer_deterministic_and_readable() -> None:
    data = big_tar()
    blobs = []
    for _ in range(2):
        out = io.BytesIO()
        w = gzip_writer(out)
        w.write(data)
        w.close()
        assert not out.closed
        blobs.append(out.getvalue())
    assert blobs[0] == blobs[1]
    assert gzip.decompress(blobs[0]) == data
    with pytest.raises(ValueError):
        gzip_writer(io.BytesIO(), level=9)
