"""Root filesystems for dockyard's offline base images: busybox, debian:<suite>-slim, python:3.x-slim.

dockyard cannot reach Docker Hub, so ``dockyard image bootstrap`` makes its base images from what it
*can* reach: the host's Debian packages and the Debian archive.  This module only produces the root
filesystem directories and a :class:`BaseImageSpec` (config and provenance); the image store turns a
directory, or the upper dir of an overlay, into a layer and an image.

What each builder leaves in ``dest`` (or adds to ``root``)::

    busybox (from the host's busybox-static, like docker-library/busybox's glibc variant)
      bin/busybox               the static binary; every applet of `busybox --list` is a HARDLINK to it
                                in bin/ (what `busybox --install /bin` does for the official image)
      usr/bin/env -> ../../bin/env   so `#!/usr/bin/env sh` works, as in the official image
      etc/passwd group shadow   buildroot's skeleton (root ... nobody:65534), root locked (`root:*:`)
      etc/nsswitch.conf         "hosts: files dns": static glibc resolves /etc/hosts before DNS
      etc/localtime             UTC (TZif)
      root/ (0700) tmp/ (1777) home/ (nobody) var/spool/mail (mail) var/www usr/sbin (daemon) dev/ proc/ sys/

    debian:<suite>-slim (debootstrap --variant=minbase, then what debuerreotype does for the official image)
      etc/apt/sources.list.d/debian.sources   deb822: <suite> <suite>-updates (+ <suite>-security)
      etc/apt/apt.conf.d/docker-{clean,gzip-indexes,autoremove-suggests,no-languages}
      etc/dpkg/dpkg.cfg.d/docker              slim path-exclude/path-include rules
      etc/dpkg/dpkg.cfg.d/docker-apt-speedup  force-unsafe-io
      usr/sbin/policy-rc.d                    exit 101: services never start inside `docker build`
      usr/share/doc/*/copyright               the only documentation kept; no man, info, locale files
      empty: dev/ proc/ sys/ tmp/ var/tmp/ var/lib/apt/lists/ var/cache/apt/
      absent: etc/resolv.conf etc/hostname etc/machine-id (the runtime provides them), build logs

    python (add_python, on a writable copy or overlay of the debian rootfs)
      Debian's python3, python3-pip, python3-venv, ca-certificates; usr/local/bin/python -> /usr/bin/python3;
      no usr/lib/python3.X/EXTERNALLY-MANAGED, so `pip install` as root works as in the official image.
      usr/local/share/ca-certificates/*.crt  the HOST's local CAs (its /usr/local/share/ca-certificates),
                                appended to etc/ssl/certs/ca-certificates.crt as update-ca-certificates
                                does: like a corporate base image, builds (pip install) work behind the
                                same TLS-intercepting proxy the host works behind (add_host_ca_certificates)

Mounts: every command that runs inside a root runs in a private mount namespace (``unshare --mount``)
where /dev, /proc and /sys are bind-mounted; those mounts die with the namespace, so a failing or
killed build leaves nothing mounted on the host and /dev of the image stays empty.

Errors: :class:`PermissionDenied` when not root; :class:`FailedPrecondition` for a non-empty ``dest`` or a
``root`` that is not a Debian system; :class:`Unavailable` when a tool is missing or a step fails (the
message ends with the last lines of its output).  On failure ``dest`` is left for the caller to remove.
"""

from __future__ import annotations

import datetime
import email.utils
import fnmatch
import os
import re
import shutil
import signal
import stat
import struct
import subprocess
import time
import urllib.parse
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from dockyard.errors import FailedPrecondition, InvalidArgument, PermissionDenied, Unavailable

Log = Callable[[str], None]

DEFAULT_MIRROR = "http://deb.debian.org/debian"
DEFAULT_SECURITY_MIRROR = "http://deb.debian.org/debian-security"
DEBIAN_KEYRING = "/usr/share/keyrings/debian-archive-keyring.gpg"
PATH_ENV = "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
PYTHON_PACKAGES = ("python3", "python3-pip", "python3-venv", "ca-certificates")
_APT_TIMEOUT = 1800.0
_UNSTABLE_SUITES = {"sid", "unstable", "experimental"}
_SUITE = re.compile(r"^[a-z0-9][a-z0-9.-]*$")


@dataclass
class BaseImageSpec:
    """What the image store needs, besides the layer, to write the image config and history."""

    reference: str  # "busybox:latest", "debian:bookworm-slim", "python:3.11-slim"
    cmd: list[str]
    env: list[str]
    labels: dict[str, str]  # org.opencontainers.image.* saying where the rootfs came from
    parent: str | None  # the image this one is layered on (python -> debian), None from scratch
    history_comment: str  # created_by of the history entry
    # Newest timestamp of the inputs (package build / archive Release date); file mtimes were clamped
    # to it, so it is a good "created" for the config and history when builds should be reproducible.
    source_date_epoch: int | None = field(default=None)


# ---------------------------------------------------------------------------------------------- busybox

