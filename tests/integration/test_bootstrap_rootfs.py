"""The base-image root filesystems really built: busybox from busybox-static, debian:bookworm-slim with
debootstrap, python on top of it through an overlay (as the image store does it).

The Debian rootfs takes a minute or more and needs the Debian archive, so it is built once per module.
Every temporary directory is removed only after checking that nothing is mounted below it.
"""

from __future__ import annotations

import os
import shutil
import stat
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from dockyard.errors import FailedPrecondition
from dockyard.images import bootstrap
from dockyard.images.bootstrap import (
    AptSource,
    BaseImageSpec,
    add_python,
    build_busybox_rootfs,
    build_debian_rootfs,
    parse_apt_sources,
    pick_debian_mirror,
)

IS_ROOT = os.geteuid() == 0
HAS_BUSYBOX = shutil.which("dpkg-query") is not None and subprocess.run(
    ["dpkg-query", "-W", "busybox-static"], check=False, capture_output=True).returncode == 0
HAS_DEBOOTSTRAP = shutil.which("debootstrap") is not None

# scripts/setup.sh installs busybox-static and debootstrap and the suite runs as root: a missing
# prerequisite is a broken machine and fails loudly instead of skipping.
assert IS_ROOT, "the bootstrap tests need root (chroot, mount namespaces)"
assert HAS_BUSYBOX and HAS_DEBOOTSTRAP, "busybox-static and debootstrap must be installed (scripts/setup.sh)"
needs_root = pytest.mark.root
needs_busybox = pytest.mark.root
needs_debootstrap = pytest.mark.root


def _mounts_under(path: Path) -> list[str]:
    prefix = os.path.realpath(path).rstrip("/") + "/"
    with open("/proc/self/mountinfo") as f:
        points = [line.split()[4].replace("\\040", " ") for line in f]
    return [p for p in points if p.startswith(prefix) or p == prefix.rstrip("/")]


def _remove_tree(path: Path) -> None:
    """rm -rf, but only once nothing is mounted below ``path`` (unmounting leftovers first)."""
    for point in sorted(_mounts_under(path), key=len, reverse=True):
        subprocess.run(["umount", "-l", point], check=False)
    assert not _mounts_under(path), f"still mounted under {path}: {_mounts_under(path)}"
    shutil.rmtree(path, ignore_errors=True)


@pytest.fixture
def scratch() -> Iterator[Path]:
    path = Path(tempfile.mkdtemp(prefix="dockyard-bootstrap-test-"))
    try:
        yield path
    finally:
        _remove_tree(path)


def _chroot(root: Path, script: str, *, bind_dev: bool = True) -> str:
    """Run ``script`` with /bin/sh chrooted in ``root``.  With ``bind_dev`` the host's /dev is bind-mounted
    in a private mount namespace: a plain chroot would let the first `>/dev/null` create a regular
    file in the image's empty /dev (apt does that), polluting the module's shared rootfs."""
    argv = ["chroot", str(root), "/bin/sh", "-c", script]
    if bind_dev:
        argv = ["unshare", "--mount", "--propagation", "private", "sh", "-ec",
                'mount --rbind /dev "$1/dev"; shift; exec "$@"', "sh", str(root), *argv]
    done = subprocess.run(argv, check=False, capture_output=True, text=True, timeout=600,
                          env={"PATH": "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
                               "HOME": "/root", "LC_ALL": "C"})
    assert done.returncode == 0, f"{script!r} failed ({done.returncode}): {done.stderr}{done.stdout}"
    return done.stdout


# ------------------------------------------------------------------------------ apt sources (pure, fast)

HOST_SOURCES = """\
Types: deb
# http://snapshot.debian.org/archive/debian/20250520T000000Z
URIs: http://deb.debian.org/debian
Suites: bookworm bookworm-updates
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg

Types: deb
URIs: http://deb.debian.org/debian-security
Suites: bookworm-security
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg
"""


def test_parse_deb822_sources_and_pick_mirrors() -> None:
    sources = parse_apt_sources(HOST_SOURCES, deb822=True)
    assert [s.uris for s in sources] == [("http://deb.debian.org/debian",),
                                         ("http://deb.debian.org/debian-security",)]
    assert sources[0].suites == ("bookworm", "bookworm-updates")
    assert pick_debian_mirror(sources) == "http://deb.debian.org/debian"
    assert pick_debian_mirror(sources, security=True) == "http://deb.debian.org/debian-security"


