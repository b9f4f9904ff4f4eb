"""``docker cp`` both ways over a fake container: a rootfs dir in tmp plus mounts beside it.

Layout (``world`` fixture)::

    tmp/rootfs/            the container's root filesystem
        etc/hostname, etc/passwd, etc/group, etc/hosts (mount point), srv/, data/ (mount point)
        escape -> <tmp>/outside        absolute symlink: must resolve *inside* the rootfs
        up -> ../../../../..           climbing symlink: must stop at the rootfs
        hostlink -> /etc/hostname, dirlink -> /srv
    tmp/volume/            mounted at /data
    tmp/hosts              a file mounted at /etc/hosts
    tmp/rovol/             mounted read-only at /ro
    tmp/outside/           a sentinel that must never change
    tmp/host/              the host side of copies

Copies into the container go through ``local_archive`` then ``extract_to`` (the CLI's
``docker cp HOSTSRC C:DST``); copies out through ``archive_from`` then ``local_extract``.
"""

from __future__ import annotations

import io
import os
import stat
import tarfile
from dataclasses import dataclass
from pathlib import Path

import pytest

from dockyard.containers.archive import (
    CopyMount,
    archive_from,
    extract_to,
    go_file_mode,
    local_archive,
    local_extract,
    stat_path,
)
from dockyard.errors import DataLoss, FailedPrecondition, InvalidArgument, NotFound

NAME = "c1"


@dataclass
class World:
    tmp: Path
    rootfs: Path
    volume: Path
    outside: Path
    host: Path
    mounts: list

    def cp_in(self, src: Path | str, dst: str, **kw) -> None:  # type: ignore[no-untyped-def]
        buf = io.BytesIO()
        local_archive(src, buf, follow_link=kw.pop("follow_link", False))
        buf.seek(0)
        extract_to(self.rootfs, self.mounts, dst, buf, container=NAME, **kw)

    def cp_out(self, src: str, dst: Path | str, follow_link: bool = False) -> None:
        buf = io.BytesIO()
        archive_from(self.rootfs, self.mounts, src, buf, follow_link=follow_link, container=NAME)
        buf.seek(0)
        local_extract(dst, buf)

    def names(self, src: str, follow_link: bool = False) -> list[str]:
        buf = io.BytesIO()
        archive_from(self.rootfs, self.mounts, src, buf, follow_link=follow_link)
        buf.seek(0)
        with tarfile.open(fileobj=buf) as tf:
            # tarfile strips a directory's trailing "/" ("/" itself becomes ""): put it back
            return [m.name + "/" if m.isdir() else m.name for m in tf]

    def untouched(self) -> None:
        assert sorted(p.name for p in self.outside.iterdir()) == ["sentinel"]
        assert (self.outside / "sentinel").read_text() == "keep"


@pytest.fixture
def world(tmp_path: Path) -> World:
    rootfs, volume, outside, host = (tmp_path / n for n in ("rootfs", "volume", "outside", "host"))
    for d in (rootfs / "etc", rootfs / "srv", rootfs / "data", rootfs / "ro", volume, outside, host,
              tmp_path / "rovol"):
        d.mkdir(parents=True)
    (rootfs / "etc" / "hostname").write_text("c1\n")
    (rootfs / "etc" / "hosts").write_text("")  # mount point
    (rootfs / "etc" / "passwd").write_text("root:x:0:0::/root:/bin/sh\napp:x:1000:1001::/home/app:/bin/sh\n")
    (rootfs / "etc" / "group").write_text("root:x:0:\napp:x:1001:\nstaff:x:50:\n")
    (rootfs / "escape").symlink_to(outside)
    (rootfs / "up").symlink_to("../../../../..")
    (rootfs / "hostlink").symlink_to("/etc/hostname")
    (rootfs / "dirlink").symlink_to("/srv")
    (volume / "v.txt").write_text("volume")
    (tmp_path / "hosts").write_text("127.0.0.1 localhost\n")
    (outside / "sentinel").write_text("keep")
    mounts = [("/data", volume), CopyMount("/etc/hosts", tmp_path / "hosts"),
              ("/ro", tmp_path / "rovol", True)]
    return World(tmp_path, rootfs, volume, outside, host, mounts)