# buildroot's system/skeleton, which the official busybox image copies.
_BUSYBOX_PASSWD = [
    ("root", 0, 0, "root", "/root", "/bin/sh"),
    ("daemon", 1, 1, "daemon", "/usr/sbin", "/bin/false"),
    ("bin", 2, 2, "bin", "/bin", "/bin/false"),
    ("sys", 3, 3, "sys", "/dev", "/bin/false"),
    ("sync", 4, 100, "sync", "/bin", "/bin/sync"),
    ("mail", 8, 8, "mail", "/var/spool/mail", "/bin/false"),
    ("www-data", 33, 33, "www-data", "/var/www", "/bin/false"),
    ("operator", 37, 37, "Operator", "/var", "/bin/false"),
    ("nobody", 65534, 65534, "nobody", "/home", "/bin/false"),
]
_BUSYBOX_GROUPS = [
    ("root", 0, ""), ("daemon", 1, ""), ("bin", 2, ""), ("sys", 3, ""), ("adm", 4, ""), ("tty", 5, ""),
    ("disk", 6, ""), ("lp", 7, ""), ("mail", 8, ""), ("kmem", 9, ""), ("wheel", 10, "root"),
    ("cdrom", 11, ""), ("dialout", 18, ""), ("floppy", 19, ""), ("video", 28, ""), ("audio", 29, ""),
    ("tape", 32, ""), ("www-data", 33, ""), ("operator", 37, ""), ("utmp", 43, ""), ("plugdev", 46, ""),
    ("staff", 50, ""), ("lock", 54, ""), ("netdev", 82, ""), ("users", 100, ""), ("nobody", 65534, ""),
]
# Static glibc has the files and dns backends built in; without this file its default order would ask
# DNS first, so names the runtime writes into /etc/hosts (links, --add-host) could be shadowed.
_BUSYBOX_NSSWITCH = """\
# dockyard busybox image: static glibc knows the files and dns backends only
passwd:         files
group:          files
shadow:         files
hosts:          files dns
networks:       files
protocols:      files
services:       files
"""


def _utc_tzif() -> bytes:
    """The zoneinfo file for UTC (no transitions, one type "UTC"), so the image needs no tzdata."""
    header = b"TZif2" + bytes(15) + struct.pack(">6l", 0, 0, 0, 0, 1, 4)
    block = header + struct.pack(">lBB", 0, 0, 0) + b"UTC\0"
    return block + block + b"\nUTC0\n"


def build_busybox_rootfs(dest: Path, *, log: Log | None = None) -> BaseImageSpec:
    """Fill the empty directory ``dest`` with a busybox root filesystem made from busybox-static.

    Applets are hardlinks in /bin, like the official image (``busybox --install /bin``), not the
    symlinks at `busybox --list-full` paths: every applet is then found by a plain PATH lookup, the
    layer stores the binary once, and ``ls /bin`` looks like Docker Hub's busybox.  The layer tar must
    therefore keep hardlinks.  Needs root only to give the home directories their owners.
    """
    with _umask(0o022):
        return _build_busybox(dest, log or _quiet)


def _build_busybox(dest: Path, say: Log) -> BaseImageSpec:
    binary, package, version = _host_busybox()
    _prepare_dest(dest)
    epoch = int(binary.stat().st_mtime)
    say(f"busybox: {package} {version} ({binary})")

    bindir = dest / "bin"
    bindir.mkdir(mode=0o755)
    shutil.copyfile(binary, bindir / "busybox")
    os.chmod(bindir / "busybox", 0o755)
    applets = _run([str(binary), "--list"], what="busybox --list").stdout.split()
    for applet in applets:
        if applet != "busybox" and "/" not in applet:
            os.link(bindir / "busybox", bindir / applet)
    (dest / "usr/bin").mkdir(parents=True)
    os.symlink("../../bin/env", dest / "usr/bin/env")
    say(f"busybox: {len(applets)} applets hardlinked in /bin")

    etc = dest / "etc"
    etc.mkdir(mode=0o755)
    _write(etc / "passwd", "".join(f"{n}:x:{u}:{g}:{c}:{h}:{s}\n" for n, u, g, c, h, s in _BUSYBOX_PASSWD))
    _write(etc / "group", "".join(f"{n}:x:{g}:{m}\n" for n, g, m in _BUSYBOX_GROUPS))
    # root has no password but is locked ("*", not ""): CVE-2019-5021.
    _write(etc / "shadow", "".join(f"{n}:*:::::::\n" for n, *_ in _BUSYBOX_PASSWD), mode=0o600)
    _write(etc / "nsswitch.conf", _BUSYBOX_NSSWITCH)
    (etc / "localtime").write_bytes(_utc_tzif())
    os.chmod(etc / "localtime", 0o644)

    # buildroot's device_table.txt (modes), then the official image's loop that creates each missing
    # home directory owned by its user (so /usr/sbin is daemon's and /home is nobody's, as upstream).
    for path, mode in (("dev", 0o755), ("tmp", 0o1777), ("root", 0o700), ("var/www", 0o755)):
        (dest / path).mkdir(parents=True, exist_ok=True)
        os.chmod(dest / path, mode)
    for _, uid, gid, _, home, _ in _BUSYBOX_PASSWD:
        target = dest / home.lstrip("/")
        if not target.is_dir():
            target.mkdir(parents=True)
            os.chmod(target, 0o755)
            if os.geteuid() == 0:
                os.chown(target, uid, gid)
    for path in ("proc", "sys"):
        (dest / path).mkdir(mode=0o555)
        os.chmod(dest / path, 0o555)
    os.chmod(dest, 0o755)
    _clamp_mtimes(dest, epoch)

    return BaseImageSpec(
        reference="busybox:latest",
        cmd=["sh"],
        env=[PATH_ENV],
        labels=_labels(
            title="busybox",
            description=f"BusyBox {_upstream_version(version)} (static) with every applet in /bin",
            version=version,
            source=f"debian package {package} {version} ({_host_of(host_apt_mirror())})",
            vendor="Debian",
            created=epoch,
            licenses="GPL-2.0-only",
        ),
        parent=None,
        history_comment=f"dockyard bootstrap: {package} {version}, {len(applets)} applets hardlinked in /bin",
        source_date_epoch=epoch,
    )


