"""The OCI runtime config (a bundle's config.json) for a container, with Docker's defaults.

:func:`make_runtime_spec` turns a :class:`ContainerSpec` plus what the caller prepared (the mounted
rootfs, the /etc/hosts, /etc/hostname and /etc/resolv.conf files, the cgroup path, the resolved user)
into the dict runc reads.  The defaults are moby's (oci/defaults.go, daemon/oci_linux.go), so a
container behaves as under ``docker run``:

- process: args; env = PATH, HOSTNAME, TERM=xterm with a tty, then the image's and the user's
  variables, then HOME from passwd when still absent; cwd "/" unless set; uid/gid/additionalGids;
  Docker's 14 capabilities adjusted by --cap-add/--cap-drop (only the bounding set for a non-root
  user, as execve would leave it); noNewPrivileges; rlimits only for --ulimit (no raised RLIMIT_NOFILE:
  this host cannot raise a hard limit, which is why podman's default of 1048576 fails here);
- mounts: /proc /dev /dev/pts /sys /sys/fs/cgroup /dev/mqueue /dev/shm, then (as Docker's "user"
  mounts, parents before children) /etc/resolv.conf /etc/hostname /etc/hosts, --tmpfs and --mount/-v;
- linux: new mount, network, uts, pid and ipc namespaces; Docker's masked and read-only /proc and /sys
  paths; the device cgroup allow-list; memory/cpu/pids resources; seccomp (see :mod:`.seccomp`).

``--privileged`` gives every capability this host has, no seccomp filter, no masked or read-only
paths, a writable /sys and cgroup mount, and an allow-all device cgroup (host device nodes are not
added to /dev).

Purity: no I/O happens when the caller passes the host facts (``hard_limits``, ``host_caps``,
``seccomp_profile``, ``arch``, ``kernel``), as the unit tests do.  Left out, each is read from this
host by the small impure helpers at the end of this module and in :mod:`.seccomp`.

Errors: :class:`InvalidArgument` for bad capabilities, ulimits, tmpfs options, mounts, users and
resource combinations (Docker's words where Docker has them); :class:`FailedPrecondition` when the
container asks for something this host cannot grant (a capability dockyard does not hold itself, an
init binary that is missing).
"""

from __future__ import annotations

import json
import posixpath
import re
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from dockyard.containers.model import ContainerSpec, MountSpec, Ulimit
from dockyard.errors import FailedPrecondition, InvalidArgument
from dockyard.runtime import seccomp

OCI_VERSION = "1.0.2-dev"
DEFAULT_PATH_ENV = "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
INIT_IN_CONTAINER = "/sbin/docker-init"
RLIM_INFINITY = 2**64 - 1

# Bit number = index (linux/capability.h).
ALL_CAPABILITIES: tuple[str, ...] = (
    "CAP_CHOWN", "CAP_DAC_OVERRIDE", "CAP_DAC_READ_SEARCH", "CAP_FOWNER", "CAP_FSETID", "CAP_KILL",
    "CAP_SETGID", "CAP_SETUID", "CAP_SETPCAP", "CAP_LINUX_IMMUTABLE", "CAP_NET_BIND_SERVICE",
    "CAP_NET_BROADCAST", "CAP_NET_ADMIN", "CAP_NET_RAW", "CAP_IPC_LOCK", "CAP_IPC_OWNER", "CAP_SYS_MODULE",
    "CAP_SYS_RAWIO", "CAP_SYS_CHROOT", "CAP_SYS_PTRACE", "CAP_SYS_PACCT", "CAP_SYS_ADMIN", "CAP_SYS_BOOT",
    "CAP_SYS_NICE", "CAP_SYS_RESOURCE", "CAP_SYS_TIME", "CAP_SYS_TTY_CONFIG", "CAP_MKNOD", "CAP_LEASE",
    "CAP_AUDIT_WRITE", "CAP_AUDIT_CONTROL", "CAP_SETFCAP", "CAP_MAC_OVERRIDE", "CAP_MAC_ADMIN", "CAP_SYSLOG",
    "CAP_WAKE_ALARM", "CAP_BLOCK_SUSPEND", "CAP_AUDIT_READ", "CAP_PERFMON", "CAP_BPF", "CAP_CHECKPOINT_RESTORE",
)
DEFAULT_CAPABILITIES: tuple[str, ...] = (
    "CAP_CHOWN", "CAP_DAC_OVERRIDE", "CAP_FSETID", "CAP_FOWNER", "CAP_MKNOD", "CAP_NET_RAW", "CAP_SETGID",
    "CAP_SETUID", "CAP_SETFCAP", "CAP_SETPCAP", "CAP_NET_BIND_SERVICE", "CAP_SYS_CHROOT", "CAP_KILL",
    "CAP_AUDIT_WRITE",
)
MASKED_PATHS: tuple[str, ...] = (
    "/proc/asound", "/proc/acpi", "/proc/interrupts", "/proc/kcore", "/proc/keys", "/proc/latency_stats",
    "/proc/timer_list", "/proc/timer_stats", "/proc/sched_debug", "/proc/scsi", "/sys/firmware",
    "/sys/devices/virtual/powercap",
)
READONLY_PATHS: tuple[str, ...] = ("/proc/bus", "/proc/fs", "/proc/irq", "/proc/sys", "/proc/sysrq-trigger")
# go-units' ulimit names (what `docker run --ulimit` accepts).
ULIMIT_NAMES: tuple[str, ...] = ("core", "cpu", "data", "fsize", "locks", "memlock", "msgqueue", "nice",
                                 "nofile", "nproc", "rss", "rtprio", "rttime", "sigpending", "stack")