def _host_tree(world: World) -> tuple[Path, Path]:
    """A host file and a host directory (with a subdirectory) to copy in."""
    f = world.host / "f.txt"
    f.write_text("file")
    d = world.host / "d"
    (d / "sub").mkdir(parents=True)
    (d / "x").write_text("x")
    (d / "sub" / "y").write_text("y")
    return f, d


# -- Docker's destination rules, into the container ------------------------------------------------


def test_file_into_existing_dir(world: World) -> None:
    f, _ = _host_tree(world)
    world.cp_in(f, "/srv")
    assert (world.rootfs / "srv" / "f.txt").read_text() == "file"


def test_file_to_new_name(world: World) -> None:
    f, _ = _host_tree(world)
    world.cp_in(f, "/srv/renamed.txt")
    assert (world.rootfs / "srv" / "renamed.txt").read_text() == "file"
    assert not (world.rootfs / "srv" / "f.txt").exists()


def test_file_over_existing_file(world: World) -> None:
    f, _ = _host_tree(world)
    world.cp_in(f, "/etc/hostname")
    assert (world.rootfs / "etc" / "hostname").read_text() == "file"


def test_dir_into_existing_dir(world: World) -> None:
    _, d = _host_tree(world)
    world.cp_in(d, "/srv")
    assert (world.rootfs / "srv" / "d" / "sub" / "y").read_text() == "y"


def test_dir_to_new_name(world: World) -> None:
    _, d = _host_tree(world)
    world.cp_in(d, "/newdir")
    assert (world.rootfs / "newdir" / "x").read_text() == "x"
    assert (world.rootfs / "newdir" / "sub" / "y").read_text() == "y"


def test_dir_to_new_name_with_trailing_slash(world: World) -> None:
    _, d = _host_tree(world)
    world.cp_in(d, "/newdir2/")
    assert (world.rootfs / "newdir2" / "x").read_text() == "x"


def test_dir_contents_into_existing_dir(world: World) -> None:
    _, d = _host_tree(world)
    world.cp_in(str(d) + "/.", "/srv")
    assert (world.rootfs / "srv" / "x").read_text() == "x"
    assert (world.rootfs / "srv" / "sub" / "y").read_text() == "y"
    assert not (world.rootfs / "srv" / "d").exists()


def test_dir_contents_to_new_name(world: World) -> None:
    _, d = _host_tree(world)
    world.cp_in(str(d) + "/.", "/fresh")
    assert (world.rootfs / "fresh" / "sub" / "y").read_text() == "y"


def test_file_to_missing_dir_with_trailing_slash(world: World) -> None:
    f, _ = _host_tree(world)
    with pytest.raises(NotFound, match="^no such directory$"):
        world.cp_in(f, "/nosuch/")


def test_dir_onto_existing_file(world: World) -> None:
    _, d = _host_tree(world)
    with pytest.raises(InvalidArgument, match="^cannot copy directory$"):
        world.cp_in(d, "/etc/hostname")
    assert (world.rootfs / "etc" / "hostname").read_text() == "c1\n"


def test_missing_parent(world: World) -> None:
    f, _ = _host_tree(world)
    with pytest.raises(NotFound, match="^Could not find the file /nosuch in container c1$"):
        world.cp_in(f, "/nosuch/x")


def test_dir_over_existing_non_directory(world: World) -> None:
    _, d = _host_tree(world)
    (world.rootfs / "srv" / "d").write_text("a file where the dir goes")
    with pytest.raises(FailedPrecondition, match='cannot overwrite non-directory "/srv/d" with directory'):
        world.cp_in(d, "/srv")


def test_file_over_existing_directory(world: World) -> None:
    f, _ = _host_tree(world)
    (world.rootfs / "srv" / "f.txt").mkdir()
    with pytest.raises(FailedPrecondition, match='cannot overwrite directory "/srv/f.txt" with non-directory'):
        world.cp_in(f, "/srv")


