"""The OCI runtime config dockyard writes for runc: schema-valid, and Docker's defaults.

Every config built here is checked against the OCI runtime-spec schema (tests/helpers/runtimeschema.py);
host facts (hard limits, capabilities, arch, kernel, seccomp profile) are passed in, so nothing here
depends on the machine except the two files read on purpose: the schemas and Debian's seccomp profile.
"""

from __future__ import annotations

import copy
import json
import resource
from pathlib import Path
from typing import Any

import pytest

from dockyard.containers.model import ContainerSpec, MountSpec, Resources, Ulimit
from dockyard.errors import FailedPrecondition, InvalidArgument
from dockyard.runtime import seccomp
from dockyard.runtime.spec import (
    ALL_CAPABILITIES,
    DEFAULT_CAPABILITIES,
    ResolvedUser,
    current_capabilities,
    current_hard_limits,
    make_runtime_spec,
    merge_tmpfs_options,
    resolve_user,
)
from tests.helpers.runtimeschema import errors as schema_errors
from tests.helpers.runtimeschema import schema_dir

DOCKER_CAPS = {"CAP_CHOWN", "CAP_DAC_OVERRIDE", "CAP_FSETID", "CAP_FOWNER", "CAP_MKNOD", "CAP_NET_RAW",
               "CAP_SETGID", "CAP_SETUID", "CAP_SETFCAP", "CAP_SETPCAP", "CAP_NET_BIND_SERVICE",
               "CAP_SYS_CHROOT", "CAP_KILL", "CAP_AUDIT_WRITE"}
DOCKER_MASKED = ["/proc/asound", "/proc/acpi", "/proc/interrupts", "/proc/kcore", "/proc/keys",
                 "/proc/latency_stats", "/proc/timer_list", "/proc/timer_stats", "/proc/sched_debug",
                 "/proc/scsi", "/sys/firmware", "/sys/devices/virtual/powercap"]
DOCKER_READONLY = ["/proc/bus", "/proc/fs", "/proc/irq", "/proc/sys", "/proc/sysrq-trigger"]
ETC = {"resolv.conf": "/c/resolv.conf", "hostname": "/c/hostname", "hosts": "/c/hosts"}
HARD = {"nofile": 20000, "nproc": 96364, "core": -1, "stack": -1, "memlock": 8388608}
HOST_CAPS = frozenset(c for c in ALL_CAPABILITIES if c != "CAP_SYS_RESOURCE")   # like this host
PASSWD = """root:x:0:0:root:/root:/bin/sh
daemon:x:1:1:daemon:/usr/sbin:/bin/false
# a comment
www-data:x:33:33:www-data:/var/www:/bin/false
app:x:1000:1000:App:/home/app:/bin/sh
nohome:x:1001:1001::
"""
GROUP = """root:x:0:
daemon:x:1:
wheel:x:10:root,app
www-data:x:33:
staff:x:50:app
app:x:1000:
audio:x:29:nobody
"""


@pytest.fixture(scope="module")
def default_profile() -> dict[str, Any]:
    # Debian's containers-common file is installed by scripts/setup.sh: missing is a broken machine.
    assert Path(seccomp.DEFAULT_PROFILE_PATH).is_file(), "install golang-github-containers-common"
    return seccomp.load_default_profile()


def make_spec(**kw: Any) -> ContainerSpec:
    base: dict[str, Any] = {"id": "c0ffee" * 10 + "abcd", "name": "web", "image_id": "sha256:1",
                            "image_name": "busybox", "args": ["sh", "-c", "true"]}
    return ContainerSpec(**{**base, **kw})


def build(spec: ContainerSpec, profile: dict[str, Any] | None, *, user: ResolvedUser | None = None,
          **kw: Any) -> dict[str, Any]:
    """A config with fixed host facts; every config is also checked against the schema."""
    args: dict[str, Any] = {"rootfs": "/b/rootfs", "etc_files": ETC, "cgroups_path": "/dockyard/x",
                            "user": user or ResolvedUser(0, 0, (), "/root"), "hard_limits": HARD,
                            "seccomp_profile": profile, "host_caps": HOST_CAPS, "arch": "x86_64",
                            "kernel": "6.1.0-18-amd64"}
    config = make_runtime_spec(spec, **{**args, **kw})
    assert schema_errors(config) == []
    json.dumps(config)   # the wire format: JSON-serialisable as is
    return config


def mount(config: dict[str, Any], dest: str) -> dict[str, Any]:
    found = [m for m in config["mounts"] if m["destination"] == dest]
    assert len(found) == 1, (dest, config["mounts"])
    return found[0]