def _dev(allow: bool, kind: str | None, major: int | None, minor: int | None, access: str) -> dict[str, Any]:
    rule: dict[str, Any] = {"allow": allow}
    if kind:
        rule["type"] = kind
    if major is not None:
        rule["major"] = major
    if minor is not None:
        rule["minor"] = minor
    rule["access"] = access
    return rule


# Deny everything, then moby's list (null zero urandom random tty console; /dev/fuse denied), then
# runc's always-allowed devices (mknod of anything, full, ptmx, the pts, tun).  The wildcard rules must
# come after the fuse deny: runc's cgroup v1 emulator cannot punch a hole in a wildcard it already has.
DEFAULT_DEVICE_RULES: tuple[dict[str, Any], ...] = (
    _dev(False, None, None, None, "rwm"),
    *(_dev(True, "c", ma, mi, "rwm") for ma, mi in ((1, 5), (1, 3), (1, 9), (1, 8), (5, 0), (5, 1))),
    _dev(False, "c", 10, 229, "rwm"),
    _dev(True, "c", None, None, "m"), _dev(True, "b", None, None, "m"),
    _dev(True, "c", 1, 7, "rwm"), _dev(True, "c", 5, 2, "rwm"), _dev(True, "c", 136, None, "rwm"),
    _dev(True, "c", 10, 200, "rwm"),
)
_PROFILE_FROM_OPTIONS: Any = object()   # sentinel: read the profile --security-opt asks for


