"""Seccomp: Docker-format profiles turned into the OCI ``linux.seccomp`` object.

A Docker-format profile (the ``docker run --security-opt seccomp=profile.json`` format) is not what runc
reads: its rules carry ``includes``/``excludes`` conditions on capabilities, architectures and the
kernel version, and an ``archMap`` for every architecture.  :func:`to_oci` evaluates those conditions
for one container (its bounding capabilities, the host's architecture and kernel) and keeps the rules
that apply, exactly as moby's ``profiles/seccomp/seccomp_linux.go`` does, so the same profile means the
same filter under dockyard and under Docker.

The default profile.  Debian packages containers-common's profile as /usr/share/containers/seccomp.json;
it has Docker's shape and most of Docker's rules, but it is *podman's* policy: it allows mount, umount2,
unshare, setns, reboot, keyctl, pivot_root, ptrace... to every container and relies on the missing
capability to refuse them.  Docker's default profile is stricter: those syscalls are allowed only when
the capability that makes them useful is in the bounding set (``--cap-add SYS_ADMIN`` lets ``mount``
through the filter), and the kernel keyring and pivot_root are never allowed.  :func:`docker_default`
applies that difference to the Debian file, so dockyard's default filter is Docker's without shipping
a second copy of a 400-syscall list.

Purity: everything but :func:`load_profile`, :func:`load_default_profile`, :func:`profile_for`,
:func:`host_arch` and :func:`host_kernel` is pure; those read files or ``uname`` and import ``os``
lazily so that the pure part can be imported anywhere.

Errors: :class:`InvalidArgument` for a missing or malformed profile (Docker's wording), for a profile
using both ``architectures`` and ``archMap`` or both ``name`` and ``names``, and for a bad ``minKernel``.
"""

from __future__ import annotations

import copy
import json
import re
from collections.abc import Collection, Iterable, Mapping, Sequence
from typing import Any

from dockyard.errors import InvalidArgument

DEFAULT_PROFILE_PATH = "/usr/share/containers/seccomp.json"
UNCONFINED = "unconfined"

# uname machine names and Go's GOARCH names -> libseccomp's "native" names, the ones profiles use in
# includes.arches / excludes.arches.
_NATIVE = {
    "x86_64": "amd64", "amd64": "amd64", "i386": "x86", "i686": "x86", "x86": "x86", "386": "x86",
    "aarch64": "arm64", "arm64": "arm64", "armv7l": "arm", "armv6l": "arm", "arm": "arm",
    "ppc64le": "ppc64le", "ppc64": "ppc64", "ppc": "ppc", "s390x": "s390x", "s390": "s390",
    "mips64": "mips64", "mips64el": "mipsel64", "mipsel64": "mipsel64", "mipsel": "mipsel",
    "riscv64": "riscv64",
}
# native name -> SCMP_ARCH_* (moby's nativeToSeccomp)
_SCMP_ARCH = {
    "x86": "SCMP_ARCH_X86", "amd64": "SCMP_ARCH_X86_64", "arm": "SCMP_ARCH_ARM",
    "arm64": "SCMP_ARCH_AARCH64", "mips64": "SCMP_ARCH_MIPS64", "mips64n32": "SCMP_ARCH_MIPS64N32",
    "mipsel64": "SCMP_ARCH_MIPSEL64", "mips3l64n32": "SCMP_ARCH_MIPSEL64N32", "mipsle": "SCMP_ARCH_MIPSEL",
    "mipsel": "SCMP_ARCH_MIPSEL", "ppc": "SCMP_ARCH_PPC", "ppc64": "SCMP_ARCH_PPC64",
    "ppc64le": "SCMP_ARCH_PPC64LE", "s390": "SCMP_ARCH_S390", "s390x": "SCMP_ARCH_S390X",
    "riscv64": "SCMP_ARCH_RISCV64",
}

EPERM = 1
ENOSYS = 38