def _host_busybox() -> tuple[Path, str, str]:
    """The host's static busybox: (path, package, version).  The dynamic ``busybox`` package would
    need the host's libc inside the image, so only busybox-static is accepted."""
    package = "busybox-static"
    try:
        version = _dpkg_query_version(package)
    except Unavailable:
        raise Unavailable(f"{package} is not installed on this host (apt-get install {package})") from None
    files = _run(["dpkg-query", "-L", package], what=f"dpkg-query -L {package}").stdout.split("\n")
    for candidate in files:
        if candidate.endswith("bin/busybox") and os.path.isfile(candidate):
            return Path(candidate), package, version
    raise Unavailable(f"{package} {version} is installed but its busybox binary is missing")


# ----------------------------------------------------------------------------------------------- debian

# debuerreotype's .slimify-excludes/.slimify-includes: what the official -slim images leave out.
SLIM_EXCLUDES = (
    "/usr/share/doc/*",
    "/usr/share/doc/kde/HTML/*/*",
    "/usr/share/gnome/help/*/*",
    "/usr/share/info/*",
    "/usr/share/linda/*",
    "/usr/share/lintian/overrides/*",
    "/usr/share/locale/*",
    "/usr/share/man/*",
    "/usr/share/omf/*/*-*.emf",
)
SLIM_INCLUDES = (
    "/usr/share/doc/*/copyright",
    "/usr/share/doc/kde/HTML/C/*",
    "/usr/share/gnome/help/*/C/*",
    "/usr/share/locale/all_languages",
    "/usr/share/locale/currency/*",
    "/usr/share/locale/l10n/*",
    "/usr/share/locale/languages",
    "/usr/share/locale/locale.alias",
    "/usr/share/omf/*/*-C.emf",
)

_APT_CLEAN = ('"rm -f /var/cache/apt/archives/*.deb /var/cache/apt/archives/partial/*.deb '
              '/var/cache/apt/*.bin || true";')
# The apt/dpkg settings of the official images (debuerreotype-minimizing-config), each with its reason.
_MINIMIZING_FILES: dict[str, tuple[int, str]] = {
    "usr/sbin/policy-rc.d": (0o755, """\
#!/bin/sh
# Containers have no init system, and services started by a package's maintainer script during an
# image build would die with the build step (or hang it). Refuse them all (invoke-rc.d honours 101).
exit 101
"""),
    "etc/dpkg/dpkg.cfg.d/docker-apt-speedup": (0o644, """\
# Package installs in an image build are thrown away on failure anyway, so skip dpkg's fsync calls.
force-unsafe-io
"""),
    "etc/apt/apt.conf.d/docker-clean": (0o644, f"""\
# Each image build step becomes a layer, so downloaded .deb files and apt's binary caches would be
# kept forever: delete them after every dpkg run and every update (an "apt-get clean" that cannot
# deadlock on apt's own lock), and do not write the caches at all.
DPkg::Post-Invoke {{ {_APT_CLEAN} }};
APT::Update::Post-Invoke {{ {_APT_CLEAN} }};

Dir::Cache::pkgcache "";
Dir::Cache::srcpkgcache "";
"""),
    "etc/apt/apt.conf.d/docker-gzip-indexes": (0o644, """\
# Keep the package lists compressed on disk: "apt-get update" layers whose lists are never deleted
# stay several times smaller.
Acquire::GzipIndexes "true";
"""),
    "etc/apt/apt.conf.d/docker-autoremove-suggests": (0o644, """\
# "install build deps; build; purge --auto-remove build deps" must really remove what it added,
# even packages that something else merely suggests.
Apt::AutoRemove::SuggestsImportant "false";
"""),
    "etc/apt/apt.conf.d/docker-no-languages": (0o644, """\
# Do not download translated package descriptions: they cost time and space in every update.
# Delete this file and run "apt-get update" if you want them.
Acquire::Languages "none";
"""),
}


def build_debian_rootfs(dest: Path, suite: str = "bookworm", mirror: str | None = None,
                        *, log: Log | None = None) -> BaseImageSpec:
    """Debootstrap ``suite`` (minbase) into the empty directory ``dest`` and slim it like debian:<suite>-slim.

    Follows debuerreotype (which makes the official images): minbase, merged /usr, the apt/dpkg
    minimizing config, ``apt-get full-upgrade`` from <suite>-updates and -security, every package
    marked automatically installed, then the slim path-excludes (documentation except copyright
    files, man pages, info, locales) both applied and written to dpkg.cfg.d so later installs obey
    them.  mtimes newer than the archive's Release date are clamped to it.  Takes 1-3 minutes.
    """
    _require_root()
    mirror = (mirror or host_apt_mirror()).rstrip("/")
    if not _SUITE.match(suite):
        raise InvalidArgument(f"invalid Debian suite {suite!r}")
    scheme = urllib.parse.urlsplit(mirror).scheme
    if scheme not in ("http", "https", "file") or any(c.isspace() for c in mirror):
        raise InvalidArgument(f"invalid Debian mirror {mirror!r}: want an http(s):// or file:// URL")
    with _umask(0o022):
        return _build_debian(dest, suite, mirror, log or _quiet)