def make_runtime_spec(
    spec: ContainerSpec, *, rootfs: str, etc_files: Mapping[str, str], cgroups_path: str,
    user: ResolvedUser, mounts: Sequence[MountSpec] | None = None,
    hard_limits: Mapping[str, int] | None = None, netns_path: str | None = None,
    seccomp_profile: Mapping[str, Any] | None = _PROFILE_FROM_OPTIONS,
    host_caps: Collection[str] | None = None, arch: str | None = None, kernel: str | None = None,
    oom_score_adj: int = 0, init_path: str | None = None,
) -> dict[str, Any]:
    """The OCI config for ``spec`` (a JSON-ready dict: the wire format written to config.json).

    ``etc_files`` maps "resolv.conf", "hostname", "hosts" to host files bind-mounted over /etc/<key>
    (missing keys are not mounted).  ``mounts`` are the --mount/-v mounts with volume sources already
    resolved to host paths (default ``spec.mounts``).  ``netns_path`` is the network namespace to join:
    required for ``network_mode="container:<id>"``, used for any other non-host mode when given (a
    namespace the network driver prepared).  ``seccomp_profile`` is the Docker-format profile to apply
    (None: no filter); left out, the one ``spec.security_opt`` names is loaded (Docker's default when
    none).  ``hard_limits`` (name -> hard limit, -1 unlimited) and ``host_caps`` (capabilities this
    process holds) bound what the container may ask for; ``arch``/``kernel`` select seccomp rules.
    ``init_path`` is the host's tini-like binary, needed when ``spec.init``.
    """
    if hard_limits is None:
        hard_limits = current_hard_limits()
    if host_caps is None:
        host_caps = current_capabilities()
    privileged = spec.privileged
    caps = capabilities_for(spec.cap_add, spec.cap_drop, privileged=privileged, host_caps=host_caps)
    opts = _security_options(spec.security_opt)
    hostname = spec.hostname or spec.id[:12]

    process: dict[str, Any] = {
        "terminal": spec.tty,
        "user": {"uid": user.uid, "gid": user.gid,
                 "additionalGids": list(dict.fromkeys([user.gid, *user.additional_gids]))},
        "args": list(spec.args),
        "env": environment(spec.env, hostname=hostname, tty=spec.tty, home=user.home),
        "cwd": spec.working_dir or "/",
        "capabilities": _capability_sets(caps, root=user.uid == 0),
        "noNewPrivileges": spec.no_new_privileges or opts.no_new_privileges,
        "oomScoreAdj": oom_score_adj,
    }
    if not process["args"]:
        raise InvalidArgument("no command specified")
    rlimits = rlimits_for(spec.ulimits, hard_limits)
    if rlimits:
        process["rlimits"] = rlimits

    all_mounts = container_mounts(spec, etc_files=etc_files, mounts=spec.mounts if mounts is None else mounts)
    if spec.init:
        if not init_path:
            raise FailedPrecondition("--init needs an init binary (tini or catatonit) on this host")
        process["args"] = [INIT_IN_CONTAINER, "--", *process["args"]]
        all_mounts.append({"destination": INIT_IN_CONTAINER, "type": "bind", "source": init_path,
                           "options": ["bind", "ro"]})

    linux: dict[str, Any] = {
        "namespaces": _namespaces(spec.network_mode, netns_path),
        "resources": resources_for(spec, privileged=privileged),
        "cgroupsPath": cgroups_path,
    }
    if not privileged and not opts.unconfined_paths:
        linux["maskedPaths"] = list(MASKED_PATHS)
        linux["readonlyPaths"] = list(READONLY_PATHS)
    propagation = rootfs_propagation(all_mounts)
    if propagation:
        linux["rootfsPropagation"] = propagation
    if not privileged and seccomp.seccomp_option(spec.security_opt) != seccomp.UNCONFINED:
        profile = (seccomp.profile_for(spec.security_opt) if seccomp_profile is _PROFILE_FROM_OPTIONS
                   else seccomp_profile)
        if profile is not None:
            oci = seccomp.to_oci(profile, capabilities=caps, arch=arch or seccomp.host_arch(),
                                 kernel=kernel or seccomp.host_kernel())
            if oci is not None:
                linux["seccomp"] = oci

    config: dict[str, Any] = {
        "ociVersion": OCI_VERSION,
        "process": process,
        "root": {"path": rootfs, "readonly": spec.read_only},
        "hostname": hostname,
        "mounts": all_mounts,
        "linux": linux,
    }
    if spec.domainname:
        config["domainname"] = spec.domainname
    return config


# --- capabilities ----------------------------------------------------------------------------------

def normalize_capabilities(names: Sequence[str]) -> list[str]:
    """Upper-case, add "CAP_", keep "ALL"; unknown -> InvalidArgument (Docker's wording)."""
    out = []
    for name in names:
        c = name.strip().upper()
        if c != "ALL" and not c.startswith("CAP_"):
            c = "CAP_" + c
        if c != "ALL" and c not in ALL_CAPABILITIES:
            raise InvalidArgument(f'unknown capability: "{c}"')
        out.append(c)
    return out