def test_symlink_destination_is_followed(world: World) -> None:
    f, _ = _host_tree(world)
    world.cp_in(f, "/dirlink")
    assert (world.rootfs / "srv" / "f.txt").read_text() == "file"
    world.cp_in(f, "/hostlink")  # a link to a file: the target is replaced, the link stays
    assert (world.rootfs / "etc" / "hostname").read_text() == "file"
    assert (world.rootfs / "hostlink").is_symlink()


@pytest.mark.root
def test_device_destination_refused(world: World) -> None:
    f, _ = _host_tree(world)
    os.mknod(world.rootfs / "null", stat.S_IFCHR | 0o666, os.makedev(1, 3))
    with pytest.raises(InvalidArgument, match='destination "c1:/null" must be a directory or a regular file'):
        world.cp_in(f, "/null")


def test_dangling_symlink_destination_creates_its_target(world: World) -> None:
    f, _ = _host_tree(world)
    (world.rootfs / "dangling").symlink_to("/srv/made-by-cp")
    world.cp_in(f, "/dangling")
    assert (world.rootfs / "srv" / "made-by-cp").read_text() == "file"


def test_gzip_archive_accepted(world: World) -> None:
    import gzip

    raw = _tar(_entry("z.txt"), data={"z.txt": b"zipped"}).getvalue()
    extract_to(world.rootfs, world.mounts, "/srv", io.BytesIO(gzip.compress(raw)), as_is=True)
    assert (world.rootfs / "srv" / "z.txt").read_bytes() == b"zipped"


def test_mount_destination_through_a_symlink(world: World) -> None:
    (world.rootfs / "run").mkdir()
    (world.rootfs / "var").mkdir()
    (world.rootfs / "var" / "run").symlink_to("/run")
    mounts = [*world.mounts, ("/var/run/sock", world.volume)]  # as runc mounts it: at /run/sock
    assert stat_path(world.rootfs, mounts, "/run/sock/v.txt").size == len("volume")
    assert stat_path(world.rootfs, mounts, "/var/run/sock/v.txt").size == len("volume")


def test_escape_symlink_resolves_inside_rootfs(world: World) -> None:
    f, d = _host_tree(world)
    inside = world.rootfs / str(world.outside).lstrip("/")
    inside.mkdir(parents=True)
    world.cp_in(f, "/escape")
    world.cp_in(d, "/up/srv")  # /up -> ../../../.. stops at the container root
    assert (inside / "f.txt").read_text() == "file"
    assert (world.rootfs / "srv" / "d" / "x").read_text() == "x"
    world.untouched()


def test_escape_symlink_with_missing_target_is_not_found(world: World) -> None:
    f, _ = _host_tree(world)
    with pytest.raises(NotFound):  # <rootfs>/<outside> does not exist: nothing written anywhere
        world.cp_in(f, "/escape/")
    world.untouched()


def test_copy_into_mount(world: World) -> None:
    f, d = _host_tree(world)
    world.cp_in(f, "/data")
    world.cp_in(d, "/data/newdir")
    assert (world.volume / "f.txt").read_text() == "file"
    assert (world.volume / "newdir" / "sub" / "y").read_text() == "y"
    assert not (world.rootfs / "data" / "f.txt").exists()


def test_read_only_mount_and_rootfs(world: World) -> None:
    f, _ = _host_tree(world)
    with pytest.raises(InvalidArgument, match="mounted volume is marked read-only"):
        world.cp_in(f, "/ro")
    with pytest.raises(InvalidArgument, match="container rootfs is marked read-only"):
        world.cp_in(f, "/srv", readonly_rootfs=True)
    world.cp_in(f, "/data", readonly_rootfs=True)  # a volume stays writable
    assert not any((world.tmp / "rovol").iterdir())


def test_file_mount_is_not_replaced(world: World) -> None:
    f, _ = _host_tree(world)
    with pytest.raises(FailedPrecondition, match="mount point /etc/hosts"):
        world.cp_in(f, "/etc/hosts")
    assert (world.tmp / "hosts").read_text() == "127.0.0.1 localhost\n"


def test_as_is_requires_existing_directory(world: World) -> None:
    f, _ = _host_tree(world)
    buf = io.BytesIO()
    local_archive(f, buf)
    buf.seek(0)
    with pytest.raises(InvalidArgument, match="^extraction point is not a directory$"):
        extract_to(world.rootfs, world.mounts, "/etc/hostname", buf, as_is=True)
    buf.seek(0)
    extract_to(world.rootfs, world.mounts, "/srv", buf, as_is=True)
    assert (world.rootfs / "srv" / "f.txt").exists()