def _build_debian(dest: Path, suite: str, mirror: str, say: Log) -> BaseImageSpec:
    security = _security_mirror(mirror)
    debootstrap_version = _dpkg_query_version("debootstrap", missing="debootstrap is not installed on "
                                              "this host (apt-get install debootstrap)")
    _prepare_dest(dest)

    say(f"debootstrap {suite} (minbase) from {mirror}")
    argv = ["unshare", "--mount", "--propagation", "private", "debootstrap", "--variant=minbase",
            "--merged-usr"]
    if os.path.exists(DEBIAN_KEYRING):
        argv += [f"--keyring={DEBIAN_KEYRING}", "--force-check-gpg"]
    try:
        _run([*argv, suite, str(dest), mirror], what="debootstrap", timeout=_APT_TIMEOUT)
    except Unavailable as exc:
        log_file = dest / "debootstrap/debootstrap.log"
        detail = _tail(log_file.read_text(errors="replace")) if log_file.is_file() else ""
        raise Unavailable(f"{exc}{chr(10) + detail if detail else ''}") from exc

    _write_debian_sources(dest, suite, mirror, security)
    for rel, (mode, text) in _MINIMIZING_FILES.items():
        _write(dest / rel, text, mode=mode)

    with _host_dns(dest) as bind_resolv:
        say(f"apt-get update and full-upgrade ({suite}, {suite}-updates, {suite}-security)")
        _chroot(dest, ["apt-get", *_host_apt_options(), "update", "-qq"], bind_resolv=bind_resolv,
                what="apt-get update")
        _chroot(dest, ["apt-get", "full-upgrade", "-y", "-qq", "--no-install-recommends"],
                bind_resolv=bind_resolv, what="apt-get full-upgrade")
    # As debuerreotype: everything in minbase is essential or needed by it, so mark it all "auto"; then
    # `apt-mark showmanual` lists exactly what users install later.
    _chroot(dest, ["sh", "-c", "apt-mark showmanual | xargs -r apt-mark auto >/dev/null"], what="apt-mark")
    epoch = _apt_lists_epoch(dest)

    say("slimming: path-exclude docs (except copyright), man, info, locales")
    slimify(dest)
    say("cleaning: apt lists and caches, logs, /dev, /tmp, resolv.conf, hostname")
    _clean_after_apt(dest)
    for rel in ("etc/hostname", "etc/resolv.conf", "etc/machine-id", "etc/apt/sources.list",
                "etc/apt/apt.conf.d/01autoremove-kernels", "var/cache/ldconfig/aux-cache",
                "var/lib/systemd/catalog/database", "run/mount/utab"):
        _unlink(dest / rel)
    _rmdir_if_empty(dest / "run/mount")
    _clear_dir(dest / "dev")
    for rel in ("proc", "sys"):
        _clear_dir(dest / rel)
    if epoch is not None:
        _clamp_shadow_lastchange(dest, epoch)
    os.chown(dest, 0, 0)
    os.chmod(dest, 0o755)
    if epoch is not None:
        _clamp_mtimes(dest, epoch)

    os_release = _read_os_release(dest)
    debian_version = _read_text(dest / "etc/debian_version").strip() or os_release.get("VERSION_ID", "")
    pretty = os_release.get("PRETTY_NAME", f"Debian {suite}")
    return BaseImageSpec(
        reference=f"debian:{suite}-slim",
        cmd=["bash"],
        env=[PATH_ENV],
        labels=_labels(
            title="debian",
            description=f"{pretty}, slim: debootstrap --variant=minbase cleaned like the official image",
            version=debian_version,
            source=f"debootstrap {debootstrap_version} --variant=minbase {suite} ({_host_of(mirror)})",
            vendor="Debian",
            created=epoch,
            licenses="various (see /usr/share/doc/*/copyright)",
        ),
        parent=None,
        history_comment=f"dockyard bootstrap: debootstrap --variant=minbase {suite} {mirror}, "
                        f"full-upgrade, slimmed like debian:{suite}-slim",
        source_date_epoch=epoch,
    )


def slimify(root: Path) -> None:
    """Apply the slim excludes to ``root`` and record them in /etc/dpkg/dpkg.cfg.d/docker.

    Same semantics as debuerreotype-slimify (itself a shell rendering of dpkg's filter rules): under the
    directory of each ``dir/*`` pattern delete every file that is neither a directory, a symlink nor
    matched by an include (``*`` matches "/" as in ``find -path``), then repeatedly delete empty
    files and directories and symlinks that dangle inside ``root`` until nothing changes.
    """
    excludes, includes = sorted(set(SLIM_EXCLUDES)), sorted(set(SLIM_INCLUDES))
    # Some maintainer scripts (openjdk's) fail when /usr/share/man/manN is missing: recreate those.
    man = root / "usr/share/man"
    special = [p.name for p in man.glob("man[0-9]") if p.is_dir() and not p.is_symlink()]
    lines = ['# The "slim" variant of the Debian base image: files rarely needed in containers are left',
             "# out, and these rules keep later package installs from bringing them back.", ""]
    for pattern in excludes:
        lines.append(f"path-exclude {pattern}")
        base = root / os.path.dirname(pattern).lstrip("/")
        if not pattern.endswith("/*"):
            _unlink(root / pattern.lstrip("/"))
        elif base.is_dir() and not base.is_symlink():
            _slim_delete(root, base, includes)
    lines.append("")
    lines += [f"path-include {pattern}" for pattern in includes]
    _write(root / "etc/dpkg/dpkg.cfg.d/docker", "\n".join(lines) + "\n")
    for name in special:
        (man / name).mkdir(parents=True, exist_ok=True)


def _slim_delete(root: Path, base: Path, includes: Sequence[str]) -> None:
    def inside(path: str) -> str:
        return "/" + os.path.relpath(path, root)

    for dirpath, _dirs, files in os.walk(base, topdown=False):
        for name in files:
            path = os.path.join(dirpath, name)
            if os.path.islink(path):
                continue
            if not any(fnmatch.fnmatchcase(inside(path), pattern) for pattern in includes):
                os.unlink(path)
    while True:
        removed = 0
        for dirpath, dirs, files in os.walk(base, topdown=False):
            for name in files + dirs:
                path = os.path.join(dirpath, name)
                st = os.lstat(path)
                if stat.S_ISLNK(st.st_mode):
                    gone = not _exists_in_root(root, Path(path))
                elif stat.S_ISDIR(st.st_mode):
                    gone = not os.listdir(path)
                else:
                    gone = stat.S_ISREG(st.st_mode) and st.st_size == 0
                if gone:
                    _remove(Path(path))
                    removed += 1
        if not removed:
            return