def capabilities_for(cap_add: Sequence[str], cap_drop: Sequence[str], *, privileged: bool = False,
                     host_caps: Collection[str] | None = None) -> list[str]:
    """The container's capability list, as moby's TweakCapabilities computes it.

    "ALL" in ``cap_add`` (or ``privileged``) means every capability this host has (``host_caps``;
    all known ones when None).  Asking explicitly for one the host lacks is a FailedPrecondition:
    runc could not grant it and would fail with a bare "operation not permitted".
    """
    everything = [c for c in ALL_CAPABILITIES if host_caps is None or c in host_caps]
    drops = normalize_capabilities(cap_drop)
    adds = normalize_capabilities(cap_add)
    if privileged:
        return everything
    if "ALL" in adds:
        caps = [c for c in everything if c not in drops]
    elif "ALL" in drops:
        caps = list(adds)
    else:
        caps = [c for c in DEFAULT_CAPABILITIES if c not in drops] + adds
    caps = list(dict.fromkeys(caps))
    missing = [c for c in caps if host_caps is not None and c not in host_caps]
    if missing:
        raise FailedPrecondition(f"capability {', '.join(missing)} is not available on this host "
                                 "(dockyard does not hold it, so no container can be given it)")
    return caps


def _capability_sets(caps: list[str], *, root: bool) -> dict[str, list[str]]:
    # moby's SetCapabilities: a non-root process gets only the bounding set, as execve would leave it.
    if root:
        return {"bounding": list(caps), "effective": list(caps), "permitted": list(caps),
                "inheritable": [], "ambient": []}
    return {"bounding": list(caps), "effective": [], "permitted": [], "inheritable": [], "ambient": []}


# --- environment, security options, namespaces -------------------------------------------------------

def environment(env: Sequence[str], *, hostname: str, tty: bool, home: str) -> list[str]:
    """Docker's container environment: defaults, then ``env`` replacing or appending by name (a bare
    "NAME" removes NAME), then HOME when still unset."""
    out = [DEFAULT_PATH_ENV, f"HOSTNAME={hostname}"] + (["TERM=xterm"] if tty else [])
    index = {e.split("=", 1)[0]: i for i, e in enumerate(out)}
    for item in env:
        key = item.split("=", 1)[0]
        if "=" not in item:
            if key in index:
                out[index.pop(key)] = ""
            continue
        if key in index:
            out[index[key]] = item
        else:
            index[key] = len(out)
            out.append(item)
    out = [e for e in out if e]
    if not any(e.startswith("HOME=") for e in out):
        out.append(f"HOME={home}")
    return out


@dataclass(frozen=True)
class _SecurityOptions:
    """The --security-opt values that change the runtime config besides seccomp."""

    no_new_privileges: bool = False
    unconfined_paths: bool = False


def _security_options(security_opt: Sequence[str]) -> _SecurityOptions:
    nnp = unconfined_paths = False
    for opt in security_opt:
        key, _, value = seccomp.split_option(opt)
        if key == "no-new-privileges":
            if value.lower() in ("", "true", "1"):
                nnp = True
            elif value.lower() in ("false", "0"):
                nnp = False
            else:
                raise InvalidArgument(f"invalid --security-opt 2: {opt!r}")
        elif key == "systempaths":
            if value != "unconfined":
                raise InvalidArgument(f"invalid --security-opt 2: {opt!r}")
            unconfined_paths = True
        elif key not in ("seccomp", "label", "apparmor"):
            raise InvalidArgument(f"invalid --security-opt 1: {opt!r}")
    return _SecurityOptions(nnp, unconfined_paths)


def _namespaces(network_mode: str, netns_path: str | None) -> list[dict[str, str]]:
    out: list[dict[str, str]] = [{"type": "mount"}]
    if network_mode.startswith("container:"):
        if not netns_path:
            raise InvalidArgument(f"network mode {network_mode}: the other container's network "
                                  "namespace path is needed (is it running?)")
        out.append({"type": "network", "path": netns_path})
    elif network_mode != "host":
        out.append({"type": "network", "path": netns_path} if netns_path else {"type": "network"})
    out += [{"type": "uts"}, {"type": "pid"}, {"type": "ipc"}]
    return out


# --- rlimits and resources ---------------------------------------------------------------------------