# -- ownership ------------------------------------------------------------------------------------


def _tar(*entries: tarfile.TarInfo, data: dict[str, bytes] | None = None) -> io.BytesIO:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tf:
        for e in entries:
            payload = (data or {}).get(e.name)
            if payload is not None:
                e.size = len(payload)
            tf.addfile(e, io.BytesIO(payload) if payload is not None else None)
    buf.seek(0)
    return buf


def _entry(name: str, kind: bytes = tarfile.REGTYPE, **kw) -> tarfile.TarInfo:  # type: ignore[no-untyped-def]
    info = tarfile.TarInfo(name)
    info.type, info.mode = kind, 0o755 if kind == tarfile.DIRTYPE else 0o644
    for k, v in kw.items():
        setattr(info, k, v)
    return info


@pytest.mark.root
def test_ownership_kept_or_set_to_container_user(world: World) -> None:
    extract_to(world.rootfs, world.mounts, "/srv", _tar(_entry("o.txt", uid=1234, gid=4321)))
    st = (world.rootfs / "srv" / "o.txt").stat()
    assert (st.st_uid, st.st_gid) == (1234, 4321)
    extract_to(world.rootfs, world.mounts, "/srv", _tar(_entry("a.txt", uid=1234, gid=4321)),
               copy_uidgid=True, user="app")
    st = (world.rootfs / "srv" / "a.txt").stat()
    assert (st.st_uid, st.st_gid) == (1000, 1001)
    extract_to(world.rootfs, world.mounts, "/srv", _tar(_entry("b.txt")), copy_uidgid=True, user="app:staff")
    assert (world.rootfs / "srv" / "b.txt").stat().st_gid == 50
    with pytest.raises(NotFound, match="unable to find user nobody"):
        extract_to(world.rootfs, world.mounts, "/srv", _tar(_entry("c.txt")), copy_uidgid=True, user="nobody")


# -- out of the container -----------------------------------------------------------------------


def test_archive_naming(world: World) -> None:
    (world.rootfs / "srv" / "sub").mkdir()
    (world.rootfs / "srv" / "sub" / "z").write_text("z")
    assert world.names("/etc/hostname") == ["hostname"]
    assert world.names("/srv") == ["srv/", "srv/sub/", "srv/sub/z"]
    assert world.names("/srv/") == ["srv/", "srv/sub/", "srv/sub/z"]
    assert world.names("/srv/.") == ["./", "./sub/", "./sub/z"]
    assert world.names("/dirlink") == ["dirlink"]  # the symlink itself
    assert world.names("/dirlink/") == ["dirlink/", "dirlink/sub/", "dirlink/sub/z"]
    assert world.names("/dirlink", follow_link=True) == ["dirlink/", "dirlink/sub/", "dirlink/sub/z"]
    root = world.names("/")
    assert root[0] == "/" and "/data/v.txt" in root and "/etc/hosts" in root and "/srv/sub/z" in root


def test_archive_sees_mounts_not_the_rootfs_underneath(world: World) -> None:
    (world.rootfs / "data" / "hidden").write_text("under the mount")
    assert world.names("/data") == ["data/", "data/v.txt"]
    buf = io.BytesIO()
    archive_from(world.rootfs, world.mounts, "/etc/hosts", buf)
    buf.seek(0)
    with tarfile.open(fileobj=buf) as tf:
        assert tf.extractfile("hosts").read() == b"127.0.0.1 localhost\n"  # type: ignore[union-attr]


