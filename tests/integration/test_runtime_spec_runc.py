"""The generated config.json run by the real runc: what a process inside the container sees.

A busybox rootfs is built once (bootstrap.build_busybox_rootfs) in a temporary directory under /var/tmp;
each test writes its own bundle whose root points at it and runs ``runc --root <tmp>/runc run`` in the
foreground without a terminal, capturing the output of one shell script.  Every run is followed by
``runc delete -f`` and the removal of the cgroup directories it made (cgroupsPath /dockyard-test/<id>
in every hierarchy of this hybrid cgroup v1/v2 host); the temporary directory is removed only once
nothing is mounted below it.  Containers that write do so in tmpfs mounts, never in the shared rootfs.
"""

from __future__ import annotations

import json
import os
import resource
import shutil
import subprocess
import tempfile
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from dockyard.containers.model import ContainerSpec, Resources, Ulimit
from dockyard.images.bootstrap import build_busybox_rootfs
from dockyard.runtime.spec import (
    ALL_CAPABILITIES,
    MASKED_PATHS,
    READONLY_PATHS,
    current_capabilities,
    make_runtime_spec,
    resolve_user,
)

# scripts/setup.sh installs runc and busybox-static and the suite runs as root: a missing prerequisite is
# a broken machine and fails loudly instead of skipping.
assert os.geteuid() == 0, "the runc tests need root"
assert shutil.which("runc"), "runc must be installed (scripts/setup.sh)"

pytestmark = pytest.mark.root
CGROUP_PARENT = "/dockyard-test"
DEFAULT_CAPEFF = "00000000a80425fb"


def _mountpoints() -> list[tuple[str, str]]:
    with open("/proc/self/mountinfo") as f:
        rows = [line.split() for line in f]
    out = []
    for row in rows:
        fstype = row[row.index("-") + 1]
        out.append((row[4].replace("\\040", " "), fstype))
    return out


def _cgroup_dirs(path: str) -> list[Path]:
    """``path`` (a cgroupsPath) in every cgroup hierarchy mounted on this host."""
    return [Path(mp + path) for mp, fstype in _mountpoints() if fstype in ("cgroup", "cgroup2")]


def _remove_cgroups(path: str) -> None:
    for d in _cgroup_dirs(path):
        if d.is_dir():
            for sub in sorted((p for p in d.rglob("*") if p.is_dir()), key=lambda p: len(p.parts), reverse=True):
                sub.rmdir()
            d.rmdir()
    for d in _cgroup_dirs(CGROUP_PARENT):   # only when no other test container is left in it
        try:
            d.rmdir()
        except OSError:
            pass


def _remove_tree(path: Path) -> None:
    prefix = str(path).rstrip("/") + "/"
    for mp in sorted((m for m, _ in _mountpoints() if m.startswith(prefix)), key=len, reverse=True):
        subprocess.run(["umount", "-l", mp], check=False, capture_output=True)
    assert not [m for m, _ in _mountpoints() if m.startswith(prefix)], f"mounts left under {path}"
    shutil.rmtree(path, ignore_errors=True)


@dataclass
class Result:
    code: int
    out: str
    err: str
    config: dict[str, Any]

    def field(self, key: str) -> str:
        """The value printed as ``key=value`` (or /proc/self/status's ``Key:\\tvalue``) by the script."""
        for line in self.out.splitlines():
            for sep in ("=", ":"):
                k, s, v = line.partition(sep)
                if s and k.strip() == key:
                    return v.strip()
        raise AssertionError(f"{key} not in output:\n{self.out}\nstderr:\n{self.err}")


class Runner:
    def __init__(self, work: Path, rootfs: Path) -> None:
        self.work, self.rootfs = work, rootfs
        self.etc = work / "etc"
        self.etc.mkdir()
        (self.etc / "hostname").write_text("box\n")
        (self.etc / "hosts").write_text("127.0.0.1\tlocalhost\n")
        (self.etc / "resolv.conf").write_text("nameserver 127.0.0.1\n")

    def __call__(self, script: str, **kw: Any) -> Result:
        cid = "dyspec-" + uuid.uuid4().hex[:12]
        spec = ContainerSpec(id=cid, name=cid, image_id="sha256:0", image_name="busybox",
                             args=["sh", "-c", script], hostname="box", **kw)
        user = resolve_user(spec.user, (self.rootfs / "etc/passwd").read_text(),
                            (self.rootfs / "etc/group").read_text())
        cgroups_path = f"{CGROUP_PARENT}/{cid}"
        config = make_runtime_spec(spec, rootfs=str(self.rootfs),
                                   etc_files={k: str(self.etc / k) for k in ("hostname", "hosts", "resolv.conf")},
                                   cgroups_path=cgroups_path, user=user)
        bundle = self.work / "bundles" / cid
        bundle.mkdir(parents=True)
        (bundle / "config.json").write_text(json.dumps(config, indent=1))
        runc = ["runc", "--root", str(self.work / "runc")]
        try:
            p = subprocess.run([*runc, "run", "--bundle", str(bundle), cid], check=False, stdin=subprocess.DEVNULL,
                               capture_output=True, text=True, timeout=120)
        finally:
            subprocess.run([*runc, "delete", "-f", cid], capture_output=True, check=False)
            _remove_cgroups(cgroups_path)
        assert not [d for d in _cgroup_dirs(cgroups_path) if d.exists()]
        return Result(p.returncode, p.stdout, p.stderr, config)


@pytest.fixture(scope="module")
def run() -> Iterator[Runner]:
    work = Path(tempfile.mkdtemp(prefix="dockyard-spec-", dir="/var/tmp"))
    try:
        rootfs = work / "rootfs"
        build_busybox_rootfs(rootfs)
        yield Runner(work, rootfs)
    finally:
        _remove_tree(work)


