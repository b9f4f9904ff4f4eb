"""Parsing of ``docker run``/``create`` flag values into typed options, with Docker's error texts."""

from __future__ import annotations

import re
from pathlib import Path

from dockyard.cli.units import ram_in_bytes
from dockyard.containers.model import Resources, RestartPolicy, Ulimit
from dockyard.errors import InvalidArgument


def flag_error(value: str, flag: str, why: str) -> InvalidArgument:
    return InvalidArgument(f'invalid argument "{value}" for "{flag}" flag: {why}')


def size(value: str | None, flag: str) -> int | None:
    if value is None or value == "":
        return None
    if value == "-1":
        return -1
    try:
        return ram_in_bytes(value)
    except InvalidArgument:
        raise flag_error(value, flag, f"invalid size: '{value}'") from None


def cpus(value: str | None) -> int | None:
    if not value:
        return None
    from decimal import Decimal, InvalidOperation

    try:
        d = Decimal(value)
    except InvalidOperation:
        raise flag_error(value, "--cpus", f"failed to parse {value} as a rational number") from None
    nano = int(d * 1_000_000_000)
    if nano < 0:
        raise flag_error(value, "--cpus", "invalid value: cpus must be positive")
    return nano


def duration(value: str | None, flag: str) -> float | None:
    if value is None or value == "":
        return None
    from dockyard.images.changes import _duration_ns

    try:
        return _duration_ns(value) / 1e9
    except InvalidArgument:
        raise flag_error(value, flag, f'time: invalid duration "{value}"') from None


def restart_policy(value: str | None) -> RestartPolicy:
    if not value or value == "no":
        return RestartPolicy("no", 0)
    name, _, count = value.partition(":")
    if name not in ("always", "unless-stopped", "on-failure"):
        raise InvalidArgument(f"invalid restart policy '{value}'")
    if count:
        if name != "on-failure":
            raise InvalidArgument(f"maximum retry count cannot be used with restart policy '{name}'")
        if not count.isdigit():
            raise InvalidArgument("maximum retry count must be an integer")
        return RestartPolicy(name, int(count))
    return RestartPolicy(name, 0)


def ulimit(value: str) -> Ulimit:
    m = re.fullmatch(r"([a-z]+)=(-?\d+)(?::(-?\d+))?", value)
    if not m:
        raise flag_error(value, "--ulimit", f"invalid ulimit argument: {value}")
    soft = int(m.group(2))
    hard = int(m.group(3)) if m.group(3) is not None else soft
    if soft > hard and hard != -1:
        raise flag_error(value, "--ulimit", f"ulimit soft limit must be less than or equal to hard limit: {soft} > {hard}")
    return Ulimit(m.group(1), soft, hard)


def env_files(paths: tuple[str, ...]) -> list[str]:
    out = []
    for p in paths:
        try:
            text = Path(p).read_text()
        except OSError as exc:
            raise InvalidArgument(f"open {p}: {(exc.strerror or str(exc)).lower()}") from None
        for line in text.splitlines():
            line = line.strip()
            if not line or line.startswith("#"):
                continue
            out.append(line)
    return out


def labels(items: tuple[str, ...], files: tuple[str, ...] = ()) -> dict[str, str]:
    out: dict[str, str] = {}
    for item in [*env_files(files), *items]:
        k, _, v = item.partition("=")
        out[k] = v
    return out


def tmpfs(items: tuple[str, ...]) -> dict[str, str]:
    out = {}
    for item in items:
        path, _, opts = item.partition(":")
        if not path.startswith("/"):
            raise InvalidArgument(f"invalid mount path for tmpfs: {path}: must be absolute")
        out[path] = opts
    return out


def resources(memory, memory_swap, memory_reservation, cpus_value, cpu_shares, cpu_period, cpu_quota,
              cpuset_cpus, cpuset_mems, pids_limit, oom_kill_disable) -> Resources:
    r = Resources(
        memory=size(memory, "-m, --memory"),
        memory_swap=size(memory_swap, "--memory-swap"),
        memory_reservation=size(memory_reservation, "--memory-reservation"),
        nano_cpus=cpus(cpus_value),
        cpu_shares=cpu_shares,
        cpu_period=cpu_period,
        cpu_quota=cpu_quota,
        cpuset_cpus=cpuset_cpus,
        cpuset_mems=cpuset_mems,
        pids_limit=pids_limit,
        oom_kill_disable=oom_kill_disable,
    )
    if r.memory is not None and r.memory != -1 and r.memory < 6 * 1024 * 1024:
        raise InvalidArgument("Minimum memory limit allowed is 6MB")
    if r.memory_swap not in (None, -1) and (r.memory is None or r.memory_swap < r.memory):
        if r.memory is None:
            raise InvalidArgument("You should always set the Memory limit when using Memoryswap limit, see usage.")
        raise InvalidArgument("Minimum memoryswap limit should be larger than memory limit, see usage.")
    if r.nano_cpus and (cpu_period or cpu_quota):
        raise InvalidArgument("Conflicting options: Nano CPUs and CPU Period cannot both be set")
    return r
