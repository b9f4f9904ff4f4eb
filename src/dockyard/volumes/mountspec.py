"""``-v/--volume`` and ``--mount`` values as typed :class:`MountSpec` values, with Docker's rules and words.

Pure: no filesystem access except where Docker's daemon checks the host (``validate`` with
``check_bind_source``).  The CLI and the Engine API (``HostConfig.Binds`` is the ``-v`` syntax)
share these parsers.

``-v`` (moby's linuxParser.ParseMountRaw)::

    /path                        anonymous volume at /path
    NAME:/path[:MODE]            named volume (created on first use, local unless --volume-driver)
    /host/path:/path[:MODE]      bind mount (a missing host directory is created, as Docker does)

MODE is a comma list with at most one of each: ``ro``/``rw``, ``z``/``Z`` (SELinux labels:
accepted, no effect here), a propagation (``rprivate``, ``shared``, ...), ``nocopy``, a
consistency (``consistent``, ``cached``, ``delegated``: accepted, no effect).

``--mount`` (docker/cli opts/mount.go): ``type=volume|bind|tmpfs`` (default volume),
``source|src``, ``target|dst|destination``, ``readonly|ro[=bool]``, ``volume-driver``,
``volume-opt=k=v``, ``volume-label=k=v``, ``volume-nocopy[=bool]``, ``bind-propagation``,
``bind-nonrecursive[=bool]``, ``tmpfs-size``, ``tmpfs-mode`` (octal), ``consistency``.
"""

from __future__ import annotations

import csv
import os
import posixpath
import re
from collections.abc import Sequence

from dockyard.containers.model import MountSpec
from dockyard.errors import InvalidArgument

RW_MODES = {"ro", "rw"}
LABEL_MODES = {"z", "Z"}
PROPAGATIONS = ("private", "rprivate", "slave", "rslave", "shared", "rshared")
COPY_MODES = {"nocopy"}
CONSISTENCY = {"consistent", "cached", "delegated", "default"}
_TRUE = {"1", "t", "T", "TRUE", "true", "True"}
_FALSE = {"0", "f", "F", "FALSE", "false", "False"}


def _go_bool(value: str) -> bool:
    if value in _TRUE:
        return True
    if value in _FALSE:
        return False
    raise ValueError(value)


def valid_mode(mode: str) -> bool:
    """Docker's linuxValidMountMode: known words, at most one of each kind."""
    if mode == "":
        return True
    counts = {"rw": 0, "label": 0, "prop": 0, "copy": 0, "cons": 0}
    for o in mode.split(","):
        if o in RW_MODES:
            counts["rw"] += 1
        elif o in LABEL_MODES:
            counts["label"] += 1
        elif o in PROPAGATIONS:
            counts["prop"] += 1
        elif o in COPY_MODES:
            counts["copy"] += 1
        elif o in CONSISTENCY:
            counts["cons"] += 1
        else:
            return False
    return all(n <= 1 for n in counts.values())


def _invalid_spec(raw: str) -> InvalidArgument:
    return InvalidArgument(f"invalid volume specification: '{raw}'")


def parse_volume(raw: str, volume_driver: str = "") -> MountSpec:
    """One ``-v`` value.  Raises InvalidArgument with Docker's message."""
    arr = raw.split(":", 3)
    if arr[0] == "":
        raise _invalid_spec(raw)
    source, mode = "", ""
    if len(arr) == 1:
        target = arr[0]
    elif len(arr) == 2:
        if valid_mode(arr[1]):
            raise _invalid_spec(raw)  # "/foo:rw": a destination cannot carry a mode alone
        source, target = arr
    elif len(arr) == 3:
        source, target, mode = arr
    else:
        raise _invalid_spec(raw)
    if not valid_mode(mode):
        raise InvalidArgument(f"invalid mode: {mode}")
    words = mode.split(",") if mode else []
    kind = "bind" if source.startswith("/") else "volume"
    m = MountSpec(type=kind, target=target, source=source, readonly="ro" in words, raw=raw, mode=mode)
    m.options = [w for w in words if w in PROPAGATIONS]
    if kind == "volume":
        m.name = source
        m.anonymous = source == ""
        m.nocopy = "nocopy" in words
        m.driver = volume_driver
    else:
        m.source = posixpath.normpath(source)
        m.create_source = True
    try:
        validate(m, check_bind_source=False)
    except InvalidArgument as exc:
        raise InvalidArgument(f"invalid volume specification: '{raw}': {exc}") from None
    return m