def test_cp_out_rules(world: World) -> None:
    out = world.host / "out"
    out.mkdir()
    world.cp_out("/etc/hostname", out)                      # file into existing dir
    world.cp_out("/etc/hostname", out / "renamed")          # file to new name
    world.cp_out("/etc", world.host / "etc-copy")            # dir to new name
    world.cp_out("/etc/.", out)                             # contents into existing dir
    world.cp_out("/data", out)                              # a mount, by its container name
    world.cp_out("/hostlink", out / "followed", follow_link=True)
    world.cp_out("/hostlink", out)
    assert (out / "hostname").read_text() == "c1\n"
    assert (out / "renamed").read_text() == "c1\n"
    assert (world.host / "etc-copy" / "passwd").exists()
    assert (world.host / "etc-copy" / "hosts").read_text() == "127.0.0.1 localhost\n"
    assert (out / "passwd").exists()
    assert (out / "data" / "v.txt").read_text() == "volume"
    assert (out / "followed").read_text() == "c1\n" and not (out / "followed").is_symlink()
    assert os.readlink(out / "hostlink") == "/etc/hostname"
    with pytest.raises(NotFound, match="^no such directory$"):
        world.cp_out("/etc/hostname", f"{world.host}/nodir/")
    with pytest.raises(InvalidArgument, match="^cannot copy directory$"):
        world.cp_out("/etc", out / "hostname")
    with pytest.raises(InvalidArgument, match="invalid output path: directory .* does not exist"):
        world.cp_out("/etc/hostname", world.host / "a" / "b" / "c")


def test_missing_source(world: World) -> None:
    with pytest.raises(NotFound, match="^Could not find the file /nosuch in container c1$"):
        world.cp_out("/nosuch", world.host)
    with pytest.raises(NotFound, match="no such file or directory"):
        local_archive(world.host / "nosuch", io.BytesIO())


def test_stat_path(world: World) -> None:
    s = stat_path(world.rootfs, world.mounts, "/etc/hostname")
    assert (s.name, s.size, s.link_target) == ("hostname", 3, "")
    assert stat.S_ISREG(s.mode)
    link = stat_path(world.rootfs, world.mounts, "/hostlink")
    assert stat.S_ISLNK(link.mode) and link.link_target == "/etc/hostname"
    assert go_file_mode(link.mode) & (1 << 27)
    esc = stat_path(world.rootfs, world.mounts, "/escape")
    assert esc.link_target == str(world.outside)  # a path inside the container, not the host's
    up = stat_path(world.rootfs, world.mounts, "/up")
    assert up.link_target == "/"
    assert stat.S_ISDIR(stat_path(world.rootfs, world.mounts, "/dirlink/").mode)
    root = stat_path(world.rootfs, world.mounts, "/")
    assert root.name == "/" and go_file_mode(root.mode) & (1 << 31)
    assert stat_path(world.rootfs, world.mounts, "/srv/.").name == "."
    assert stat_path(world.rootfs, world.mounts, "/etc/hosts").size == len("127.0.0.1 localhost\n")
    doc = stat_path(world.rootfs, world.mounts, "/data").to_docker()
    assert doc["name"] == "data" and str(doc["mtime"]).endswith("Z")
    with pytest.raises(NotFound, match="Could not find the file /nosuch in container c1"):
        stat_path(world.rootfs, world.mounts, "/nosuch", container=NAME)


# -- hostile archives -----------------------------------------------------------------------------


@pytest.mark.parametrize("entries", [
    [_entry("../evil")],
    [_entry("a/../../evil")],
    [_entry("link", tarfile.SYMTYPE, linkname="../../../../outside")],
    [_entry("hard", tarfile.LNKTYPE, linkname="../etc/passwd")],
    [_entry("hard", tarfile.LNKTYPE, linkname="/etc/passwd")],  # not a file of this archive
], ids=["dotdot", "nested-dotdot", "relative-symlink-out", "hardlink-out", "hardlink-existing"])
def test_hostile_entries_refused(world: World, entries: list[tarfile.TarInfo]) -> None:
    with pytest.raises(InvalidArgument):
        extract_to(world.rootfs, world.mounts, "/srv", _tar(*entries), as_is=True)
    with pytest.raises(InvalidArgument):
        local_extract(world.host, _tar(*entries))
    world.untouched()
    assert not (world.tmp / "evil").exists() and not (world.rootfs / "evil").exists()