def test_third_party_and_disabled_sources_are_not_mirrors() -> None:
    text = ("Types: deb\nURIs: https://deb.nodesource.com/node_20.x\nSuites: nodistro\nComponents: main\n"
            "Signed-By: /usr/share/keyrings/nodesource.gpg\n\n"
            "Enabled: no\nTypes: deb\nURIs: http://disabled.example/debian\nSuites: bookworm\n")
    assert pick_debian_mirror(parse_apt_sources(text, deb822=True)) is None
    one_line = ("# deb http://commented.example/debian bookworm main\n"
                "deb [arch=amd64 signed-by=/usr/share/keyrings/debian-archive-keyring.gpg] "
                "http://mirror.example/pub/linux/ bookworm main contrib\n"
                "deb http://security.example/debian-security bookworm-security main\n")
    sources = parse_apt_sources(one_line, deb822=False)
    assert sources[0] == AptSource(("deb",), ("http://mirror.example/pub/linux/",), ("bookworm",),
                                   ("main", "contrib"), "/usr/share/keyrings/debian-archive-keyring.gpg")
    assert pick_debian_mirror(sources) == "http://mirror.example/pub/linux"
    assert pick_debian_mirror(sources, security=True) == "http://security.example/debian-security"


def test_host_apt_mirror_is_an_http_debian_archive() -> None:
    assert bootstrap.host_apt_mirror().startswith(("http://", "https://", "file:"))


# ---------------------------------------------------------------------------------------------- busybox

@pytest.mark.slow
@pytest.mark.root
@needs_root
@needs_busybox
def test_busybox_rootfs_has_every_applet_and_runs(scratch: Path) -> None:
    dest = scratch / "rootfs"
    lines: list[str] = []
    spec = build_busybox_rootfs(dest, log=lines.append)

    applets = subprocess.run(["busybox", "--list"], capture_output=True, text=True, check=True).stdout.split()
    binary = (dest / "bin/busybox").stat()
    for applet in applets:
        st = (dest / "bin" / applet).lstat()
        assert (st.st_ino, st.st_dev) == (binary.st_ino, binary.st_dev), f"/bin/{applet} is not a hardlink"
    assert binary.st_nlink == len(applets) + (0 if "busybox" in applets else 1)
    assert os.readlink(dest / "usr/bin/env") == "../../bin/env"

    out = _chroot(dest, "echo hi; ls /", bind_dev=False)
    assert out.splitlines()[0] == "hi"
    assert {"bin", "dev", "etc", "home", "proc", "root", "sys", "tmp", "usr", "var"} <= set(out.split())
    probe = _chroot(dest, "/usr/bin/env sh -c 'id -u nobody; date +%Z'", bind_dev=False)
    assert probe.split() == ["65534", "UTC"]

    passwd = (dest / "etc/passwd").read_text().splitlines()
    assert passwd[0] == "root:x:0:0:root:/root:/bin/sh"
    assert passwd[-1] == "nobody:x:65534:65534:nobody:/home:/bin/false"
    assert (dest / "etc/shadow").read_text().startswith("root:*:")
    assert "hosts:          files dns" in (dest / "etc/nsswitch.conf").read_text()
    modes = {p: stat.S_IMODE((dest / p).stat().st_mode) for p in ("root", "tmp", "etc/shadow", "var/www")}
    assert modes == {"root": 0o700, "tmp": 0o1777, "etc/shadow": 0o600, "var/www": 0o755}
    assert (dest / "home").stat().st_uid == 65534 and (dest / "var/spool/mail").stat().st_uid == 8
    assert list((dest / "dev").iterdir()) == []

    assert spec.reference == "busybox:latest" and spec.cmd == ["sh"] and spec.parent is None
    assert spec.env == ["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"]
    version = subprocess.run(["dpkg-query", "-W", "-f", "${Version}", "busybox-static"],
                             capture_output=True, text=True, check=True).stdout
    assert spec.labels["org.opencontainers.image.version"] == version
    source = spec.labels["org.opencontainers.image.source"]
    assert source.startswith(f"debian package busybox-static {version} (")
    assert spec.source_date_epoch is not None
    newest = max(os.lstat(os.path.join(d, n)).st_mtime for d, ds, fs in os.walk(dest) for n in ds + fs)
    assert newest <= spec.source_date_epoch
    assert lines, "the builder logs progress"