# --- the schema helper ------------------------------------------------------------------------------

def test_schema_folder_is_present_and_catches_errors(default_profile):
    assert (schema_dir() / "config-schema.json").is_file()
    config = build(make_spec(), default_profile)
    broken = copy.deepcopy(config)
    broken["linux"]["namespaces"].append({"type": "bogus"})
    broken["mounts"][0].pop("destination")
    broken["linux"]["seccomp"]["architectures"] = ["SCMP_ARCH_NOPE"]
    found = schema_errors(broken)
    assert any(e.startswith("linux/namespaces/5") for e in found)
    assert any(e.startswith("mounts/0") for e in found)
    assert any(e.startswith("linux/seccomp/architectures/0") for e in found)


@pytest.mark.parametrize("kw", [
    {},
    {"tty": True, "read_only": True, "working_dir": "/srv", "hostname": "box", "domainname": "example.org"},
    {"privileged": True},
    {"network_mode": "host", "cap_add": ["ALL"], "cap_drop": ["NET_RAW"]},
    {"security_opt": ["seccomp=unconfined", "no-new-privileges"]},
    {"tmpfs": {"/run": "size=64m,mode=1777", "/tmp": ""}, "shm_size": 1 << 20,
     "ulimits": [Ulimit("nofile", 1024, 4096), Ulimit("core", -1, -1)],
     "resources": Resources(memory=1 << 30, memory_swap=-1, memory_reservation=1 << 29, nano_cpus=1_500_000_000,
                            cpu_shares=512, cpuset_cpus="0-1", cpuset_mems="0", pids_limit=100,
                            oom_kill_disable=True),
     "mounts": [MountSpec(type="bind", target="/data", source="/srv/data", readonly=True, options=["rshared"]),
                MountSpec(type="volume", target="/var/lib/db", source="/var/lib/dockyard/volumes/db/_data",
                          name="db"),
                MountSpec(type="tmpfs", target="/cache", options=["size=65536k", "mode=1777"])]},
])
def test_configs_validate_against_the_oci_schema(default_profile, kw):
    build(make_spec(**kw), default_profile)


# --- process -----------------------------------------------------------------------------------------

def test_defaults_are_dockers(default_profile):
    c = build(make_spec(), default_profile)
    assert c["ociVersion"] == "1.0.2-dev"
    p = c["process"]
    assert p["args"] == ["sh", "-c", "true"] and p["cwd"] == "/" and p["terminal"] is False
    assert p["user"] == {"uid": 0, "gid": 0, "additionalGids": [0]}
    assert p["noNewPrivileges"] is False and p["oomScoreAdj"] == 0
    assert "rlimits" not in p                       # no RLIMIT_NOFILE=1048576 as podman asks for
    assert c["root"] == {"path": "/b/rootfs", "readonly": False}
    assert c["hostname"] == "c0ffeec0ffee"          # Docker: the short id when no --hostname
    assert "sysctl" not in c["linux"]
    assert c["linux"]["cgroupsPath"] == "/dockyard/x"


def test_default_capabilities_are_exactly_dockers_14(default_profile):
    caps = build(make_spec(), default_profile)["process"]["capabilities"]
    assert len(DEFAULT_CAPABILITIES) == 14 and set(DEFAULT_CAPABILITIES) == DOCKER_CAPS
    for kind in ("bounding", "effective", "permitted"):
        assert sorted(caps[kind]) == sorted(DOCKER_CAPS), kind
    assert caps["inheritable"] == [] and caps["ambient"] == []
    mask = sum(1 << ALL_CAPABILITIES.index(c) for c in caps["effective"])
    assert mask == 0xA80425FB                        # what /proc/self/status shows in a Docker container


@pytest.mark.parametrize("add, drop, expect_in, expect_out", [
    (["NET_ADMIN", "cap_sys_time"], [], {"CAP_NET_ADMIN", "CAP_SYS_TIME"} | DOCKER_CAPS, set()),
    ([], ["CHOWN", "CAP_NET_RAW"], DOCKER_CAPS - {"CAP_CHOWN", "CAP_NET_RAW"}, {"CAP_CHOWN", "CAP_NET_RAW"}),
    (["ALL"], ["MKNOD"], HOST_CAPS - {"CAP_MKNOD"}, {"CAP_MKNOD", "CAP_SYS_RESOURCE"}),
    (["SYS_ADMIN"], ["ALL"], {"CAP_SYS_ADMIN"}, DOCKER_CAPS),
    (["all"], [], HOST_CAPS, {"CAP_SYS_RESOURCE"}),
])
def test_cap_add_and_drop(default_profile, add, drop, expect_in, expect_out):
    caps = build(make_spec(cap_add=add, cap_drop=drop), default_profile)["process"]["capabilities"]
    assert expect_in <= set(caps["bounding"]) and not expect_out & set(caps["bounding"])
    assert caps["effective"] == caps["bounding"] == caps["permitted"]
    assert len(caps["bounding"]) == len(set(caps["bounding"]))


