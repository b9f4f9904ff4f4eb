"""The ``local`` volume driver: a directory under the data root, or a filesystem mounted there.

On disk, per volume (Docker's layout)::

    <dataroot>/volumes/<name>/
        _data/        the volume's content (what containers see); a mount point when the volume
                      has mount options (type/device/o), else a plain directory
        opts.json     the options as given ({"type": "tmpfs", "device": "tmpfs", "o": "size=100m"}),
                      mode 0600 because ``o`` may carry a password (cifs)
        mounts.json   the refs that currently hold the volume mounted ({"<container id>": 1, ...})
        lock          flock serialising mount/unmount/remove of this volume across processes

Docker's options (``docker volume create -o ...``): ``type`` and ``device`` go together, ``o``
needs both; ``size`` is a quota and needs quota support, which dockyard does not have.  A volume
with options is mounted with mount(8) (``mount -t TYPE -o O DEVICE _data``) on its first ``mount``
and unmounted on its last ``unmount``.  Examples:

- tmpfs with a size: ``-o type=tmpfs -o device=tmpfs -o o=size=100m`` (content lives as long as
  some container has it mounted, as in Docker);
- a bind of a host directory: ``-o type=none -o o=bind -o device=/srv/data``;
- anything mount(8) knows: ``-o type=nfs -o o=addr=10.0.0.1,rw -o device=:/export``.

The reference count is on disk (``mounts.json`` under the flock), not in memory: every dockyard
command is its own process and containers outlive the command that started them, so the process
that unmounts (conmon's exit command) is rarely the one that mounted.  Refs form a set, so a
repeated ``mount`` with the same ref counts once and an ``unmount`` of a ref not held is a no-op;
a ref left by a crash is healed by the next ``mount`` (which re-mounts if the mount is gone, e.g.
after a reboot) and released when that container is removed.
"""

from __future__ import annotations

import builtins
import fcntl
import json
import os
import re
import shutil
import subprocess
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path

from dockyard.errors import FailedPrecondition, InvalidArgument, NotFound
from dockyard.snapshots.mount import is_mounted, unmount
from dockyard.volumes import Volume

NAME_RE = re.compile(r"^[a-zA-Z0-9][a-zA-Z0-9_.-]+$")
VALID_OPTS = ("type", "o", "device", "size")
MANDATORY_OPTS = {"device": ("type",), "type": ("device",), "o": ("device", "type")}
_PASSWORD = re.compile(r"(password=)([^,]*)")


def validate_name(name: str) -> None:
    """Docker's rule for local volume names (InvalidArgument with Docker's words)."""
    if len(name) == 1:
        raise InvalidArgument("volume name is too short, names should be at least two alphanumeric characters")
    if not NAME_RE.match(name):
        raise InvalidArgument(
            f'"{name}" includes invalid characters for a local volume name, only "[a-zA-Z0-9][a-zA-Z0-9_.-]" '
            "are allowed. If you intended to pass a host directory, use absolute path")


def validate_opts(opts: Mapping[str, str]) -> None:
    """Docker's validateOpts: known keys, the pairs that go together, no quota without support."""
    for key in opts:
        if key not in VALID_OPTS:
            raise InvalidArgument(f'invalid option: "{key}"')
    if "size" in opts:
        m = re.fullmatch(r"(\d+(?:\.\d+)?)\s*([kmgtp]?)(i?b)?", opts["size"].strip().lower())
        if not m:
            raise InvalidArgument(f"invalid size: '{opts['size']}'")
        if float(m.group(1)) > 0:
            raise InvalidArgument("quota size requested but no quota support")
    for key, required in MANDATORY_OPTS.items():
        if key in opts:
            for r in required:
                if r not in opts:
                    raise InvalidArgument(f'missing required option: "{r}"')


def mask_password(text: str) -> str:
    return _PASSWORD.sub(r"\1********", text)