def rlimits_for(ulimits: Sequence[Ulimit], hard_limits: Mapping[str, int]) -> list[dict[str, Any]]:
    """OCI rlimits for --ulimit; a hard limit above this host's (``hard_limits``, -1 = unlimited) is
    refused: dockyard holds no CAP_SYS_RESOURCE here, so it cannot raise one and never asks to."""
    out: dict[str, dict[str, Any]] = {}
    for ul in ulimits:
        name = ul.name.lower().removeprefix("rlimit_")
        if name not in ULIMIT_NAMES:
            raise InvalidArgument(f"invalid ulimit type: {ul.name}")
        soft = RLIM_INFINITY if ul.soft < 0 else ul.soft
        hard = RLIM_INFINITY if ul.hard < 0 else ul.hard
        if soft > hard:
            raise InvalidArgument(f"ulimit soft limit must be less than or equal to hard limit: "
                                  f"{_show(ul.soft)} > {_show(ul.hard)}")
        host = hard_limits.get(name, -1)
        if host >= 0 and hard > host:
            raise InvalidArgument(
                f"ulimit {name}: hard limit {_show(ul.hard)} is above this host's hard limit {host}, which "
                f"dockyard cannot raise (no CAP_SYS_RESOURCE); use at most --ulimit {name}="
                f"{min(soft, host)}:{host}")
        out[name] = {"type": "RLIMIT_" + name.upper(), "soft": soft, "hard": hard}
    return list(out.values())


def _show(v: int) -> str:
    return "unlimited" if v < 0 else str(v)


def resources_for(spec: ContainerSpec, *, privileged: bool = False) -> dict[str, Any]:
    """linux.resources: the device cgroup rules and --memory/--cpus/--cpu-*/--cpuset-*/--pids-limit."""
    r = spec.resources
    out: dict[str, Any] = {
        "devices": [{"allow": True, "access": "rwm"}] if privileged else [dict(d) for d in DEFAULT_DEVICE_RULES]
    }
    memory: dict[str, Any] = {}
    if r.memory_swap and r.memory_swap > 0 and not r.memory:
        raise InvalidArgument("You should always set the Memory limit when using Memoryswap limit, see usage")
    if r.memory:
        if r.memory < 6 * 1024 * 1024:
            raise InvalidArgument("Minimum memory limit allowed is 6MB")
        memory["limit"] = r.memory
        if r.memory_swap and 0 < r.memory_swap < r.memory:
            raise InvalidArgument("Minimum memoryswap limit should be larger than memory limit, see usage")
        # Docker's default: as much swap as memory (memory+swap = 2 x memory).
        memory["swap"] = r.memory_swap if r.memory_swap else 2 * r.memory
        if r.memory_reservation and r.memory_reservation > r.memory:
            raise InvalidArgument("Minimum memory limit can not be less than memory reservation limit, "
                                  "see usage")
    elif r.memory_swap == -1:
        memory["swap"] = -1
    if r.memory_reservation:
        memory["reservation"] = r.memory_reservation
    if r.oom_kill_disable:
        memory["disableOOMKiller"] = True
    if memory:
        out["memory"] = memory

    cpu: dict[str, Any] = {}
    if r.nano_cpus:
        if r.cpu_period:
            raise InvalidArgument("Conflicting options: Nano CPUs and CPU Period cannot both be set")
        if r.cpu_quota:
            raise InvalidArgument("Conflicting options: Nano CPUs and CPU Quota cannot both be set")
        if r.nano_cpus < 0:
            raise InvalidArgument("Range of CPUs is from 0.01 to the number of CPUs available on the system")
        cpu["period"] = 100_000
        cpu["quota"] = r.nano_cpus * 100_000 // 1_000_000_000
    else:
        if r.cpu_period:
            cpu["period"] = r.cpu_period
        if r.cpu_quota:
            cpu["quota"] = r.cpu_quota
    if r.cpu_shares:
        cpu["shares"] = r.cpu_shares
    if r.cpuset_cpus:
        cpu["cpus"] = r.cpuset_cpus
    if r.cpuset_mems:
        cpu["mems"] = r.cpuset_mems
    if cpu:
        out["cpu"] = cpu
    if r.pids_limit is not None:
        out["pids"] = {"limit": r.pids_limit if r.pids_limit > 0 else -1}
    return out


# --- the user ----------------------------------------------------------------------------------------

_MAX_ID = 2**31 - 1
_NUMBER = re.compile(r"^[+-]?\d+$")


@dataclass(frozen=True)
class ResolvedUser:
    """The process identity ``--user`` resolves to inside the image.

    ``additional_gids`` are the supplementary groups from /etc/group membership (the config lists the
    primary gid first, as Docker does); ``home`` fills HOME when the environment has none.
    """

    uid: int = 0
    gid: int = 0
    additional_gids: tuple[int, ...] = ()
    home: str = "/"