@pytest.mark.parametrize("name", ["FOO", "cap_foo", "CAP_FOO"])
def test_unknown_capability_is_refused_with_dockers_words(default_profile, name):
    with pytest.raises(InvalidArgument, match='^unknown capability: "CAP_FOO"$'):
        build(make_spec(cap_add=[name]), default_profile)
    with pytest.raises(InvalidArgument, match='unknown capability: "CAP_FOO"'):
        build(make_spec(cap_drop=[name]), default_profile)


def test_a_capability_this_host_lacks_is_a_failed_precondition(default_profile):
    with pytest.raises(FailedPrecondition, match="CAP_SYS_RESOURCE"):
        build(make_spec(cap_add=["SYS_RESOURCE"]), default_profile)


def test_non_root_user_keeps_only_the_bounding_set(default_profile):
    c = build(make_spec(cap_add=["NET_ADMIN"]), default_profile, user=ResolvedUser(1000, 1000, (50,), "/home/app"))
    caps = c["process"]["capabilities"]
    assert "CAP_NET_ADMIN" in caps["bounding"] and caps["effective"] == caps["permitted"] == []
    assert c["process"]["user"] == {"uid": 1000, "gid": 1000, "additionalGids": [1000, 50]}


def test_environment(default_profile):
    env = build(make_spec(tty=True, hostname="box"), default_profile)["process"]["env"]
    assert env == ["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin", "HOSTNAME=box",
                   "TERM=xterm", "HOME=/root"]
    env = build(make_spec(env=["PATH=/bin", "A=1", "HOME=/h", "TERM=dumb", "HOSTNAME"]), default_profile,
                user=ResolvedUser(5, 5, (), "/"))["process"]["env"]
    assert env == ["PATH=/bin", "A=1", "HOME=/h", "TERM=dumb"]   # HOSTNAME unset by the bare name
    env = build(make_spec(), default_profile, user=ResolvedUser(5, 5, (), "/"))["process"]["env"]
    assert env[-1] == "HOME=/"


@pytest.mark.parametrize("opts, field, expected", [
    (["no-new-privileges"], "nnp", True),
    (["no-new-privileges:true"], "nnp", True),
    (["no-new-privileges=false"], "nnp", False),
    (["systempaths=unconfined"], "paths", None),
])
def test_security_options(default_profile, opts, field, expected):
    c = build(make_spec(security_opt=opts), default_profile)
    if field == "nnp":
        assert c["process"]["noNewPrivileges"] is expected
    else:
        assert "maskedPaths" not in c["linux"] and "readonlyPaths" not in c["linux"]
    assert build(make_spec(no_new_privileges=True), default_profile)["process"]["noNewPrivileges"] is True
    with pytest.raises(InvalidArgument):
        build(make_spec(security_opt=["no-new-privileges:maybe"]), default_profile)
    with pytest.raises(InvalidArgument):
        build(make_spec(security_opt=["bogus=1"]), default_profile)


def test_init_wraps_the_command(default_profile):
    c = build(make_spec(init=True), default_profile, init_path="/usr/bin/tini")
    assert c["process"]["args"] == ["/sbin/docker-init", "--", "sh", "-c", "true"]
    assert mount(c, "/sbin/docker-init")["source"] == "/usr/bin/tini"
    with pytest.raises(FailedPrecondition):
        build(make_spec(init=True), default_profile)


# --- ulimits and resources ---------------------------------------------------------------------------

def test_ulimits_within_the_hard_limit(default_profile):
    c = build(make_spec(ulimits=[Ulimit("nofile", 1024, 20000), Ulimit("core", -1, -1)]), default_profile)
    assert c["process"]["rlimits"] == [
        {"type": "RLIMIT_NOFILE", "soft": 1024, "hard": 20000},
        {"type": "RLIMIT_CORE", "soft": 2**64 - 1, "hard": 2**64 - 1},
    ]