class LocalDriver:
    """Volumes under ``root`` (``<dataroot>/volumes``).  See the module docstring for the layout."""

    name = "local"

    def __init__(self, root: Path) -> None:
        self.root = Path(root)

    # -- paths ---------------------------------------------------------------------------------
    def _dir(self, name: str) -> Path:
        if not NAME_RE.match(name):  # never let a name walk out of the volumes directory
            raise NotFound(f"no such volume: {name}")
        return self.root / name

    def path(self, name: str) -> Path | None:
        return self._dir(name) / "_data"

    def _opts(self, name: str) -> dict[str, str]:
        try:
            return json.loads((self._dir(name) / "opts.json").read_text())
        except FileNotFoundError:
            return {}
        except (OSError, ValueError) as exc:
            raise FailedPrecondition(f"volume {name}: unreadable options: {exc}") from exc

    @staticmethod
    def needs_mount(opts: Mapping[str, str]) -> bool:
        return bool(opts.get("type") or opts.get("device"))

    @contextmanager
    def _locked(self, name: str) -> Iterator[Path]:
        d = self._dir(name)
        if not (d / "_data").is_dir():
            raise NotFound(f"no such volume: {name}")
        fd = os.open(d / "lock", os.O_CREAT | os.O_RDWR | os.O_CLOEXEC, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            yield d
        finally:
            os.close(fd)

    # -- lifecycle -----------------------------------------------------------------------------
    def create(self, name: str, opts: Mapping[str, str]) -> Volume:
        """Make the directory and record the options; nothing is mounted yet.

        An existing directory (a volume whose record was lost) is adopted with its content, as
        Docker's local driver does.  Raises InvalidArgument for a bad name or option."""
        validate_name(name)
        validate_opts(opts)
        d = self._dir(name)
        self.root.mkdir(parents=True, exist_ok=True)
        os.chmod(self.root, 0o701)
        d.mkdir(mode=0o701, exist_ok=True)
        (d / "_data").mkdir(mode=0o755, exist_ok=True)
        tmp = d / "opts.json.tmp"
        fd = os.open(tmp, os.O_CREAT | os.O_WRONLY | os.O_TRUNC | os.O_CLOEXEC, 0o600)
        with os.fdopen(fd, "w") as f:
            json.dump(dict(opts), f)
        tmp.replace(d / "opts.json")
        return self.get(name)

    def mount(self, name: str, ref: str) -> Path:
        """Add ``ref`` and return the host path; mounts the filesystem for the first ref (or when
        the mount is gone though refs remain, e.g. after a reboot).  Raises FailedPrecondition
        with mount(8)'s reason when the mount fails (nothing is recorded then)."""
        with self._locked(name) as d:
            data = d / "_data"
            opts = self._opts(name)
            refs = self._refs(d)
            if self.needs_mount(opts) and not is_mounted(data):
                self._mount(opts, data)
            refs[ref] = 1
            self._write_refs(d, refs)
            return data

    def unmount(self, name: str, ref: str) -> None:
        """Drop ``ref``; the last one out unmounts.  Unknown volumes and refs are no-ops."""
        try:
            with self._locked(name) as d:
                refs = self._refs(d)
                refs.pop(ref, None)
                self._write_refs(d, refs)
                data = d / "_data"
                if not refs and self.needs_mount(self._opts(name)) and is_mounted(data):
                    unmount(data)
        except NotFound:
            return

    def remove(self, name: str) -> None:
        """Delete the volume and its content (the caller made sure no container uses it)."""
        try:
            with self._locked(name) as d:
                data = d / "_data"
                while is_mounted(data):
                    unmount(data, lazy=True)
                shutil.rmtree(d)
        except NotFound:
            if self._dir(name).exists():  # a half-made volume without _data
                shutil.rmtree(self._dir(name), ignore_errors=True)
                return
            raise

    # -- queries -------------------------------------------------------------------------------
    def get(self, name: str) -> Volume:
        d = self._dir(name)
        try:
            st = (d / "_data").stat()
        except FileNotFoundError:
            raise NotFound(f"no such volume: {name}") from None
        try:
            created = (d / "opts.json").stat().st_mtime
        except FileNotFoundError:
            created = st.st_ctime
        return Volume(name=name, driver=self.name, mountpoint=str(d / "_data"), options=self._opts(name),
                      created=created)

    def list(self) -> list[Volume]:
        out: list[Volume] = []
        if not self.root.is_dir():
            return out
        for d in sorted(self.root.iterdir()):
            if NAME_RE.match(d.name) and (d / "_data").is_dir():
                try:
                    out.append(self.get(d.name))
                except NotFound:
                    continue
        return out

    def capabilities(self) -> dict[str, str]:
        return {"Scope": "local"}

    def refs(self, name: str) -> builtins.list[str]:
        """The refs holding the volume mounted (for tests and diagnostics)."""
        return sorted(self._refs(self._dir(name)))

    def size(self, name: str) -> int:
        """Bytes used by the content (regular files counted once per inode, as Docker's du)."""
        return directory_size(self._dir(name) / "_data")

    # -- internals -----------------------------------------------------------------------------
    @staticmethod
    def _refs(d: Path) -> dict[str, int]:
        try:
            data = json.loads((d / "mounts.json").read_text())
        except (OSError, ValueError):
            return {}
        return {str(k): 1 for k in data} if isinstance(data, dict) else {}

    @staticmethod
    def _write_refs(d: Path, refs: dict[str, int]) -> None:
        tmp = d / "mounts.json.tmp"
        tmp.write_text(json.dumps(refs))
        tmp.replace(d / "mounts.json")

    @staticmethod
    def _mount(opts: Mapping[str, str], target: Path) -> None:
        device = opts.get("device", "")
        if not device:
            raise InvalidArgument("missing device in volume options")
        mount_bin = shutil.which("mount") or "/bin/mount"
        cmd = [mount_bin, "-t", opts.get("type") or "none"]
        if opts.get("o"):
            cmd += ["-o", opts["o"]]
        cmd += [device, str(target)]
        try:
            p = subprocess.run(cmd, capture_output=True, text=True, timeout=120, check=False)
        except (OSError, subprocess.TimeoutExpired) as exc:
            raise FailedPrecondition(f"failed to mount local volume: {exc}") from exc
        if p.returncode != 0:
            why = mask_password((p.stderr or p.stdout).strip().removeprefix("mount: "))
            raise FailedPrecondition(f"failed to mount local volume: mount {device}:{target}, "
                                     f"type {opts.get('type') or 'none'}, data {mask_password(opts.get('o', ''))!r}: "
                                     f"{why}")


def directory_size(path: Path) -> int:
    """Sum of the sizes of the files under ``path`` (hard links once; mounts below are crossed)."""
    total = 0
    seen: set[tuple[int, int]] = set()
    stack = [str(path)]
    while stack:
        top = stack.pop()
        try:
            it = os.scandir(top)
        except OSError:
            continue
        with it:
            for e in it:
                try:
                    st = e.stat(follow_symlinks=False)
                except OSError:
                    continue
                if e.is_dir(follow_symlinks=False):
                    stack.append(e.path)
                    continue
                key = (st.st_dev, st.st_ino)
                if st.st_nlink > 1:
                    if key in seen:
                        continue
                    seen.add(key)
                total += st.st_size
    return total