def resolve_user(user: str, passwd_text: str | None, group_text: str | None) -> ResolvedUser:
    """Resolve ``--user`` ("", "name", "uid", "name:group", "uid:gid", "uid:groupname") as Docker
    (runc's libcontainer/user) does, against the image's /etc/passwd and /etc/group contents (None: the
    file is absent).

    A name needs a passwd entry; a number does not (its gid is then 0).  Without an explicit group the
    user's passwd gid is primary and its /etc/group memberships are supplementary; an explicit group
    replaces the primary gid and brings no supplementary groups.
    """
    parts = user.split(":")
    user_arg, group_arg = parts[0], (parts[1] if len(parts) > 1 else "")
    uid_num = int(user_arg) if _NUMBER.match(user_arg) else None
    gid_num = int(group_arg) if _NUMBER.match(group_arg) else None

    uid, gid, home, matched = 0, 0, "/", ""
    entries = [(f[0], int(f[2]), int(f[3]) if _NUMBER.match(f[3]) else 0, f[5])
               for f in _db_lines(passwd_text, 7) if _NUMBER.match(f[2])]
    if user_arg == "":
        found = [e for e in entries if e[1] == 0]
    elif uid_num is not None:
        found = [e for e in entries if e[1] == uid_num]
    else:
        found = [e for e in entries if e[0] == user_arg]
    if found:
        matched, uid, gid, home = found[0][0], found[0][1], found[0][2], found[0][3] or "/"
    elif user_arg:
        if uid_num is None:
            raise InvalidArgument(f"unable to find user {user_arg}: no matching entries in passwd file")
        uid = _check_id(uid_num)

    supplementary: list[int] = []
    if group_arg or matched:
        groups = [(f[0], int(f[2]), [m.strip() for m in f[3].split(",") if m.strip()])
                  for f in _db_lines(group_text, 4) if _NUMBER.match(f[2])]
        if not group_arg:
            supplementary = [g[1] for g in groups if matched in g[2]]
        else:
            chosen = [g for g in groups if (g[1] == gid_num if gid_num is not None else g[0] == group_arg)]
            if chosen:
                gid = chosen[0][1]
            elif gid_num is None:
                raise InvalidArgument(f"unable to find group {group_arg}: no matching entries in group file")
            else:
                gid = _check_id(gid_num)
    return ResolvedUser(uid=uid, gid=gid, additional_gids=tuple(supplementary), home=home)


def _db_lines(text: str | None, width: int) -> list[list[str]]:
    """The colon-separated records of a passwd/group file, padded to ``width`` fields."""
    out = []
    for line in (text or "").splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            fields = line.split(":")
            out.append(fields + [""] * (width - len(fields)))
    return out


def _check_id(value: int) -> int:
    if not 0 <= value <= _MAX_ID:
        raise InvalidArgument(f"uids and gids must be in range 0-{_MAX_ID}")
    return value


# --- mounts ------------------------------------------------------------------------------------------

_PROPAGATIONS = ("private", "rprivate", "shared", "rshared", "slave", "rslave", "unbindable", "runbindable")
# Mount flags by the kernel flag they set or clear: a later option overrides an earlier one with the
# same key ("exec" after Docker's default "noexec"), as moby's MergeTmpfsOptions does.
_FLAG_KEYS: dict[str, str] = {
    "ro": "rdonly", "rw": "rdonly", "nosuid": "nosuid", "suid": "nosuid", "nodev": "nodev", "dev": "nodev",
    "noexec": "noexec", "exec": "noexec", "sync": "sync", "async": "sync", "dirsync": "dirsync",
    "mand": "mand", "nomand": "mand", "atime": "noatime", "noatime": "noatime", "diratime": "nodiratime",
    "nodiratime": "nodiratime", "relatime": "relatime", "norelatime": "relatime",
    "strictatime": "strictatime", "nostrictatime": "strictatime", "bind": "bind", "rbind": "bind",
    **{p: "propagation" for p in _PROPAGATIONS},
}
_TMPFS_DATA = {"size": r"^\d+[kKmMgG%]?$", "mode": r"^[0-7]{1,4}$", "uid": r"^\d+$", "gid": r"^\d+$",
               "nr_inodes": r"^\d+[kKmMgG%]?$", "nr_blocks": r"^\d+[kKmMgG%]?$", "mpol": r"."}