@pytest.mark.parametrize("ulimit, message", [
    (Ulimit("nofile", 1048576, 1048576), (r"ulimit nofile: hard limit 1048576 is above this host's hard "
                                          r"limit 20000.*--ulimit nofile=20000:20000")),
    (Ulimit("nofile", 1024, -1), "hard limit unlimited is above"),
    (Ulimit("nproc", 10, 100000), "ulimit nproc"),
    (Ulimit("nofile", 2048, 1024), "ulimit soft limit must be less than or equal to hard limit: 2048 > 1024"),
    (Ulimit("bogus", 1, 1), "invalid ulimit type: bogus"),
])
def test_ulimits_above_the_hard_limit_are_refused(default_profile, ulimit, message):
    with pytest.raises(InvalidArgument, match=message):
        build(make_spec(ulimits=[ulimit]), default_profile)


def test_current_hard_limits_are_this_process():
    limits = current_hard_limits()
    hard = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
    assert limits["nofile"] == (-1 if hard == resource.RLIM_INFINITY else hard)
    assert set(limits) >= {"nofile", "nproc", "core", "stack", "memlock"}


def test_current_capabilities_reads_permitted_and_bounding(tmp_path):
    status = tmp_path / "status"
    status.write_text("Name:\tx\nCapPrm:\t000001fffeffffff\nCapBnd:\t000001ffffffffff\n")
    caps = current_capabilities(str(status))
    assert "CAP_SYS_RESOURCE" not in caps and len(caps) == 40 and "CAP_CHECKPOINT_RESTORE" in caps


def test_cpus_memory_pids(default_profile):
    r = Resources(nano_cpus=1_500_000_000, memory=512 << 20, memory_reservation=256 << 20, cpu_shares=512,
                  cpuset_cpus="0-1", pids_limit=64)
    res = build(make_spec(resources=r), default_profile)["linux"]["resources"]
    assert res["cpu"] == {"period": 100000, "quota": 150000, "shares": 512, "cpus": "0-1"}
    assert res["memory"] == {"limit": 512 << 20, "swap": 1 << 30, "reservation": 256 << 20}
    assert res["pids"] == {"limit": 64}
    res = build(make_spec(resources=Resources(cpu_period=50000, cpu_quota=25000, pids_limit=0)),
                default_profile)["linux"]["resources"]
    assert res["cpu"] == {"period": 50000, "quota": 25000} and res["pids"] == {"limit": -1}
    assert "memory" not in res


@pytest.mark.parametrize("r, message", [
    (Resources(nano_cpus=10**9, cpu_period=100000), "Nano CPUs and CPU Period cannot both be set"),
    (Resources(nano_cpus=10**9, cpu_quota=100000), "Nano CPUs and CPU Quota cannot both be set"),
    (Resources(memory_swap=1 << 30), "always set the Memory limit"),
    (Resources(memory=1 << 30, memory_swap=1 << 29), "memoryswap limit should be larger"),
    (Resources(memory=1 << 20), "Minimum memory limit allowed is 6MB"),
])
def test_bad_resource_combinations(default_profile, r, message):
    with pytest.raises(InvalidArgument, match=message):
        build(make_spec(resources=r), default_profile)


def test_device_cgroup_rules(default_profile):
    devices = build(make_spec(), default_profile)["linux"]["resources"]["devices"]
    assert devices[0] == {"allow": False, "access": "rwm"}
    allowed = {(d.get("type"), d.get("major"), d.get("minor"), d["access"]) for d in devices if d["allow"]}
    for ma, mi in [(1, 3), (1, 5), (1, 7), (1, 8), (1, 9), (5, 0), (5, 1), (5, 2), (136, None), (10, 200)]:
        assert ("c", ma, mi, "rwm") in allowed
    assert {("c", None, None, "m"), ("b", None, None, "m")} <= allowed
    fuse = devices.index({"allow": False, "type": "c", "major": 10, "minor": 229, "access": "rwm"})
    # runc's cgroup v1 emulator refuses a deny after a wildcard allow of the same type
    assert all("major" in d for d in devices[:fuse] if d.get("type") == "c")


# --- mounts ------------------------------------------------------------------------------------------