# Docker's default policy, as a difference from containers-common's: syscall -> the capabilities any
# one of which lets it through the filter.  Without one of them the call fails with EPERM.
_DOCKER_CAP_GATED: dict[str, tuple[str, ...]] = {}
for _cap, _names in {
    "CAP_SYS_ADMIN": ("bpf", "clone", "clone3", "fanotify_init", "fsconfig", "fsmount", "fsopen", "fspick",
                      "lookup_dcookie", "mount", "mount_setattr", "move_mount", "open_tree",
                      "perf_event_open", "quotactl", "quotactl_fd", "setdomainname", "sethostname",
                      "setns", "syslog", "umount", "umount2", "unshare"),
    "CAP_SYS_BOOT": ("reboot",),
    "CAP_SYS_PTRACE": ("kcmp", "pidfd_getfd", "process_madvise", "process_vm_readv", "process_vm_writev",
                       "ptrace"),
    "CAP_SYS_NICE": ("get_mempolicy", "mbind", "set_mempolicy", "set_mempolicy_home_node"),
    "CAP_SYSLOG": ("syslog",),
    "CAP_BPF": ("bpf",),
    "CAP_PERFMON": ("perf_event_open",),
}.items():
    for _name in _names:
        _DOCKER_CAP_GATED[_name] = (*_DOCKER_CAP_GATED.get(_name, ()), _cap)
# Allowed to everyone on kernels >= 4.8, where ptrace can no longer bypass seccomp.
_PTRACE_MIN_KERNEL = "4.8"
_PTRACE_FAMILY = ("process_vm_readv", "process_vm_writev", "ptrace")
# Never allowed by Docker's default profile: the kernel keyring is not namespaced; pivot_root is the
# runtime's business.
_DOCKER_DENIED = ("add_key", "keyctl", "request_key", "pivot_root")
# clone(2) without CLONE_NEW* flags stays allowed without CAP_SYS_ADMIN (fork, threads).
_CLONE_NAMESPACE_FLAGS = 0x7E020000


def native_arch(machine: str) -> str:
    """libseccomp's name for a uname machine or GOARCH name ("x86_64" -> "amd64"); unknown names pass."""
    return _NATIVE.get(machine, machine)


def parse_kernel(release: str) -> tuple[int, int, int]:
    """(major, minor, patch) of a kernel release such as "6.18.44-fc-v782" or "4.8"."""
    m = re.match(r"^(\d+)\.(\d+)(?:\.(\d+))?", release.strip())
    if not m:
        raise InvalidArgument(f"Can't parse kernel version {release}")
    return int(m.group(1)), int(m.group(2)), int(m.group(3) or 0)


def _kernel_at_least(kernel: str | None, minimum: str) -> bool:
    # No known kernel: assume a current one (every minKernel in use is from 2016 or older).
    return kernel is None or parse_kernel(kernel) >= parse_kernel(minimum)


def to_oci(profile: Mapping[str, Any], *, capabilities: Collection[str], arch: str,
           kernel: str | None) -> dict[str, Any] | None:
    """The OCI ``linux.seccomp`` object for a Docker-format ``profile``.

    ``capabilities`` is the container's *bounding* set ("CAP_" names): a rule with ``includes.caps``
    applies only when all of them are in it, a rule with ``excludes.caps`` only when none is.  ``arch``
    is the host's machine ("x86_64") and selects the ``archMap`` entry and the arch-conditioned rules;
    ``kernel`` is the host's release, compared with ``minKernel`` (None: assume a recent kernel).
    Returns None for an empty profile (no defaultAction, no syscalls), which Docker treats as "no filter".
    """
    if not profile.get("defaultAction") and not profile.get("syscalls"):
        return None
    if profile.get("architectures") and profile.get("archMap"):
        raise InvalidArgument("'architectures' and 'archMap' were specified in the seccomp profile, "
                              "use either 'architectures' or 'archMap'")
    native = native_arch(arch)
    caps = set(capabilities)
    out: dict[str, Any] = {"defaultAction": profile.get("defaultAction") or "SCMP_ACT_ALLOW"}
    if profile.get("defaultErrnoRet") is not None:
        out["defaultErrnoRet"] = int(profile["defaultErrnoRet"])
    architectures = list(profile.get("architectures") or [])
    scmp = _SCMP_ARCH.get(native)
    for entry in profile.get("archMap") or []:
        if scmp is not None and entry.get("architecture") == scmp:
            architectures += [entry["architecture"], *(entry.get("subArchitectures") or [])]
            break
    if architectures:
        out["architectures"] = architectures
    if profile.get("flags"):
        out["flags"] = list(profile["flags"])
    out["syscalls"] = [_oci_rule(rule) for rule in profile.get("syscalls") or []
                       if _applies(rule, caps, native, kernel)]
    return out