_TMPFS_DEFAULTS = ("noexec", "nosuid", "nodev", "rprivate")
# Options of `-v`/`--mount` that mean something to Docker but are no mount flags.
_NOT_MOUNT_FLAGS = {"z", "Z", "nocopy", "consistent", "cached", "delegated", "readonly"}
# Docker's defaults that a read-only rootfs leaves writable.
_WRITABLE_ON_RO_ROOT = {"/proc", "/dev", "/dev/pts", "/dev/shm", "/dev/mqueue"}


def default_mounts(shm_size: int) -> list[dict[str, Any]]:
    """moby's DefaultLinuxSpec mounts, /dev/shm sized by --shm-size."""
    def m(dest: str, kind: str, source: str, *options: str) -> dict[str, Any]:
        return {"destination": dest, "type": kind, "source": source, "options": list(options)}

    return [
        m("/proc", "proc", "proc", "nosuid", "noexec", "nodev"),
        m("/dev", "tmpfs", "tmpfs", "nosuid", "strictatime", "mode=755", "size=65536k"),
        m("/dev/pts", "devpts", "devpts", "nosuid", "noexec", "newinstance", "ptmxmode=0666", "mode=0620",
          "gid=5"),
        m("/sys", "sysfs", "sysfs", "nosuid", "noexec", "nodev", "ro"),
        m("/sys/fs/cgroup", "cgroup", "cgroup", "ro", "nosuid", "noexec", "nodev"),
        m("/dev/mqueue", "mqueue", "mqueue", "nosuid", "noexec", "nodev"),
        m("/dev/shm", "tmpfs", "shm", "nosuid", "noexec", "nodev", "mode=1777", f"size={shm_size}"),
    ]


def container_mounts(spec: ContainerSpec, *, etc_files: Mapping[str, str],
                     mounts: Sequence[MountSpec]) -> list[dict[str, Any]]:
    """Docker's defaults (less those a user mount replaces), then the user mounts parents first."""
    user: list[dict[str, Any]] = []
    for path, data in spec.tmpfs.items():
        target = _target(path, "tmpfs")
        user.append({"destination": target, "type": "tmpfs", "source": "tmpfs",
                     "options": merge_tmpfs_options([*_TMPFS_DEFAULTS, *(data.split(",") if data else [])])})
    user += [_user_mount(m) for m in mounts]
    seen: set[str] = set()
    for m in user:
        if m["destination"] in seen:
            raise InvalidArgument(f"Duplicate mount point: {m['destination']}")
        seen.add(m["destination"])
    # /etc/resolv.conf, /etc/hostname, /etc/hosts: unless the user mounted their own over them.
    network = [{"destination": f"/etc/{key}", "type": "bind", "source": etc_files[key],
                "options": ["rbind", *(["ro"] if spec.read_only else []), "rprivate"]}
               for key in ("resolv.conf", "hostname", "hosts") if key in etc_files and f"/etc/{key}" not in seen]
    user = network + user
    user.sort(key=lambda m: m["destination"].count("/"))   # stable: parents before children

    out = []
    dev_replaced = "/dev" in seen
    for m in default_mounts(spec.shm_size):
        dest = m["destination"]
        if dest in seen or (dev_replaced and dest.startswith("/dev/")):
            continue
        if spec.read_only and dest not in _WRITABLE_ON_RO_ROOT and "ro" not in m["options"]:
            m["options"].append("ro")
        if spec.privileged and m["type"] in ("sysfs", "cgroup"):
            m["options"] = [o for o in m["options"] if o != "ro"]
        out.append(m)
    return out + user


def _target(path: str, kind: str) -> str:
    if not path.startswith("/"):
        raise InvalidArgument(f'invalid mount config for type "{kind}": invalid mount path: '
                              f"'{path}' mount path must be absolute")
    target = posixpath.normpath(path)
    if target in ("/", "//"):
        raise InvalidArgument("invalid specification: destination can't be '/'")
    return target