def test_default_mounts(default_profile):
    c = build(make_spec(shm_size=32 << 20), default_profile)
    dests = [m["destination"] for m in c["mounts"]]
    assert dests == ["/proc", "/dev", "/dev/pts", "/sys", "/sys/fs/cgroup", "/dev/mqueue", "/dev/shm",
                     "/etc/resolv.conf", "/etc/hostname", "/etc/hosts"]
    assert mount(c, "/proc") == {"destination": "/proc", "type": "proc", "source": "proc",
                                 "options": ["nosuid", "noexec", "nodev"]}
    assert mount(c, "/dev")["options"] == ["nosuid", "strictatime", "mode=755", "size=65536k"]
    assert mount(c, "/dev/pts")["options"] == ["nosuid", "noexec", "newinstance", "ptmxmode=0666", "mode=0620",
                                               "gid=5"]
    assert {"ro", "nosuid", "noexec", "nodev"} <= set(mount(c, "/sys")["options"])
    assert mount(c, "/sys/fs/cgroup")["type"] == "cgroup" and "ro" in mount(c, "/sys/fs/cgroup")["options"]
    assert mount(c, "/dev/mqueue")["type"] == "mqueue"
    assert mount(c, "/dev/shm")["options"] == ["nosuid", "noexec", "nodev", "mode=1777", "size=33554432"]
    assert mount(c, "/etc/hosts") == {"destination": "/etc/hosts", "type": "bind", "source": "/c/hosts",
                                      "options": ["rbind", "rprivate"]}


def test_read_only_root(default_profile):
    c = build(make_spec(read_only=True), default_profile)
    assert c["root"]["readonly"] is True
    assert "ro" in mount(c, "/etc/hosts")["options"] and "ro" in mount(c, "/etc/resolv.conf")["options"]
    for writable in ("/dev/shm", "/dev", "/proc", "/dev/mqueue", "/dev/pts"):
        assert "ro" not in mount(c, writable)["options"]


@pytest.mark.parametrize("data, expected", [
    ("", ["noexec", "nosuid", "nodev", "rprivate"]),
    ("size=64m", ["noexec", "nosuid", "nodev", "rprivate", "size=64m"]),
    ("exec,size=64m,mode=1777", ["nosuid", "nodev", "rprivate", "exec", "size=64m", "mode=1777"]),
    ("size=1g,size=2g,rshared", ["noexec", "nosuid", "nodev", "size=2g", "rshared"]),
    ("ro,uid=1000,gid=1000,nr_inodes=10k", ["noexec", "nosuid", "nodev", "rprivate", "ro", "uid=1000",
                                            "gid=1000", "nr_inodes=10k"]),
])
def test_tmpfs_options(default_profile, data, expected):
    c = build(make_spec(tmpfs={"/run": data}), default_profile)
    assert mount(c, "/run") == {"destination": "/run", "type": "tmpfs", "source": "tmpfs", "options": expected}


@pytest.mark.parametrize("data, message", [
    ("foo", r'invalid tmpfs option \["foo"\]'),
    ("bar=1", r'invalid tmpfs option \["bar" "1"\]'),
    ("size=lots", "bad value for size"),
    ("mode=999", "bad value for mode"),
])
def test_bad_tmpfs_options(default_profile, data, message):
    with pytest.raises(InvalidArgument, match=message):
        build(make_spec(tmpfs={"/run": data}), default_profile)
    with pytest.raises(InvalidArgument, match=message):
        merge_tmpfs_options(["noexec", data])


def test_user_mounts(default_profile):
    mounts = [
        MountSpec(type="bind", target="/data/sub", source="/srv/sub"),
        MountSpec(type="bind", target="/data", source="/srv/data", readonly=True, options=["rslave", "z"]),
        MountSpec(type="volume", target="/var/lib/db/", source="/v/db/_data", name="db"),
        MountSpec(type="tmpfs", target="/dev/shm", readonly=True, options=["size=1m"]),
        MountSpec(type="bind", target="/etc/hosts", source="/my/hosts", options=["bind"]),
    ]
    c = build(make_spec(mounts=mounts, tmpfs={"/data/tmp": ""}), default_profile)
    dests = [m["destination"] for m in c["mounts"]]
    assert dests.count("/dev/shm") == 1 and dests.count("/etc/hosts") == 1
    user = dests[dests.index("/dev/mqueue") + 1:]
    assert user.index("/data") < user.index("/data/sub") and user.index("/data") < user.index("/data/tmp")
    assert [d.count("/") for d in user] == sorted(d.count("/") for d in user)
    assert mount(c, "/data") == {"destination": "/data", "type": "bind", "source": "/srv/data",
                                 "options": ["rbind", "ro", "rslave"]}
    assert mount(c, "/data/sub")["options"] == ["rbind", "rprivate"]
    assert mount(c, "/var/lib/db") == {"destination": "/var/lib/db", "type": "bind", "source": "/v/db/_data",
                                       "options": ["rbind", "rprivate"]}
    assert mount(c, "/dev/shm") == {"destination": "/dev/shm", "type": "tmpfs", "source": "tmpfs",
                                    "options": ["noexec", "nosuid", "nodev", "rprivate", "ro", "size=1m"]}
    assert mount(c, "/etc/hosts") == {"destination": "/etc/hosts", "type": "bind", "source": "/my/hosts",
                                      "options": ["bind", "rprivate"]}
    assert c["linux"]["rootfsPropagation"] == "slave"
    # the mounts argument (volumes resolved by the caller) wins over spec.mounts
    c = build(make_spec(mounts=mounts), default_profile, mounts=[])
    assert "/data" not in [m["destination"] for m in c["mounts"]]