def test_default_container(run):
    r = run('echo pid=$$; echo host=$(hostname); grep -E "^(CapEff|CapBnd|Seccomp):" /proc/self/status; '
            'echo nofile=$(ulimit -n); echo etc=$(cat /etc/hostname); echo uid=$(id -u); echo cwd=$(pwd); '
            'echo home=$HOME; echo term=${TERM:-none}', shm_size=32 << 20)
    assert r.code == 0, r.err
    assert r.field("pid") == "1"
    assert r.field("host") == "box" and r.field("etc") == "box"
    assert r.field("CapEff") == DEFAULT_CAPEFF and r.field("CapBnd") == DEFAULT_CAPEFF
    assert r.field("Seccomp") == "2"
    assert r.field("uid") == "0" and r.field("cwd") == "/" and r.field("home") == "/root"
    assert r.field("term") == "none"
    # no rlimits asked for: the container inherits this process's (nothing raised, nothing refused)
    assert r.field("nofile") == str(resource.getrlimit(resource.RLIMIT_NOFILE)[0])


def test_dev_shm_is_a_tmpfs_of_the_given_size(run):
    r = run('grep " /dev/shm " /proc/self/mounts; echo kb=$(df -k /dev/shm | tail -1 | awk "{print \\$2}")',
            shm_size=32 << 20)
    assert r.code == 0, r.err
    assert r.out.split()[2] == "tmpfs" and "size=32768k" in r.out
    assert r.field("kb") == "32768"


def test_masked_and_read_only_paths(run):
    present = [p for p in MASKED_PATHS if os.path.exists(p)]   # /proc/kcore is absent on some kernels
    assert present, "no masked path exists on this host"
    r = run("cat /proc/self/mountinfo; for p in " + " ".join(present) +
            '; do echo "masked$p=$(cat $p 2>/dev/null | wc -c) $(ls $p 2>/dev/null | wc -l)"; done')
    assert r.code == 0, r.err
    mounts = {line.split()[4]: line.split()[5] for line in r.out.splitlines() if line[:1].isdigit()}
    for p in present:
        assert p in mounts, f"{p} not masked"
        size, entries = r.field(f"masked{p}").split()
        assert size == "0" and entries in ("0", "1"), (p, size, entries)   # /dev/null or an empty tmpfs
    if os.path.exists("/proc/kcore"):
        assert "/proc/kcore" in mounts
    for p in READONLY_PATHS:
        if os.path.exists(p):
            assert mounts[p].startswith("ro"), p


def test_read_only_rootfs_refuses_writes(run):
    r = run("touch /x; echo touch=$?; echo hi > /dev/shm/f && echo shm=$(cat /dev/shm/f); "
            "echo hosts=$(grep -c localhost /etc/hosts)", read_only=True)
    assert r.code == 0, r.err
    assert r.field("touch") == "1" and "Read-only file system" in r.err
    assert r.field("shm") == "hi" and r.field("hosts") == "1"
    assert not (run.rootfs / "x").exists()


def test_ulimit_within_the_hard_limit(run):
    hard = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
    limit = 1000 if hard == resource.RLIM_INFINITY else min(1000, hard)
    r = run("echo soft=$(ulimit -n); echo hard=$(ulimit -Hn)", ulimits=[Ulimit("nofile", limit // 2, limit)])
    assert r.code == 0, r.err
    assert r.field("soft") == str(limit // 2) and r.field("hard") == str(limit)


def test_cap_add_sys_admin_passes_the_seccomp_filter(run):
    script = "mkdir /dev/shm/m && mount -t tmpfs none /dev/shm/m && echo mounted=yes || echo mounted=no"
    assert run(script).field("mounted") == "no"
    r = run(script + '; grep "^Seccomp:" /proc/self/status', cap_add=["SYS_ADMIN"])
    assert r.field("mounted") == "yes", r.err
    assert r.field("Seccomp") == "2"


def test_resources_reach_the_cgroups(run):
    r = run("echo quota=$(cat /sys/fs/cgroup/cpu/cpu.cfs_quota_us); "
            "echo period=$(cat /sys/fs/cgroup/cpu/cpu.cfs_period_us); "
            "echo mem=$(cat /sys/fs/cgroup/memory/memory.limit_in_bytes); "
            "echo pids=$(cat /sys/fs/cgroup/pids/pids.max)",
            resources=Resources(nano_cpus=1_500_000_000, memory=64 << 20, pids_limit=100))
    assert r.code == 0, r.err
    assert r.field("quota") == "150000" and r.field("period") == "100000"
    assert r.field("mem") == str(64 << 20) and r.field("pids") == "100"


def test_non_root_user(run):
    r = run('echo uid=$(id -u); echo gid=$(id -g); grep -E "^(CapEff|CapBnd):" /proc/self/status; echo home=$HOME',
            user="nobody")
    assert r.code == 0, r.err
    assert r.field("uid") == "65534" and r.field("CapEff") == "0000000000000000"
    assert r.field("CapBnd") == DEFAULT_CAPEFF


def test_privileged(run):
    r = run('grep -E "^(CapEff|Seccomp):" /proc/self/status; grep " /sys " /proc/self/mounts', privileged=True)
    assert r.code == 0, r.err
    host = current_capabilities()
    assert int(r.field("CapEff"), 16) == sum(1 << ALL_CAPABILITIES.index(c) for c in host)
    assert r.field("Seccomp") == "0"
    assert " rw," in r.out
    assert "seccomp" not in r.config["linux"]