def _applies(rule: Mapping[str, Any], caps: set[str], native: str, kernel: str | None) -> bool:
    """moby's filter: excludes first (any match drops the rule), then includes (all must match)."""
    excludes = rule.get("excludes") or {}
    includes = rule.get("includes") or {}
    if native in (excludes.get("arches") or []):
        return False
    if any(c in caps for c in excludes.get("caps") or []):
        return False
    if excludes.get("minKernel") and _kernel_at_least(kernel, excludes["minKernel"]):
        return False
    if includes.get("arches") and native not in includes["arches"]:
        return False
    if not all(c in caps for c in includes.get("caps") or []):
        return False
    return not includes.get("minKernel") or _kernel_at_least(kernel, includes["minKernel"])


def _oci_rule(rule: Mapping[str, Any]) -> dict[str, Any]:
    if rule.get("name") and rule.get("names"):
        raise InvalidArgument("'name' and 'names' were specified in the seccomp profile, "
                              "use either 'name' or 'names'")
    names = [rule["name"]] if rule.get("name") else list(rule.get("names") or [])
    out: dict[str, Any] = {"names": names, "action": rule["action"]}
    if rule.get("errnoRet") is not None:
        out["errnoRet"] = int(rule["errnoRet"])
    args = [{"index": int(a["index"]), "value": int(a.get("value", 0)),
             "valueTwo": int(a.get("valueTwo", 0)), "op": a["op"]} for a in rule.get("args") or []]
    if args:
        out["args"] = args
    return out


def docker_default(base: Mapping[str, Any]) -> dict[str, Any]:
    """Docker's default policy made from containers-common's profile ``base`` (a new dict).

    The syscalls Docker gates on capabilities are taken out of every rule of ``base`` and put back as
    pairs of rules: ALLOW when one of the capabilities is in the bounding set, ERRNO(EPERM) when none
    is (the pair form keeps libseccomp from ever seeing two actions for one unconditional syscall).
    clone keeps Docker's special case: allowed without CAP_SYS_ADMIN unless it asks for new namespaces,
    and clone3 answers ENOSYS so that libc falls back to clone.
    """
    profile = copy.deepcopy(dict(base))
    removed = set(_DOCKER_CAP_GATED) | set(_DOCKER_DENIED)
    rules: list[dict[str, Any]] = []
    for rule in profile.get("syscalls") or []:
        names = [n for n in (rule.get("names") or [rule.get("name")]) if n and n not in removed]
        if names:
            rule = {k: v for k, v in rule.items() if k != "name"}
            rules.append({**rule, "names": names})
    rules.append({"names": list(_PTRACE_FAMILY), "action": "SCMP_ACT_ALLOW",
                  "includes": {"minKernel": _PTRACE_MIN_KERNEL}})
    by_cap: dict[str, list[str]] = {}
    by_capset: dict[tuple[str, ...], list[str]] = {}
    for name, caps in _DOCKER_CAP_GATED.items():
        for cap in caps:
            by_cap.setdefault(cap, []).append(name)
        by_capset.setdefault(caps, []).append(name)
    for cap, names in by_cap.items():
        rules.append({"names": sorted(names), "action": "SCMP_ACT_ALLOW", "includes": {"caps": [cap]}})
    for caps, names in by_capset.items():
        names = [n for n in names if n not in ("clone", "clone3")]
        plain = [n for n in names if n not in _PTRACE_FAMILY]
        if plain:
            rules.append(_errno(plain, EPERM, {"caps": list(caps)}))
        old = [n for n in names if n in _PTRACE_FAMILY]
        if old:
            rules.append(_errno(old, EPERM, {"caps": list(caps), "minKernel": _PTRACE_MIN_KERNEL}))
    rules.append({"names": ["clone"], "action": "SCMP_ACT_ALLOW",
                  "args": [{"index": 0, "value": _CLONE_NAMESPACE_FLAGS, "valueTwo": 0,
                            "op": "SCMP_CMP_MASKED_EQ"}],
                  "excludes": {"caps": ["CAP_SYS_ADMIN"], "arches": ["s390", "s390x"]}})
    rules.append({"names": ["clone"], "action": "SCMP_ACT_ALLOW",
                  "args": [{"index": 1, "value": _CLONE_NAMESPACE_FLAGS, "valueTwo": 0,
                            "op": "SCMP_CMP_MASKED_EQ"}],
                  "comment": "s390 parameter ordering for clone is different",
                  "includes": {"arches": ["s390", "s390x"]}, "excludes": {"caps": ["CAP_SYS_ADMIN"]}})
    rules.append(_errno(["clone3"], ENOSYS, {"caps": ["CAP_SYS_ADMIN"]}))
    rules.append(_errno(list(_DOCKER_DENIED), EPERM, {}))
    profile["syscalls"] = rules
    return profile