def test_user_dev_mount_replaces_every_default_under_dev(default_profile):
    c = build(make_spec(mounts=[MountSpec(type="bind", target="/dev", source="/dev")]), default_profile)
    assert not [m for m in c["mounts"] if m["destination"].startswith("/dev/")]


@pytest.mark.parametrize("mounts, tmpfs, message", [
    ([MountSpec(type="bind", target="/a", source="/x"), MountSpec(type="volume", target="/a/", source="/y")],
     {}, "Duplicate mount point: /a"),
    ([MountSpec(type="bind", target="/a", source="/x")], {"/a": ""}, "Duplicate mount point: /a"),
    ([MountSpec(type="bind", target="rel", source="/x")], {}, "mount path must be absolute"),
    ([], {"tmp": ""}, 'type "tmpfs": invalid mount path'),
    ([MountSpec(type="bind", target="/", source="/x")], {}, "destination can't be '/'"),
    ([MountSpec(type="volume", target="/a", source="db", name="db")], {}, "volume 'db' is not an absolute"),
    ([MountSpec(type="npipe", target="/a", source="/x")], {}, 'mount type "npipe"'),
    ([MountSpec(type="bind", target="/a", source="/x", options=["wat"])], {}, "invalid mount option 'wat'"),
])
def test_bad_mounts(default_profile, mounts, tmpfs, message):
    with pytest.raises(InvalidArgument, match=message):
        build(make_spec(mounts=mounts, tmpfs=tmpfs), default_profile)


def test_masked_and_readonly_paths_are_dockers(default_profile):
    c = build(make_spec(), default_profile)
    assert c["linux"]["maskedPaths"] == DOCKER_MASKED
    assert c["linux"]["readonlyPaths"] == DOCKER_READONLY


def test_privileged(default_profile):
    c = build(make_spec(privileged=True, cap_drop=["ALL"]), default_profile)
    caps = c["process"]["capabilities"]
    assert set(caps["effective"]) == set(HOST_CAPS)           # everything this host can give
    assert "seccomp" not in c["linux"]
    assert "maskedPaths" not in c["linux"] and "readonlyPaths" not in c["linux"]
    assert "ro" not in mount(c, "/sys")["options"] and "ro" not in mount(c, "/sys/fs/cgroup")["options"]
    assert c["linux"]["resources"]["devices"] == [{"allow": True, "access": "rwm"}]


# --- namespaces --------------------------------------------------------------------------------------

@pytest.mark.parametrize("mode, netns, expected", [
    ("bridge", None, {"type": "network"}),
    ("none", None, {"type": "network"}),
    ("mynet", "/run/netns/x", {"type": "network", "path": "/run/netns/x"}),
    ("container:abc", "/proc/42/ns/net", {"type": "network", "path": "/proc/42/ns/net"}),
    ("host", None, None),
])
def test_network_namespace(default_profile, mode, netns, expected):
    ns = build(make_spec(network_mode=mode), default_profile, netns_path=netns)["linux"]["namespaces"]
    assert {n["type"] for n in ns} >= {"pid", "ipc", "uts", "mount"}
    net = [n for n in ns if n["type"] == "network"]
    assert net == ([expected] if expected else [])


def test_joining_a_container_needs_its_namespace(default_profile):
    with pytest.raises(InvalidArgument, match="container:abc"):
        build(make_spec(network_mode="container:abc"), default_profile)


# --- users -------------------------------------------------------------------------------------------