@needs_busybox
def test_busybox_refuses_a_non_empty_dest(scratch: Path) -> None:
    (scratch / "leftover").write_text("x")
    with pytest.raises(FailedPrecondition):
        build_busybox_rootfs(scratch)


# ----------------------------------------------------------------------------------------------- debian

@pytest.fixture(scope="module")
def debian() -> Iterator[tuple[Path, BaseImageSpec]]:
    base = Path(tempfile.mkdtemp(prefix="dockyard-bootstrap-debian-"))
    try:
        dest = base / "rootfs"
        spec = build_debian_rootfs(dest)
        assert not _mounts_under(base)
        yield dest, spec
    finally:
        _remove_tree(base)


def _files(root: Path, rel: str) -> list[str]:
    top = root / rel
    return sorted(os.path.relpath(os.path.join(d, n), top) for d, _, fs in os.walk(top) for n in fs)


@pytest.mark.slow
@pytest.mark.root
def test_debian_rootfs_is_slim(debian: tuple[Path, BaseImageSpec]) -> None:
    root, _ = debian
    docs = _files(root, "usr/share/doc")
    assert docs and all(os.path.basename(f) == "copyright" for f in docs), docs[:20]
    assert _files(root, "usr/share/man") == [] and _files(root, "usr/share/info") == []
    assert set(_files(root, "usr/share/locale")) <= {"locale.alias", "languages", "all_languages"}
    cfg = (root / "etc/dpkg/dpkg.cfg.d/docker").read_text()
    assert "path-exclude /usr/share/doc/*" in cfg and "path-include /usr/share/doc/*/copyright" in cfg
    for name in ("docker-clean", "docker-gzip-indexes", "docker-autoremove-suggests", "docker-no-languages"):
        assert (root / "etc/apt/apt.conf.d" / name).is_file()
    assert (root / "etc/dpkg/dpkg.cfg.d/docker-apt-speedup").is_file()
    assert os.access(root / "usr/sbin/policy-rc.d", os.X_OK)


@pytest.mark.slow
@pytest.mark.root
def test_debian_rootfs_is_clean(debian: tuple[Path, BaseImageSpec]) -> None:
    root, _ = debian
    for rel in ("dev", "proc", "sys", "tmp", "var/tmp", "var/lib/apt/lists", "var/cache/apt"):
        assert list((root / rel).iterdir()) == [], rel
    for rel in ("etc/resolv.conf", "etc/hostname", "etc/machine-id", "etc/apt/sources.list",
                "var/log/dpkg.log", "var/log/bootstrap.log", "var/cache/ldconfig/aux-cache"):
        assert not os.path.lexists(root / rel), rel
    assert all((root / "var/log" / f).stat().st_size == 0 for f in _files(root, "var/log"))
    sources = (root / "etc/apt/sources.list.d/debian.sources").read_text()
    mirror = bootstrap.host_apt_mirror()
    assert f"URIs: {mirror}\nSuites: bookworm bookworm-updates\n" in sources
    assert "Suites: bookworm-security" in sources
    assert _chroot(root, "apt-mark showmanual") == ""


@pytest.mark.slow
@pytest.mark.root
def test_debian_rootfs_runs_dpkg(debian: tuple[Path, BaseImageSpec]) -> None:
    root, spec = debian
    assert int(_chroot(root, "/bin/bash -c 'dpkg -l | wc -l'")) > 80
    assert spec.reference == "debian:bookworm-slim" and spec.cmd == ["bash"] and spec.parent is None
    debian_version = (root / "etc/debian_version").read_text().strip()
    assert spec.labels["org.opencontainers.image.version"] == debian_version
    assert spec.labels["org.opencontainers.image.source"].startswith("debootstrap ")
    assert spec.source_date_epoch and "org.opencontainers.image.created" in spec.labels


# ----------------------------------------------------------------------------------------------- python

@pytest.fixture(scope="module")
def python(debian: tuple[Path, BaseImageSpec]) -> Iterator[tuple[Path, Path | None, BaseImageSpec]]:
    """add_python on an overlay of the debian rootfs with an empty upper dir, as the image store mounts it
    (a cp -a copy when this kernel refuses the overlay); yields (merged root, upper dir or None, spec)."""
    lower, _ = debian
    base = Path(tempfile.mkdtemp(prefix="dockyard-bootstrap-python-"))
    try:
        upper, work, merged = base / "upper", base / "work", base / "merged"
        for d in (upper, work, merged):
            d.mkdir()
        mounted = subprocess.run(
            ["mount", "-t", "overlay", "overlay", "-o", f"lowerdir={lower},upperdir={upper},workdir={work}",
             str(merged)], check=False, capture_output=True).returncode == 0
        if not mounted:
            subprocess.run(["cp", "-a", f"{lower}/.", str(merged)], check=True)
        try:
            spec = add_python(merged)
            assert [p for p in _mounts_under(base) if p != str(merged)] == []
            yield merged, upper if mounted else None, spec
        finally:
            if mounted:
                subprocess.run(["umount", str(merged)], check=True)
    finally:
        _remove_tree(base)