def _flag_error(value: str, why: str) -> InvalidArgument:
    return InvalidArgument(f'invalid argument "{value}" for "--mount" flag: {why}')


def _kv(value: str) -> tuple[str, str] | None:
    k, _, v = value.partition("=")
    return (k, v) if k else None


def parse_mount(value: str) -> MountSpec:
    """One ``--mount`` value (CSV of key=value).  Raises InvalidArgument as the docker CLI words it."""
    try:
        fields = next(csv.reader([value]))
    except (csv.Error, StopIteration):
        raise _flag_error(value, "invalid CSV") from None
    kind, source, target, readonly = "volume", "", "", False
    vol: dict | None = None
    bind: dict | None = None
    tmpfs: dict | None = None

    def volume() -> dict:
        nonlocal vol
        vol = vol if vol is not None else {"driver": "", "opts": {}, "labels": {}, "nocopy": False}
        return vol

    def bindo() -> dict:
        nonlocal bind
        bind = bind if bind is not None else {"propagation": "", "nonrecursive": False}
        return bind

    def tmpfso() -> dict:
        nonlocal tmpfs
        tmpfs = tmpfs if tmpfs is not None else {"size": 0, "mode": None}
        return tmpfs

    for field_ in fields:
        key, eq, val = field_.partition("=")
        key = key.lower()
        if not eq:
            if key in ("readonly", "ro"):
                readonly = True
            elif key == "volume-nocopy":
                volume()["nocopy"] = True
            elif key == "bind-nonrecursive":
                bindo()["nonrecursive"] = True
            else:
                raise _flag_error(value, f"invalid field '{field_}' must be a key=value pair")
            continue
        try:
            if key == "type":
                kind = val.lower()
            elif key in ("source", "src"):
                source = os.path.abspath(val) if val == "." or val.startswith("./") else val
            elif key in ("target", "dst", "destination"):
                target = val
            elif key in ("readonly", "ro"):
                readonly = _go_bool(val)
            elif key == "consistency":
                pass
            elif key == "bind-propagation":
                bindo()["propagation"] = val.lower()
            elif key == "bind-nonrecursive":
                bindo()["nonrecursive"] = _go_bool(val)
            elif key == "volume-nocopy":
                try:
                    volume()["nocopy"] = _go_bool(val)
                except ValueError:
                    raise _flag_error(value, f"invalid value for volume-nocopy: {val}") from None
            elif key == "volume-label":
                kv = _kv(val)
                if kv:
                    volume()["labels"][kv[0]] = kv[1]
            elif key == "volume-driver":
                volume()["driver"] = val
            elif key == "volume-opt":
                kv = _kv(val)
                if kv:
                    volume()["opts"][kv[0]] = kv[1]
            elif key == "tmpfs-size":
                tmpfso()["size"] = _ram_in_bytes(val)
            elif key == "tmpfs-mode":
                tmpfso()["mode"] = int(val, 8)
            else:
                raise _flag_error(value, f"unexpected key '{key}' in '{field_}'")
        except ValueError:
            raise _flag_error(value, f"invalid value for {key}: {val}") from None
    if not kind:
        raise _flag_error(value, "type is required")
    if not target:
        raise _flag_error(value, "target is required")
    for opts, word in ((vol, "volume"), (bind, "bind"), (tmpfs, "tmpfs")):
        if opts is not None and kind != word:
            raise _flag_error(value, f"cannot mix '{word}-*' options with mount type '{kind}'")
    m = MountSpec(type=kind, target=target, source=source, readonly=readonly)
    if kind == "volume":
        m.name = source
        m.anonymous = source == ""
        if vol:
            m.driver, m.driver_opts, m.labels, m.nocopy = vol["driver"], vol["opts"], vol["labels"], vol["nocopy"]
    elif kind == "bind":
        if bind and bind["propagation"]:
            m.options.append(bind["propagation"])
        if bind and bind["nonrecursive"]:
            m.options.append("bind")
    elif kind == "tmpfs" and tmpfs:
        m.options = tmpfs_options(tmpfs["size"], tmpfs["mode"])
    return m