@pytest.mark.parametrize("user, expected", [
    ("", ResolvedUser(0, 0, (10,), "/root")),
    ("root", ResolvedUser(0, 0, (10,), "/root")),
    ("0", ResolvedUser(0, 0, (10,), "/root")),
    ("app", ResolvedUser(1000, 1000, (10, 50), "/home/app")),
    ("1000", ResolvedUser(1000, 1000, (10, 50), "/home/app")),
    ("www-data", ResolvedUser(33, 33, (), "/var/www")),
    ("app:staff", ResolvedUser(1000, 50, (), "/home/app")),
    ("app:33", ResolvedUser(1000, 33, (), "/home/app")),
    ("1000:1000", ResolvedUser(1000, 1000, (), "/home/app")),
    ("4242", ResolvedUser(4242, 0, (), "/")),                 # numeric, no entry: allowed, gid 0
    ("4242:4343", ResolvedUser(4242, 4343, (), "/")),
    ("4242:audio", ResolvedUser(4242, 29, (), "/")),
    ("nohome", ResolvedUser(1001, 1001, (), "/")),
    ("daemon:wheel:extra", ResolvedUser(1, 10, (), "/usr/sbin")),
])
def test_resolve_user(user, expected):
    assert resolve_user(user, PASSWD, GROUP) == expected


@pytest.mark.parametrize("user, passwd, group, message", [
    ("nobody", PASSWD, GROUP, "^unable to find user nobody: no matching entries in passwd file$"),
    ("app:nogroup", PASSWD, GROUP, "^unable to find group nogroup: no matching entries in group file$"),
    ("app", None, None, "^unable to find user app: no matching entries in passwd file$"),
    ("0:wheel", PASSWD, None, "unable to find group wheel"),
    ("-1", PASSWD, GROUP, "uids and gids must be in range 0-2147483647"),
    ("1:-5", PASSWD, GROUP, "uids and gids must be in range"),
])
def test_resolve_user_errors(user, passwd, group, message):
    with pytest.raises(InvalidArgument, match=message):
        resolve_user(user, passwd, group)


def test_resolve_user_without_image_files():
    assert resolve_user("", None, None) == ResolvedUser(0, 0, (), "/")
    assert resolve_user("1000:1000", None, None) == ResolvedUser(1000, 1000, (), "/")


# --- seccomp -----------------------------------------------------------------------------------------

def filter_for(profile: dict[str, Any], caps: set[str] | list[str] = DOCKER_CAPS, arch: str = "x86_64",
               kernel: str = "6.1.0") -> dict[str, Any]:
    out = seccomp.to_oci(profile, capabilities=caps, arch=arch, kernel=kernel)
    assert out is not None
    return out


def test_default_filter_in_the_config(default_profile):
    sc = build(make_spec(), default_profile)["linux"]["seccomp"]
    assert sc["defaultAction"] == "SCMP_ACT_ERRNO"
    assert sc["architectures"] == ["SCMP_ARCH_X86_64", "SCMP_ARCH_X86", "SCMP_ARCH_X32"]
    assert seccomp.allowed(sc, "read") and seccomp.allowed(sc, "arch_prctl")


@pytest.mark.parametrize("syscall", ["mount", "umount2", "unshare", "setns", "reboot", "keyctl", "pivot_root",
                                     "bpf", "kexec_load", "init_module", "open_by_handle_at", "syslog"])
def test_default_filter_blocks_privileged_syscalls(default_profile, syscall):
    sc = filter_for(default_profile)
    assert not seccomp.allowed(sc, syscall)


@pytest.mark.parametrize("cap, syscalls", [
    ("CAP_SYS_ADMIN", ["mount", "umount2", "unshare", "setns", "sethostname", "clone3", "bpf"]),
    ("CAP_SYS_BOOT", ["reboot"]),
    ("CAP_SYS_MODULE", ["init_module", "finit_module"]),
    ("CAP_DAC_READ_SEARCH", ["open_by_handle_at"]),
    ("CAP_SYSLOG", ["syslog"]),
    ("CAP_SYS_PTRACE", ["kcmp", "pidfd_getfd"]),
])
def test_capabilities_open_the_filter(default_profile, cap, syscalls):
    sc = filter_for(default_profile, DOCKER_CAPS | {cap})
    for name in syscalls:
        assert seccomp.allowed(sc, name), name
    assert not seccomp.allowed(sc, "keyctl")                 # never, whatever the capabilities


def test_cap_add_in_the_config_opens_mount(default_profile):
    sc = build(make_spec(cap_add=["SYS_ADMIN"]), default_profile)["linux"]["seccomp"]
    assert seccomp.allowed(sc, "mount")
    assert not seccomp.allowed(build(make_spec(), default_profile)["linux"]["seccomp"], "mount")


def test_clone_without_sys_admin(default_profile):
    sc = filter_for(default_profile)
    clone = seccomp.rules_for(sc, "clone")
    assert [r["args"][0]["op"] for r in clone] == ["SCMP_CMP_MASKED_EQ"]    # no new namespaces
    assert seccomp.rules_for(sc, "clone3") == [{"names": ["clone3"], "action": "SCMP_ACT_ERRNO", "errnoRet": 38}]