def _exists_in_root(root: Path, path: Path) -> bool:
    """Whether ``path`` (inside ``root``) resolves to something when symlinks are read as in a chroot:
    absolute targets start again at ``root``, ".." never climbs out of it."""
    pending = [p for p in ("/" + os.path.relpath(path, root)).split("/") if p][::-1]
    current: list[str] = []
    hops = 0
    while pending:
        part = pending.pop()
        if part == ".":
            continue
        if part == "..":
            if current:
                current.pop()
            continue
        candidate = root.joinpath(*current, part)
        try:
            st = os.lstat(candidate)
        except (FileNotFoundError, NotADirectoryError):
            return False
        if stat.S_ISLNK(st.st_mode):
            hops += 1
            if hops > 40:
                return False
            target = os.readlink(candidate)
            if target.startswith("/"):
                current = []
            pending.extend([p for p in target.split("/") if p][::-1])
        else:
            current.append(part)
    return True


def _write_debian_sources(root: Path, suite: str, mirror: str, security: str) -> None:
    """deb822 sources as in the official image: the suite and its -updates from the mirror that was
    used, -security from the security archive (sid has neither)."""
    signed = f"Signed-By: {DEBIAN_KEYRING}\n" if (root / DEBIAN_KEYRING.lstrip("/")).exists() else ""
    if suite in _UNSTABLE_SUITES:
        text = f"Types: deb\nURIs: {mirror}\nSuites: {suite}\nComponents: main\n{signed}"
    else:
        text = (f"Types: deb\nURIs: {mirror}\nSuites: {suite} {suite}-updates\nComponents: main\n{signed}\n"
                f"Types: deb\nURIs: {security}\nSuites: {suite}-security\nComponents: main\n{signed}")
    _write(root / "etc/apt/sources.list.d/debian.sources", text)
    _unlink(root / "etc/apt/sources.list")


def _apt_lists_epoch(root: Path) -> int | None:
    """The newest Date of the Release files apt fetched: the point in time this rootfs represents."""
    newest: int | None = None
    for path in (root / "var/lib/apt/lists").glob("*Release"):
        for line in _read_text(path).splitlines():
            if line.startswith("Date:"):
                try:
                    when = int(email.utils.parsedate_to_datetime(line[5:].strip()).timestamp())
                except (TypeError, ValueError):
                    break
                newest = when if newest is None else max(newest, when)
                break
    return newest


def _clamp_shadow_lastchange(root: Path, epoch: int) -> None:
    """shadow's "last password change" day is the build day; clamp it to the epoch (Debian #857803)."""
    day = epoch // 86400
    for rel in ("etc/shadow", "etc/shadow-"):
        path = root / rel
        if not path.is_file():
            continue
        lines = path.read_text().splitlines(keepends=True)
        out = []
        for line in lines:
            fields = line.rstrip("\n").split(":")
            if len(fields) > 2 and fields[2].isdigit() and int(fields[2]) > day:
                fields[2] = str(day)
                line = ":".join(fields) + "\n"
            out.append(line)
        if out != lines:
            path.write_text("".join(out))  # rewrite in place: keeps mode and owner


# ----------------------------------------------------------------------------------------------- python

def add_python(root: Path, *, packages: Sequence[str] = PYTHON_PACKAGES,
               log: Log | None = None) -> BaseImageSpec:
    """Install Debian's Python into the writable Debian root ``root`` and make it feel like python:3.x-slim.

    ``root`` is typically an overlay of the debian image with an empty upper dir, so this only changes
    what must change: lists, caches, logs and byte-code it creates are removed again, /dev is never
    written (it is bind-mounted in a private namespace), resolv.conf only exists during the install.
    Debian's python is PEP 668 "externally managed"; the official image is not, so the marker is
    removed and ``pip install`` as root installs into /usr/local/lib/python3.X/dist-packages.
    """
    say = log or _quiet
    _require_root()
    if not (root / "usr/bin/apt-get").exists():
        raise FailedPrecondition(f"{root} is not a Debian root filesystem (no /usr/bin/apt-get)")
    _assert_nothing_mounted_under(root)
    os_release = _read_os_release(root)
    codename = os_release.get("VERSION_CODENAME", "bookworm")
    mirror = _mirror_of_root(root)
    started = time.time() - 1  # ctime granularity; anything changed since is already in the upper dir

    with _host_dns(root) as bind_resolv:
        try:
            say(f"apt-get install {' '.join(packages)} (from {_host_of(mirror)})")
            _chroot(root, ["apt-get", *_host_apt_options(), "update", "-qq"], bind_resolv=bind_resolv,
                    what="apt-get update")
            epoch = _apt_lists_epoch(root)
            _chroot(root, ["apt-get", "install", "-y", "-qq", "--no-install-recommends", *packages],
                    bind_resolv=bind_resolv, what="apt-get install", timeout=_APT_TIMEOUT)
        finally:
            _clean_after_apt(root)

    query = _chroot(root, ["dpkg-query", "-W", "-f", "${Package}\t${Version}\n", *packages],
                    what="dpkg-query").stdout
    versions = dict(line.split("\t", 1) for line in query.splitlines() if "\t" in line)
    python_version = _chroot(root, ["python3", "-c", "import platform; print(platform.python_version())"],
                             what="python3 --version").stdout.strip()
    minor = ".".join(python_version.split(".")[:2])
    interpreter_package = f"python{minor}"
    interpreter_version = _chroot(root, ["dpkg-query", "-W", "-f", "${Version}", interpreter_package],
                                  what="dpkg-query").stdout.strip()

    say(f"python {python_version}: removing EXTERNALLY-MANAGED, linking /usr/local/bin/python")
    for marker in (root / "usr/lib").glob("python3*/EXTERNALLY-MANAGED"):
        marker.unlink()
    local_bin = root / "usr/local/bin"
    local_bin.mkdir(parents=True, exist_ok=True)
    for name, target in (("python", "/usr/bin/python3"), ("pip", "/usr/bin/pip3")):
        # Debian's python3-pip already ships /usr/bin/pip; only fill what is missing from PATH.
        if not (root / "usr/bin" / name).exists() and (root / target.lstrip("/")).exists():
            _unlink(local_bin / name)
            os.symlink(target, local_bin / name)
    say("cleaning: __pycache__, apt lists and caches, logs, /tmp")
    for dirpath, dirs, _files in os.walk(root / "usr"):
        if "__pycache__" in dirs:
            dirs.remove("__pycache__")
            cache = os.path.join(dirpath, "__pycache__")
            if not os.path.islink(cache):
                shutil.rmtree(cache)
    add_host_ca_certificates(root, log=say)
    if epoch is not None:
        _clamp_mtimes(root, epoch, changed_since=started)

    installed = ", ".join(f"{name} {versions[name]}" for name in packages if name in versions)
    return BaseImageSpec(
        reference=f"python:{minor}-slim",
        cmd=["python3"],
        env=[PATH_ENV, "LANG=C.UTF-8", f"PYTHON_VERSION={python_version}"],
        labels=_labels(
            title="python",
            description=f"Python {python_version} from Debian {codename} (python3, pip, venv) "
                        f"on debian:{codename}-slim",
            version=interpreter_version,
            source=f"debian packages {interpreter_package} {interpreter_version}, {installed} "
                   f"({_host_of(mirror)})",
            vendor="Debian",
            created=epoch,
            licenses="PSF-2.0 AND various (see /usr/share/doc/*/copyright)",
            base_name=f"debian:{codename}-slim",
        ),
        parent=f"debian:{codename}-slim",
        history_comment=f"dockyard bootstrap: apt-get install --no-install-recommends {' '.join(packages)}",
        source_date_epoch=epoch,
    )