def _ram_in_bytes(value: str) -> int:
    m = re.fullmatch(r"(\d+(?:\.\d+)?)\s*([kmgtp]?)(i?b)?", value.strip().lower())
    if not m:
        raise ValueError(value)
    units = {"": 1, "k": 1 << 10, "m": 1 << 20, "g": 1 << 30, "t": 1 << 40, "p": 1 << 50}
    return int(float(m.group(1)) * units[m.group(2)])


def tmpfs_options(size: int, mode: int | None) -> list[str]:
    """Docker's ConvertTmpfsOptions: mode in octal, size with the largest unit that divides it."""
    out = []
    if mode:
        out.append(f"mode={mode:o}")
    if size:
        for suffix, div in (("g", 1 << 30), ("m", 1 << 20), ("k", 1 << 10)):
            if size % div == 0:
                out.append(f"size={size // div}{suffix}")
                break
        else:
            out.append(f"size={size}")
    return out


def _config_error(m: MountSpec, why: str) -> InvalidArgument:
    return InvalidArgument(f'invalid mount config for type "{m.type}": {why}')


def validate(m: MountSpec, *, check_bind_source: bool = True) -> None:
    """The daemon's checks (validateMountConfig); ``check_bind_source``: the host path must exist."""
    if not m.target:
        raise _config_error(m, "field Target must not be empty")
    if posixpath.normpath(m.target) in ("/", "//"):
        raise _config_error(m, "invalid specification: destination can't be '/'")
    if not m.target.startswith("/"):
        raise _config_error(m, f"invalid mount path: '{m.target}' mount path must be absolute")
    if m.type == "bind":
        if not m.source:
            raise _config_error(m, "field Source must not be empty")
        props = [o for o in m.options if o not in ("bind", "rbind")]
        for p in props:
            if p not in PROPAGATIONS:
                raise _config_error(m, f"invalid propagation mode: {p}")
        if not m.source.startswith("/"):
            raise _config_error(m, f"invalid mount path: '{m.source}' mount path must be absolute")
        if check_bind_source and not m.create_source and not os.path.exists(m.source):
            raise _config_error(m, f"bind source path does not exist: {m.source}")
    elif m.type == "volume":
        if m.readonly and m.anonymous:
            raise _config_error(m, "must not set ReadOnly mode when using anonymous volumes")
    elif m.type == "tmpfs":
        if m.source:
            raise _config_error(m, "field Source must not be specified")
    else:
        raise _config_error(m, "mount type unknown")


def image_volumes(paths: dict | list | None, taken: set[str]) -> list[MountSpec]:
    """Anonymous volumes for the image's VOLUME paths that no user mount covers."""
    out = []
    for p in sorted(paths or []):
        target = posixpath.normpath(p if p.startswith("/") else "/" + p)
        if target in taken or target == "/":
            continue
        taken.add(target)
        out.append(MountSpec(type="volume", target=target, anonymous=True, from_image=True))
    return out


def check_duplicates(mounts: Sequence[MountSpec], tmpfs_paths: Sequence[str] = ()) -> None:
    """Docker's ``Duplicate mount point: /x`` across -v, --mount and --tmpfs."""
    seen: set[str] = set()
    for t in [*(m.target for m in mounts), *tmpfs_paths]:
        target = posixpath.normpath(t)
        if target in seen:
            raise InvalidArgument(f"Duplicate mount point: {target}")
        seen.add(target)