def _errno(names: list[str], errno: int, excludes: dict[str, Any]) -> dict[str, Any]:
    return {"names": names, "action": "SCMP_ACT_ERRNO", "errnoRet": errno, "excludes": excludes}


def seccomp_option(security_opt: Sequence[str]) -> str | None:
    """The value of the last ``seccomp=`` (or ``seccomp:``) security option, or None when absent.

    "unconfined" disables the filter, "builtin" and "" mean the default profile, anything else is the
    path of a Docker-format profile.
    """
    value = None
    for opt in security_opt:
        key, sep, val = split_option(opt)
        if key == "seccomp" and sep:
            value = val
    return value


def split_option(opt: str) -> tuple[str, str, str]:
    # Docker accepts both key=value and the older key:value.
    eq, colon = opt.find("="), opt.find(":")
    cut = min(i for i in (eq, colon, len(opt)) if i >= 0)
    return opt[:cut], opt[cut:cut + 1], opt[cut + 1:]


def parse_profile(text: str, source: str) -> dict[str, Any]:
    """A Docker-format profile from JSON text; ``source`` names it in errors."""
    try:
        data = json.loads(text)
    except ValueError as exc:
        raise InvalidArgument(f"compacting json for seccomp profile ({source}) failed: {exc}") from exc
    if not isinstance(data, dict):
        raise InvalidArgument(f"Decoding seccomp profile failed: {source} is not a JSON object")
    for rule in data.get("syscalls") or []:
        if not isinstance(rule, dict) or "action" not in rule:
            raise InvalidArgument(f"Decoding seccomp profile failed: bad syscall rule {rule!r} in {source}")
    return data


def rules_for(oci: Mapping[str, Any] | None, syscall: str) -> list[dict[str, Any]]:
    """The rules of an OCI seccomp object that name ``syscall`` (a helper for callers and tests)."""
    if not oci:
        return []
    return [r for r in oci.get("syscalls") or [] if syscall in r["names"]]


def allowed(oci: Mapping[str, Any] | None, syscall: str, *, args: Iterable[int] | None = None) -> bool:
    """Would the filter let ``syscall`` through?  Rules with argument conditions count as allowing
    only when ``args`` is None (i.e. "for some arguments").  No filter allows everything."""
    if oci is None:
        return True
    rules = rules_for(oci, syscall)
    if not rules:
        return oci["defaultAction"] in ("SCMP_ACT_ALLOW", "SCMP_ACT_LOG")
    return any(r["action"] in ("SCMP_ACT_ALLOW", "SCMP_ACT_LOG") and (args is None or not r.get("args"))
               for r in rules)


# --- impure edge: files and uname -------------------------------------------------------------------

def load_profile(path: str) -> dict[str, Any]:
    """Read a Docker-format profile; InvalidArgument with Docker's words when it cannot be read."""
    try:
        with open(path, encoding="utf-8") as f:
            text = f.read()
    except OSError as exc:
        reason = exc.strerror.lower() if exc.strerror else str(exc)
        raise InvalidArgument(f"opening seccomp profile ({path}) failed: open {path}: {reason}") from exc
    return parse_profile(text, path)


def load_default_profile(path: str = DEFAULT_PROFILE_PATH) -> dict[str, Any]:
    """Docker's default profile, made from the host's containers-common file (see :func:`docker_default`)."""
    return docker_default(load_profile(path))


def profile_for(security_opt: Sequence[str], *, default_path: str = DEFAULT_PROFILE_PATH
                ) -> dict[str, Any] | None:
    """The Docker-format profile a container's ``--security-opt`` list asks for: None for
    ``seccomp=unconfined``, the file for ``seccomp=/path``, Docker's default otherwise."""
    value = seccomp_option(security_opt)
    if value == UNCONFINED:
        return None
    if value in (None, "", "builtin"):
        return load_default_profile(default_path)
    return load_profile(value)


def host_arch() -> str:
    """The host's machine name, as uname reports it ("x86_64")."""
    import os

    return os.uname().machine


def host_kernel() -> str:
    """The host's kernel release ("6.1.0-18-amd64")."""
    import os

    return os.uname().release