HOST_CA_DIR = Path("/usr/local/share/ca-certificates")


def add_host_ca_certificates(root: Path, *, source: Path = HOST_CA_DIR, log: Log | None = None) -> list[str]:
    """Make the image trust the host's local CA certificates (``source/*.crt``), as a corporate base
    image trusts the company's CAs: each is copied to the image's /usr/local/share/ca-certificates,
    linked as /etc/ssl/certs/<name>.pem and appended to /etc/ssl/certs/ca-certificates.crt (what
    ``update-ca-certificates`` does).  Only for roots that have that bundle (the ca-certificates
    package); returns the names added.  Why: behind a TLS-intercepting proxy the host trusts, a
    build's ``pip install`` fails unless the image trusts the proxy's CA too.
    """
    say = log or _quiet
    bundle = root / "etc/ssl/certs/ca-certificates.crt"
    if not source.is_dir() or not bundle.is_file() or bundle.is_symlink():
        return []
    dest = root / "usr/local/share/ca-certificates"
    dest.mkdir(parents=True, exist_ok=True)
    text = bundle.read_text(errors="replace")
    added: list[str] = []
    for cert in sorted(source.glob("*.crt")):
        try:
            pem = cert.read_text()
        except (OSError, UnicodeDecodeError):
            continue
        if "-----BEGIN CERTIFICATE-----" not in pem:
            continue
        _write(dest / cert.name, pem)
        link = root / "etc/ssl/certs" / (cert.stem + ".pem")
        if not os.path.lexists(link):
            os.symlink(f"/usr/local/share/ca-certificates/{cert.name}", link)
        if pem.strip() not in text:
            text = text.rstrip("\n") + "\n" + pem.strip() + "\n"
        added.append(cert.name)
    if added:
        bundle.write_text(text)  # in place: keeps mode and owner
        say(f"trusting the host's local CA certificates: {', '.join(added)}")
    return added


# ------------------------------------------------------------------------------------------ apt sources

@dataclass(frozen=True)
class AptSource:
    types: tuple[str, ...]
    uris: tuple[str, ...]
    suites: tuple[str, ...]
    components: tuple[str, ...]
    signed_by: str = ""


_ONE_LINE = re.compile(r"^(deb|deb-src)\s+(?:\[([^\]]*)\]\s+)?(\S+)\s+(\S+)(?:\s+(.*))?$")


def parse_apt_sources(text: str, *, deb822: bool) -> list[AptSource]:
    """Parse a sources.list (one-line) or a .sources (deb822) file; disabled stanzas are skipped."""
    sources: list[AptSource] = []
    if not deb822:
        for line in text.splitlines():
            m = _ONE_LINE.match(line.split("#", 1)[0].strip())
            if m:
                options = dict(o.split("=", 1) for o in (m.group(2) or "").split() if "=" in o)
                sources.append(AptSource((m.group(1),), (m.group(3),), (m.group(4),),
                                         tuple((m.group(5) or "").split()), options.get("signed-by", "")))
        return sources
    for stanza in re.split(r"\n\s*\n", text):
        fields: dict[str, str] = {}
        key = ""
        for line in stanza.splitlines():
            if line.startswith("#"):
                continue
            if line[:1] in (" ", "\t") and key:
                fields[key] += "\n" + line.strip()
            elif ":" in line:
                key, value = line.split(":", 1)
                key = key.strip().lower()
                fields[key] = value.strip()
        if not fields.get("uris") or fields.get("enabled", "yes").lower() == "no":
            continue
        sources.append(AptSource(tuple(fields.get("types", "").split()), tuple(fields["uris"].split()),
                                 tuple(fields.get("suites", "").split()),
                                 tuple(fields.get("components", "").split()), fields.get("signed-by", "")))
    return sources


def _host_sources(etc_apt: Path = Path("/etc/apt")) -> list[AptSource]:
    sources = parse_apt_sources(_read_text(etc_apt / "sources.list"), deb822=False)
    parts = etc_apt / "sources.list.d"
    if parts.is_dir():
        for path in sorted(parts.iterdir()):
            if path.suffix in (".list", ".sources"):
                sources += parse_apt_sources(_read_text(path), deb822=path.suffix == ".sources")
    return sources