@pytest.mark.slow
@pytest.mark.root
def test_python_layer_holds_only_the_install(python: tuple[Path, Path | None, BaseImageSpec]) -> None:
    root, upper, spec = python
    for rel in ("dev", "var/lib/apt/lists", "var/cache/apt"):
        assert list((root / rel).iterdir()) == [], rel
    assert not os.path.lexists(root / "etc/resolv.conf")
    assert not list((root / "usr/lib/python3.11").glob("**/__pycache__"))
    assert upper is not None, "overlay must be available on this machine"
    assert (upper / "usr/bin/python3").exists() or (upper / "usr/bin/python3").is_symlink()
    whiteouts = [os.path.relpath(os.path.join(d, n), upper) for d, ds, fs in os.walk(upper) for n in fs + ds
                 if stat.S_ISCHR(os.lstat(os.path.join(d, n)).st_mode)]
    assert whiteouts == [], f"add_python deleted files of the debian layer: {whiteouts}"
    assert not os.path.lexists(upper / "usr/bin/bash"), "an untouched debian file was copied up"
    assert spec.source_date_epoch is not None
    newer = [os.path.join(d, n) for d, ds, fs in os.walk(upper) for n in fs + ds
             if os.lstat(os.path.join(d, n)).st_mtime > spec.source_date_epoch]
    assert newer == [], newer[:10]
    for rel in ("dev", "var/lib/apt/lists", "var/cache/apt", "tmp"):
        assert not os.path.lexists(upper / rel) or list((upper / rel).iterdir()) == [], rel
    for rel in ("etc/resolv.conf", "var/log/dpkg.log", "var/log/apt/history.log"):
        assert not os.path.lexists(upper / rel), rel


@pytest.mark.slow
@pytest.mark.root
def test_python_runs_with_venv_and_pip(python: tuple[Path, Path | None, BaseImageSpec]) -> None:
    root, _, spec = python
    assert _chroot(root, "python3 -c 'import venv, ensurepip, ssl, sqlite3; print(1)'").strip() == "1"
    assert _chroot(root, "python -c 'import sys; print(sys.prefix)'").strip() == "/usr"
    assert "python 3.11" in _chroot(root, "pip --version")
    assert _chroot(root, "python3 -m venv /tmp/v && /tmp/v/bin/pip --version").startswith("pip ")
    assert not list((root / "usr/lib").glob("python3*/EXTERNALLY-MANAGED"))
    assert spec.reference == "python:3.11-slim" and spec.parent == "debian:bookworm-slim"
    assert spec.cmd == ["python3"] and "LANG=C.UTF-8" in spec.env
    version = _chroot(root, "python3 -c 'import platform; print(platform.python_version())'").strip()
    assert f"PYTHON_VERSION={version}" in spec.env
    assert spec.labels["org.opencontainers.image.base.name"] == "debian:bookworm-slim"


@pytest.mark.slow
@pytest.mark.root
def test_pip_installs_as_root_like_the_official_image(
    python: tuple[Path, Path | None, BaseImageSpec],
) -> None:
    root, _, _ = python
    pkg = root / "tmp/probe"
    (pkg / "dockyard_probe").mkdir(parents=True)
    (pkg / "dockyard_probe/__init__.py").write_text("VALUE = 42\n")
    (pkg / "setup.py").write_text("from setuptools import setup\n"
                                  "setup(name='dockyard-probe', version='1.0',"
                                  " packages=['dockyard_probe'])\n")
    try:
        _chroot(root, "cd /tmp && pip install -q --no-index --no-build-isolation /tmp/probe")
        probe = _chroot(root, "cd / && python -c 'import dockyard_probe; print(dockyard_probe.VALUE)'")
        assert probe == "42\n"
    finally:
        _chroot(root, "pip uninstall -q -y dockyard-probe; rm -rf /tmp/probe /tmp/v /root/.cache")