def test_symlink_then_write_through_it_stays_inside(world: World) -> None:
    tar = lambda: _tar(_entry("x", tarfile.SYMTYPE, linkname=str(world.outside)),
                       _entry("x/evil"), data={"x/evil": b"gotcha"})
    extract_to(world.rootfs, world.mounts, "/srv", tar(), as_is=True)
    assert (world.rootfs / str(world.outside).lstrip("/") / "evil").read_bytes() == b"gotcha"
    dest = world.host / "dest"
    dest.mkdir()
    local_extract(dest, tar())
    assert (dest / str(world.outside).lstrip("/") / "evil").read_bytes() == b"gotcha"
    world.untouched()


def test_absolute_names_land_in_the_extraction_dir(world: World) -> None:
    extract_to(world.rootfs, world.mounts, "/srv", _tar(_entry("/etc/evil")), as_is=True)
    assert (world.rootfs / "srv" / "etc" / "evil").exists()
    assert not (world.rootfs / "etc" / "evil").exists()


def test_whiteout_names_are_plain_files(world: World) -> None:
    (world.rootfs / "srv" / "keep").write_text("keep")
    extract_to(world.rootfs, world.mounts, "/srv",
               _tar(_entry(".wh.keep"), _entry(".wh..wh..opq")), as_is=True)
    assert (world.rootfs / "srv" / "keep").read_text() == "keep"
    assert (world.rootfs / "srv" / ".wh.keep").is_file()
    assert (world.rootfs / "srv" / ".wh..wh..opq").is_file()


def test_overlay_xattrs_dropped_and_devices_refused_on_host(world: World) -> None:
    e = _entry("opaque", tarfile.DIRTYPE)
    e.pax_headers = {"SCHILY.xattr.trusted.overlay.opaque": "y"}
    extract_to(world.rootfs, world.mounts, "/srv", _tar(e), as_is=True)
    with pytest.raises(OSError):
        os.getxattr(world.rootfs / "srv" / "opaque", "trusted.overlay.opaque")
    dev = _entry("sda", tarfile.BLKTYPE, devmajor=8, devminor=0)
    with pytest.raises(InvalidArgument, match="device nodes"):
        local_extract(world.host, _tar(dev))
    assert not (world.host / "sda").exists()


def test_hard_links_within_the_archive(world: World) -> None:
    (world.host / "hl").mkdir()
    (world.host / "hl" / "a").write_text("same")
    os.link(world.host / "hl" / "a", world.host / "hl" / "b")
    world.cp_in(world.host / "hl", "/srv/renamed")  # renamed: link names are renamed too
    a, b = world.rootfs / "srv" / "renamed" / "a", world.rootfs / "srv" / "renamed" / "b"
    assert a.stat().st_ino == b.stat().st_ino


def test_corrupt_and_truncated_archives(world: World) -> None:
    extract_to(world.rootfs, world.mounts, "/srv", io.BytesIO(b""), as_is=True)  # empty: nothing to do
    with pytest.raises(DataLoss):
        extract_to(world.rootfs, world.mounts, "/srv", io.BytesIO(b"not a tar" * 100), as_is=True)
    data = _tar(_entry("big"), data={"big": b"x" * 100_000}).getvalue()
    with pytest.raises(DataLoss):
        extract_to(world.rootfs, world.mounts, "/srv", io.BytesIO(data[:20_000]), as_is=True)


def test_round_trip_keeps_modes_times_and_symlinks(world: World) -> None:
    src = world.host / "tree"
    (src / "bin").mkdir(parents=True)
    (src / "bin" / "tool").write_text("#!/bin/sh\n")
    os.chmod(src / "bin" / "tool", 0o4755)
    os.symlink("bin/tool", src / "alias")
    os.utime(src / "bin" / "tool", (1_600_000_000, 1_600_000_000))
    os.utime(src / "bin", (1_500_000_000, 1_500_000_000))
    world.cp_in(src, "/opt")
    world.cp_out("/opt", world.host / "back")
    for base in (world.rootfs / "opt", world.host / "back"):
        assert stat.S_IMODE((base / "bin" / "tool").stat().st_mode) == 0o4755
        assert (base / "bin" / "tool").stat().st_mtime == 1_600_000_000
        assert (base / "bin").stat().st_mtime == 1_500_000_000
        assert os.readlink(base / "alias") == "bin/tool"