def pick_debian_mirror(sources: Sequence[AptSource], *, security: bool = False) -> str | None:
    """The first archive URI among ``sources`` that serves Debian (security: its security archive).

    A source counts as Debian when its URI path ends in /debian (/debian-security) or it is signed
    with debian-archive-keyring; third-party repositories (nodesource, cloud SDKs) are skipped.
    """
    for source in sources:
        if "deb" not in source.types:
            continue
        is_security = any(s.endswith("-security") or "/" in s for s in source.suites)
        if is_security != security:
            continue
        for uri in source.uris:
            parsed = urllib.parse.urlsplit(uri)
            if parsed.scheme not in ("http", "https", "file"):
                continue
            tail = parsed.path.rstrip("/").rsplit("/", 1)[-1]
            wanted = "debian-security" if security else "debian"
            if tail == wanted or "debian-archive-keyring" in source.signed_by:
                return uri.rstrip("/")
    return None


def host_apt_mirror() -> str:
    """The Debian mirror the host's apt uses (e.g. http://deb.debian.org/debian), or the default one."""
    return pick_debian_mirror(_host_sources()) or DEFAULT_MIRROR


def _security_mirror(mirror: str) -> str:
    found = pick_debian_mirror(_host_sources(), security=True)
    if found:
        return found
    if mirror.endswith("/debian"):
        return mirror + "-security"
    return DEFAULT_SECURITY_MIRROR


def _mirror_of_root(root: Path) -> str:
    return pick_debian_mirror(_host_sources(root / "etc/apt")) or DEFAULT_MIRROR


def _host_apt_options() -> list[str]:
    """The host's own relaxations of Release-file freshness checks, for the build's apt-get update only.

    A host whose clock or archive mirror is off (a frozen snapshot, a VM clock ahead of the archive)
    sets Acquire::Check-Valid-Until/Check-Date to false; the same archive seen from the chroot needs
    the same.  Signatures are still checked; nothing of this is written into the image."""
    try:
        dump = _run(["apt-config", "dump"], what="apt-config dump").stdout
    except Unavailable:
        return []
    options = []
    for key in ("Acquire::Check-Valid-Until", "Acquire::Check-Date"):
        if re.search(rf'^{re.escape(key)} "(false|no|0)";$', dump, re.MULTILINE | re.IGNORECASE):
            options += ["-o", f"{key}=false"]
    return options


def _host_of(uri: str) -> str:
    return urllib.parse.urlsplit(uri).netloc or uri


# ------------------------------------------------------------------------------------- running commands

_CHROOT_SCRIPT = r"""
root=$1; resolv=$2; shift 2
for d in dev proc sys; do
    if [ -d "$root/$d" ] && [ ! -L "$root/$d" ]; then mount --rbind "/$d" "$root/$d"; fi
done
if [ -n "$resolv" ]; then mount --bind --read-only "$resolv" "$root/etc/resolv.conf"; fi
exec chroot "$root" /usr/bin/env -i "$@"
"""


def _chroot(root: Path, argv: Sequence[str], *, what: str, bind_resolv: bool = False,
            timeout: float | None = _APT_TIMEOUT) -> subprocess.CompletedProcess[str]:
    """Run ``argv`` chrooted in ``root`` with /dev, /proc and /sys bind-mounted in a private mount
    namespace; the mounts vanish when the command ends, however it ends."""
    env = [PATH_ENV, "LC_ALL=C", "HOME=/root", "DEBIAN_FRONTEND=noninteractive",
           "DEBCONF_NONINTERACTIVE_SEEN=true"]
    resolv = os.path.realpath("/etc/resolv.conf") if bind_resolv else ""
    return _run(["unshare", "--mount", "--propagation", "private", "sh", "-euc", _CHROOT_SCRIPT, "sh",
                 str(root), resolv, *env, *argv], what=what, timeout=timeout)


@contextmanager
def _host_dns(root: Path) -> Iterator[bool]:
    """Give ``root`` the host's DNS for the block.  Yields whether /etc/resolv.conf must be bind-mounted
    (it exists as a regular file, so binding changes nothing in an overlay upper); otherwise the host's
    file is copied in and removed afterwards (a symlink there is set aside and put back, since binding
    onto it would follow it out of the root)."""
    target = root / "etc/resolv.conf"
    if target.is_file() and not target.is_symlink():
        yield True
        return
    aside = target.with_name("resolv.conf.dockyard-aside")
    if target.is_symlink():
        os.rename(target, aside)
    try:
        shutil.copyfile("/etc/resolv.conf", target)
        os.chmod(target, 0o644)
        yield False
    finally:
        _unlink(target)
        if os.path.lexists(aside):
            os.rename(aside, target)


def _run(argv: Sequence[str], *, what: str, timeout: float | None = None) -> subprocess.CompletedProcess[str]:
    """Run ``argv`` to completion in its own process group, output captured.  Whatever stops the wait
    (timeout, Ctrl-C) kills the whole group, so no dpkg or http method keeps writing into the root."""
    try:
        proc = subprocess.Popen(list(argv), stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, text=True, errors="replace", start_new_session=True)
    except FileNotFoundError as exc:
        raise Unavailable(f"{what} failed: {argv[0]} is not installed") from exc
    with proc:
        try:
            stdout, stderr = proc.communicate(timeout=timeout)
        except BaseException as exc:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.communicate()
            if isinstance(exc, subprocess.TimeoutExpired):
                raise Unavailable(f"{what} timed out after {timeout:.0f}s") from exc
            raise
    if proc.returncode != 0:
        raise Unavailable(f"{what} failed (exit {proc.returncode}): {_tail(stderr) or _tail(stdout)}")
    return subprocess.CompletedProcess(list(argv), proc.returncode, stdout, stderr)