def _user_mount(m: MountSpec) -> dict[str, Any]:
    target = _target(m.target, m.type)
    readonly = m.readonly or "ro" in m.options or "readonly" in m.options
    if m.type == "tmpfs":
        data = [o for o in m.options if o not in ("ro", "rw", "readonly")]
        options = merge_tmpfs_options([*_TMPFS_DEFAULTS, *(["ro"] if readonly else []), *data])
        return {"destination": target, "type": "tmpfs", "source": "tmpfs", "options": options}
    if m.type not in ("bind", "volume"):
        raise InvalidArgument(f'invalid mount config: mount type "{m.type}" is not supported')
    if not m.source.startswith("/"):
        what = f"volume {m.name or m.source!r}" if m.type == "volume" else f"bind source {m.source!r}"
        raise InvalidArgument(f"invalid mount config for {target}: {what} is not an absolute host path")
    propagation = "rprivate"
    extra = []
    for o in m.options:
        if o in _PROPAGATIONS:
            propagation = o
        elif o in _NOT_MOUNT_FLAGS or o in ("ro", "rw", "bind", "rbind"):
            continue
        elif o in _FLAG_KEYS:
            extra.append(o)
        else:
            raise InvalidArgument(f"invalid mount option {o!r} for {target}")
    mode = "bind" if "bind" in m.options else "rbind"   # "bind": Docker's bind-recursive=disabled
    return {"destination": target, "type": "bind", "source": m.source,
            "options": [mode, *(["ro"] if readonly else []), propagation, *extra]}


def merge_tmpfs_options(options: Sequence[str]) -> list[str]:
    """moby's MergeTmpfsOptions: the last of each flag and of each data key wins; anything that is
    neither a mount flag nor a tmpfs data option (size, mode, uid, gid, nr_inodes, nr_blocks, mpol) is
    refused.  "size=64m" style sizes pass through to the kernel, which understands them."""
    flags: set[str] = set()
    data: set[str] = set()
    out: list[str] = []
    for opt in reversed(options):
        opt = opt.strip()
        if not opt or opt == "defaults":
            continue
        if opt in _FLAG_KEYS:
            if _FLAG_KEYS[opt] not in flags:
                out.insert(0, opt)
                flags.add(_FLAG_KEYS[opt])
            continue
        key, sep, value = opt.partition("=")
        if not sep or key not in _TMPFS_DATA:
            raise InvalidArgument(f"invalid tmpfs option [{' '.join(json.dumps(p) for p in opt.split('=', 1))}]")
        if not re.match(_TMPFS_DATA[key], value):
            raise InvalidArgument(f"invalid tmpfs option {opt!r}: bad value for {key}")
        if key not in data:
            out.insert(0, opt)
            data.add(key)
    return out


def rootfs_propagation(mounts: Sequence[Mapping[str, Any]]) -> str | None:
    """Docker's rule: a shared bind mount needs a shared rootfs, a slave one a slave rootfs.  (Docker
    writes "rslave", which the OCI schema does not allow; runc reads both.)"""
    props = {o for m in mounts if m["type"] == "bind" for o in m["options"] if o in _PROPAGATIONS}
    if props & {"shared", "rshared"}:
        return "shared"
    if props & {"slave", "rslave"}:
        return "slave"
    return None


# --- impure edge: facts about this process -----------------------------------------------------------

def current_hard_limits() -> dict[str, int]:
    """This process's hard rlimits by ulimit name (-1 = unlimited): what a container may ask for."""
    import resource

    out = {}
    for name in ULIMIT_NAMES:
        const = getattr(resource, "RLIMIT_" + name.upper(), None)
        if const is not None:
            hard = resource.getrlimit(const)[1]
            out[name] = -1 if hard == resource.RLIM_INFINITY else hard
    return out


def current_capabilities(status_path: str = "/proc/self/status") -> frozenset[str]:
    """Capabilities this process holds (permitted and bounding): the most a container can be given."""
    masks: dict[str, int] = {}
    with open(status_path, encoding="ascii") as f:
        for line in f:
            key, _, value = line.partition(":")
            if key in ("CapPrm", "CapBnd"):
                masks[key] = int(value.strip(), 16)
    mask = masks.get("CapPrm", 0) & masks.get("CapBnd", 0)
    return frozenset(c for bit, c in enumerate(ALL_CAPABILITIES) if mask >> bit & 1)