def test_min_kernel_and_arches(default_profile):
    assert seccomp.allowed(filter_for(default_profile, kernel="6.1"), "ptrace")
    assert not seccomp.allowed(filter_for(default_profile, kernel="4.4.0"), "ptrace")
    assert seccomp.allowed(filter_for(default_profile, DOCKER_CAPS | {"CAP_SYS_PTRACE"}, kernel="4.4"), "ptrace")
    arm = filter_for(default_profile, arch="aarch64")
    assert arm["architectures"] == ["SCMP_ARCH_AARCH64", "SCMP_ARCH_ARM"]
    assert not seccomp.rules_for(arm, "arch_prctl") and seccomp.allowed(arm, "set_tls")
    assert not seccomp.rules_for(filter_for(default_profile), "set_tls")


@pytest.mark.parametrize("caps", [set(), DOCKER_CAPS, set(ALL_CAPABILITIES),
                                  DOCKER_CAPS | {"CAP_SYS_ADMIN"}, DOCKER_CAPS | {"CAP_SYSLOG", "CAP_BPF"}])
def test_no_syscall_gets_two_unconditional_actions(default_profile, caps):
    # libseccomp refuses two different actions for one syscall without argument conditions
    actions: dict[str, set[tuple[str, int | None]]] = {}
    for rule in filter_for(default_profile, caps)["syscalls"]:
        if not rule.get("args"):
            for name in rule["names"]:
                actions.setdefault(name, set()).add((rule["action"], rule.get("errnoRet")))
    assert {n: a for n, a in actions.items() if len(a) > 1} == {}


def test_unconfined_and_custom_profiles(default_profile, tmp_path):
    c = build(make_spec(security_opt=["seccomp=unconfined"]), default_profile)
    assert "seccomp" not in c["linux"]
    assert seccomp.profile_for(["seccomp=unconfined"]) is None
    assert seccomp.profile_for([]) == default_profile
    custom = tmp_path / "p.json"
    custom.write_text(json.dumps({"defaultAction": "SCMP_ACT_ALLOW", "syscalls": [
        {"names": ["chmod"], "action": "SCMP_ACT_ERRNO", "errnoRet": 1},
        {"name": "mkdir", "action": "SCMP_ACT_ERRNO", "includes": {"arches": ["arm64"]}}]}))
    profile = seccomp.profile_for([f"seccomp={custom}"])
    sc = build(make_spec(security_opt=[f"seccomp={custom}"]), profile)["linux"]["seccomp"]
    assert sc == {"defaultAction": "SCMP_ACT_ALLOW",
                  "syscalls": [{"names": ["chmod"], "action": "SCMP_ACT_ERRNO", "errnoRet": 1}]}
    assert seccomp.to_oci({}, capabilities=[], arch="x86_64", kernel="6.1") is None


def test_bad_custom_profiles(tmp_path):
    with pytest.raises(InvalidArgument, match=r"^opening seccomp profile \(/x/none.json\) failed: "
                                              r"open /x/none.json: no such file or directory$"):
        seccomp.profile_for(["seccomp=/x/none.json"])
    bad = tmp_path / "bad.json"
    bad.write_text("{nope")
    with pytest.raises(InvalidArgument, match="seccomp profile"):
        seccomp.load_profile(str(bad))
    both = {"defaultAction": "SCMP_ACT_ERRNO", "architectures": ["SCMP_ARCH_X86_64"],
            "archMap": [{"architecture": "SCMP_ARCH_X86_64"}]}
    with pytest.raises(InvalidArgument, match="use either 'architectures' or 'archMap'"):
        seccomp.to_oci(both, capabilities=[], arch="x86_64", kernel="6.1")
    with pytest.raises(InvalidArgument, match="use either 'name' or 'names'"):
        seccomp.to_oci({"defaultAction": "SCMP_ACT_ERRNO", "syscalls": [
            {"name": "a", "names": ["b"], "action": "SCMP_ACT_ALLOW"}]}, capabilities=[], arch="x86_64",
            kernel="6.1")


def test_the_debian_file_is_podmans_policy_and_docker_default_tightens_it(default_profile):
    raw = seccomp.load_profile(seccomp.DEFAULT_PROFILE_PATH)
    assert seccomp.allowed(filter_for(raw), "mount")          # why docker_default exists
    assert not seccomp.allowed(filter_for(default_profile), "mount")
    assert raw["syscalls"] and default_profile is not raw