def _dpkg_query_version(package: str, *, missing: str | None = None) -> str:
    try:
        out = _run(["dpkg-query", "-W", "-f", "${Status}\t${Version}", package], what="dpkg-query").stdout
    except Unavailable as exc:
        raise Unavailable(missing or f"{package} is not installed") from exc
    status, _, version = out.partition("\t")
    if not status.endswith(" installed"):
        raise Unavailable(missing or f"{package} is not installed")
    return version


def _require_root() -> None:
    if os.geteuid() != 0:
        raise PermissionDenied("building base images needs root (debootstrap, chroot, mount namespaces)")


# ------------------------------------------------------------------------------------- filesystem tools

def _clean_after_apt(root: Path) -> None:
    """Drop what apt and dpkg leave behind: lists, caches, non-empty logs, temp files.  Empty log files
    (btmp, wtmp, lastlog, faillog) stay: login tools expect them with their modes and owners."""
    _assert_nothing_mounted_under(root)
    for rel in ("var/lib/apt/lists", "var/cache/apt", "tmp", "var/tmp"):
        _clear_dir(root / rel)
    for dirpath, _dirs, files in os.walk(root / "var/log"):
        for name in files:
            path = os.path.join(dirpath, name)
            st = os.lstat(path)
            if not stat.S_ISREG(st.st_mode) or st.st_size > 0:
                os.unlink(path)
    _unlink(root / "var/cache/ldconfig/aux-cache")


def _assert_nothing_mounted_under(root: Path) -> None:
    """Refuse to delete anything below ``root`` while something is mounted there: rm -rf would reach
    through a bind mount of /dev or /proc into the host."""
    mounted = _mounts_under(root)
    if mounted:
        raise FailedPrecondition(f"refusing to clean {root}: still mounted: {', '.join(mounted)}")


def _mounts_under(root: Path) -> list[str]:
    prefix = os.path.realpath(root).rstrip("/") + "/"
    found = []
    with open("/proc/self/mountinfo") as f:
        for line in f:
            point = re.sub(r"\\([0-7]{3})", lambda m: chr(int(m.group(1), 8)), line.split()[4])
            if point.startswith(prefix):
                found.append(point)
    return found


def _clear_dir(path: Path) -> None:
    if not path.is_dir() or path.is_symlink():
        return
    for child in path.iterdir():
        _remove(child)


def _remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path)
    else:
        path.unlink()


def _unlink(path: Path) -> None:
    if os.path.lexists(path) and not (path.is_dir() and not path.is_symlink()):
        path.unlink()


def _rmdir_if_empty(path: Path) -> None:
    try:
        path.rmdir()
    except OSError:
        pass


def _clamp_mtimes(root: Path, epoch: int, *, changed_since: float | None = None) -> None:
    """Set every mtime newer than ``epoch`` to it (debuerreotype-fixup), so rebuilding from the same
    inputs gives the same layer bytes.  Older files keep their package timestamps.  With
    ``changed_since`` only files whose ctime is that recent are touched: on an overlay, touching an
    untouched lower file would copy it up into the new layer."""
    def clamp(path: str) -> None:
        st = os.lstat(path)
        if st.st_mtime > epoch and (changed_since is None or st.st_ctime >= changed_since):
            os.utime(path, (epoch, epoch), follow_symlinks=False)

    # Bottom-up, so setting a file's time cannot be undone by a later change in its directory.
    for dirpath, dirs, files in os.walk(root, topdown=False):
        for name in [*files, *dirs]:
            clamp(os.path.join(dirpath, name))
    clamp(str(root))


@contextmanager
def _umask(mask: int) -> Iterator[None]:
    """Modes of the image must not depend on the caller's umask (debootstrap inherits it too)."""
    old = os.umask(mask)
    try:
        yield
    finally:
        os.umask(old)


def _prepare_dest(dest: Path) -> None:
    dest.mkdir(parents=True, exist_ok=True)
    if any(dest.iterdir()):
        raise FailedPrecondition(f"{dest} is not empty")


def _write(path: Path, text: str, *, mode: int = 0o644) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    os.chmod(path, mode)


def _read_text(path: Path) -> str:
    try:
        return path.read_text(errors="replace")
    except (FileNotFoundError, IsADirectoryError, NotADirectoryError):
        return ""


def _read_os_release(root: Path) -> dict[str, str]:
    text = _read_text(root / "etc/os-release") or _read_text(root / "usr/lib/os-release")
    values = {}
    for line in text.splitlines():
        key, sep, value = line.partition("=")
        if sep:
            values[key.strip()] = value.strip().strip('"')
    return values


def _labels(*, title: str, description: str, version: str, source: str, vendor: str, created: int | None,
            licenses: str, base_name: str | None = None) -> dict[str, str]:
    labels = {
        "org.opencontainers.image.title": title,
        "org.opencontainers.image.description": description,
        "org.opencontainers.image.version": version,
        "org.opencontainers.image.source": source,
        "org.opencontainers.image.vendor": vendor,
        "org.opencontainers.image.licenses": licenses,
    }
    if created is not None:
        labels["org.opencontainers.image.created"] = (
            datetime.datetime.fromtimestamp(created, datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ"))
    if base_name:
        labels["org.opencontainers.image.base.name"] = base_name
    return labels


def _upstream_version(debian_version: str) -> str:
    """1:1.35.0-4+deb12u1+b1 -> 1.35.0"""
    return debian_version.split(":", 1)[-1].rsplit("-", 1)[0]


def _tail(text: str, lines: int = 8) -> str:
    return "\n".join(line for line in text.strip().splitlines()[-lines:])


def _quiet(_: str) -> None:
    pass
