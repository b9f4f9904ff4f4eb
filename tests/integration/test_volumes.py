"""Volumes end to end: named/anonymous/local-option volumes, -v and --mount, copy-up, the volume CLI,
``system df -v``, and the Docker volume plugin protocol with a plugin written for the tests."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

pytestmark = pytest.mark.root

HELPERS = Path(__file__).resolve().parent.parent / "helpers"


def inspect(d, name: str, kind: str = "") -> dict:
    args = ("volume", "inspect", name) if kind == "volume" else ("inspect", name)
    return json.loads(d(*args).stdout)[0]


def wait_for(pred, timeout: float = 15.0, interval: float = 0.1):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = pred()
        if value:
            return value
        time.sleep(interval)
    raise AssertionError("condition not met in time")


def volume_names(d, *filters: str) -> list[str]:
    args = [a for f in filters for a in ("--filter", f)]
    return d("volume", "ls", "-q", *args).stdout.split()


def mounted(path: Path | str) -> bool:
    target = str(path)
    with open("/proc/self/mountinfo") as f:
        return any(line.split()[4] == target for line in f)


def running_ids(d) -> list[str]:
    return d("ps", "-q", "--no-trunc").stdout.split()


# -- the walkthroughs ---------------------------------------------------------------------------
def test_shared_volume_walkthrough(busybox):
    d = busybox
    assert d("volume", "create", "shared_volume").stdout == "shared_volume\n"
    d("run", "-d", "--name", "container1", "-v", "shared_volume:/data", "busybox", "sh", "-c",
      "echo 'Hello from container1' > /data/message.txt && sleep 3600")
    wait_for(lambda: d("exec", "container1", "cat", "/data/message.txt", check=False).returncode == 0)
    d("run", "-d", "--name", "container2", "-v", "shared_volume:/data", "busybox", "sh", "-c",
      "cat /data/message.txt && sleep 3600")
    wait_for(lambda: d("logs", "container2").stdout == "Hello from container1\n")
    # what one writes the other reads at once
    d("exec", "container2", "sh", "-c", "echo 'Hello from container2' >> /data/message.txt")
    assert d("exec", "container1", "cat", "/data/message.txt").stdout == \
        "Hello from container1\nHello from container2\n"
    ids = sorted(inspect(d, c)["Id"] for c in ("container1", "container2"))
    p = d("volume", "rm", "shared_volume", check=False)
    assert p.returncode == 1
    m = re.search(r"remove shared_volume: volume is in use - \[(.*)\]", p.stderr)
    assert m and sorted(m.group(1).split(", ")) == ids
    d("stop", "-t", "0", "container1", "container2")
    d("rm", "container1", "container2")
    # the data outlives both containers, and every command here is a new dockyard process
    assert volume_names(d) == ["shared_volume"]
    out = d("run", "--rm", "-v", "shared_volume:/data", "busybox", "cat", "/data/message.txt").stdout
    assert out == "Hello from container1\nHello from container2\n"
    host = Path(inspect(d, "shared_volume", "volume")["Mountpoint"])
    assert host == d.root / "volumes" / "shared_volume" / "_data"
    assert (host / "message.txt").read_text().startswith("Hello from container1")


def test_two_volumes_in_one_container(busybox):
    d = busybox
    d("volume", "create", "volume1")
    d("volume", "create", "volume2")
    d("run", "-d", "--name", "multi", "-v", "volume1:/data1", "-v", "volume2:/data2", "busybox", "sh", "-c",
      "echo one > /data1/f && echo two > /data2/f && sleep 3600")
    wait_for(lambda: d("exec", "multi", "cat", "/data1/f", "/data2/f", check=False).stdout == "one\ntwo\n")
    mounts = {m["Destination"]: m for m in inspect(d, "multi")["Mounts"]}
    assert mounts["/data1"]["Name"] == "volume1" and mounts["/data2"]["Name"] == "volume2"
    assert mounts["/data1"]["Type"] == "volume" and mounts["/data1"]["Driver"] == "local"
    assert mounts["/data1"]["RW"] is True
    assert inspect(d, "multi")["HostConfig"]["Binds"] == ["volume1:/data1", "volume2:/data2"]
    assert d("ps", "--filter", "volume=volume2", "--format", "{{.Names}} {{.LocalVolumes}}").stdout == "multi 2\n"
    d("rm", "-f", "multi")
    assert volume_names(d) == ["volume1", "volume2"]
    out = d("run", "--rm", "-v", "volume1:/a", "-v", "volume2:/b", "busybox", "cat", "/a/f", "/b/f").stdout
    assert out == "one\ntwo\n"


# -- copy-up, anonymous volumes, rm -v ----------------------------------------------------------
@pytest.fixture
def seeded(busybox):
    """busybox plus ``seeded:1`` (content in /srv/app, owned by 1000) and ``withvol:1`` (VOLUME /srv/app)."""
    busybox("run", "--name", "base", "busybox", "sh", "-c",
            "mkdir -p /srv/app/sub && echo seeded > /srv/app/file && echo deep > /srv/app/sub/x "
            "&& chown -R 1000:1000 /srv/app && chmod 750 /srv/app")
    busybox("commit", "base", "seeded:1")
    busybox("commit", "-c", "VOLUME /srv/app", "base", "withvol:1")
    busybox("rm", "base")
    return busybox


def test_copy_up_and_nocopy(seeded):
    d = seeded
    assert d("run", "--rm", "-v", "cu:/srv/app", "seeded:1", "cat", "/srv/app/file", "/srv/app/sub/x").stdout == \
        "seeded\ndeep\n"
    host = Path(inspect(d, "cu", "volume")["Mountpoint"])
    st = host.stat()
    assert (st.st_uid, st.st_gid, st.st_mode & 0o777) == (1000, 1000, 0o750)
    assert (host / "sub" / "x").stat().st_uid == 1000
    # a volume with content is never overwritten
    (host / "file").write_text("mine\n")
    assert d("run", "--rm", "-v", "cu:/srv/app", "seeded:1", "cat", "/srv/app/file").stdout == "mine\n"
    # nocopy, both spellings
    assert d("run", "--rm", "-v", "nc:/srv/app:nocopy", "seeded:1", "ls", "-A", "/srv/app").stdout == ""
    assert d("run", "--rm", "--mount", "source=nc2,target=/srv/app,volume-nocopy", "seeded:1",
             "ls", "-A", "/srv/app").stdout == ""
    # a bind mount never gets the image's content
    assert d("run", "--rm", "--mount", "type=volume,src=cu2,dst=/srv/app", "seeded:1",
             "cat", "/srv/app/file").stdout == "seeded\n"


def test_anonymous_volumes_and_rm_v(seeded):
    d = seeded
    # the image's VOLUME becomes an anonymous volume, filled from the image
    d("run", "--name", "ca", "withvol:1", "cat", "/srv/app/file")
    assert d("logs", "ca").stdout == "seeded\n"
    mounts = inspect(d, "ca")["Mounts"]
    assert len(mounts) == 1 and mounts[0]["Destination"] == "/srv/app" and mounts[0]["Type"] == "volume"
    anon = mounts[0]["Name"]
    assert re.fullmatch(r"[0-9a-f]{64}", anon)
    v = inspect(d, anon, "volume")
    assert v["Labels"] == {"com.docker.volume.anonymous": ""}
    d("rm", "ca")  # without -v the anonymous volume stays (dangling)
    assert volume_names(d, "dangling=true") == [anon]
    # rm -v: anonymous volumes go, named ones never
    d("create", "--name", "cb", "-v", "/anon", "-v", "named:/named", "--mount", "type=volume,target=/anon2",
      "busybox", "true")
    b_vols = {m["Destination"]: m["Name"] for m in inspect(d, "cb")["Mounts"]}
    assert set(volume_names(d)) == {anon, "named", b_vols["/anon"], b_vols["/anon2"]}
    d("rm", "-v", "cb")
    assert set(volume_names(d)) == {anon, "named"}
    # run --rm removes its anonymous volumes too
    d("run", "--rm", "-v", "/scratch", "-v", "named:/n", "busybox", "sh", "-c", "echo x > /scratch/f")
    assert set(volume_names(d)) == {anon, "named"}
    # a -v with a user-given hex name in another container is not anonymous there
    d("create", "--name", "cc", "-v", f"{anon}:/x", "busybox", "true")
    d("rm", "-v", "cc")
    assert anon in volume_names(d)


# -- the volume commands -----------------------------------------------------------------------
def test_volume_rm_refuses_in_use_even_stopped(busybox):
    d = busybox
    d("volume", "create", "used")
    cid = d("create", "--name", "holder", "-v", "used:/data", "busybox", "true").stdout.strip()
    p = d("volume", "rm", "used", check=False)
    assert p.returncode == 1
    assert p.stderr.strip() == f"Error response from daemon: remove used: volume is in use - [{cid}]"
    p = d("volume", "rm", "-f", "used", check=False)
    assert p.returncode == 1 and "volume is in use" in p.stderr
    assert volume_names(d, "dangling=false") == ["used"]
    d("rm", "holder")
    assert d("volume", "rm", "used").stdout == "used\n"
    p = d("volume", "rm", "used", check=False)
    assert p.returncode == 1 and "get used: no such volume" in p.stderr
    assert d("volume", "rm", "-f", "used").returncode == 0


def test_prune(busybox):
    d = busybox
    d("volume", "create", "keepme")
    d("volume", "create", "--label", "tier=cache", "unused_named")
    d("create", "--name", "user", "-v", "keepme:/k", "busybox", "true")
    d("create", "--name", "tmp", "-v", "/anon", "busybox", "true")
    anon = inspect(d, "tmp")["Mounts"][0]["Name"]
    d("rm", "tmp")
    d("run", "--rm", "-v", "unused_named:/x", "busybox", "sh", "-c", "head -c 2000 /dev/zero > /x/f")
    # the default: anonymous unused volumes only (Docker 23+)
    out = d("volume", "prune", "-f").stdout
    assert out == f"Deleted Volumes:\n{anon}\n\nTotal reclaimed space: 0B\n"
    assert set(volume_names(d)) == {"keepme", "unused_named"}
    # a label filter that matches nothing
    assert d("volume", "prune", "-af", "--filter", "label=tier=other").stdout == "Total reclaimed space: 0B\n"
    # -a: named ones too, never one in use
    out = d("volume", "prune", "-a", "-f").stdout
    assert out == "Deleted Volumes:\nunused_named\n\nTotal reclaimed space: 2kB\n"
    assert volume_names(d) == ["keepme"]
    # without -f it asks
    p = d("volume", "prune", input="n\n")
    assert "WARNING! This will remove anonymous local volumes not used by at least one container." in p.stdout
    p = d("volume", "prune", "--filter", "bogus=1", "-f", check=False)
    assert p.returncode == 1 and "invalid filter 'bogus'" in p.stderr


def test_ls_filters_and_format(busybox):
    d = busybox
    d("volume", "create", "--label", "env=prod", "--label", "team", "alpha")
    d("volume", "create", "--label", "env=dev", "beta")
    d("volume", "create", "gamma10")
    d("volume", "create", "gamma9")
    d("create", "--name", "cc", "-v", "alpha:/a", "busybox", "true")
    assert d("volume", "ls").stdout.splitlines() == [
        "DRIVER    VOLUME NAME", "local     alpha", "local     beta", "local     gamma9", "local     gamma10"]
    assert volume_names(d, "dangling=true") == ["beta", "gamma9", "gamma10"]
    assert volume_names(d, "dangling=0") == ["alpha"]
    assert volume_names(d, "label=env") == ["alpha", "beta"]
    assert volume_names(d, "label=env=prod") == ["alpha"]
    assert volume_names(d, "label=env=prod", "label=team") == ["alpha"]
    assert volume_names(d, "name=gamma") == ["gamma9", "gamma10"]
    assert volume_names(d, "name=^b") == ["beta"]
    assert volume_names(d, "driver=local") == ["alpha", "beta", "gamma9", "gamma10"]
    assert volume_names(d, "driver=other") == []
    out = d("volume", "ls", "--format", '{{.Name}}:{{.Label "env"}}:{{.Scope}}', "-f", "label=env").stdout
    assert out == "alpha:prod:local\nbeta:dev:local\n"
    out = d("volume", "ls", "--format", "table {{.Name}}\t{{.Labels}}", "-f", "name=alpha").stdout
    assert out.splitlines() == ["VOLUME NAME   LABELS", "alpha         env=prod,team="]
    row = json.loads(d("volume", "ls", "--format", "json", "-f", "name=beta").stdout)
    assert row["Name"] == "beta" and row["Driver"] == "local" and row["Mountpoint"].endswith("/beta/_data")
    p = d("volume", "ls", "-f", "dangling=maybe", check=False)
    assert p.returncode == 1 and "invalid filter 'dangling=maybe'" in p.stderr
    p = d("volume", "ls", "-f", "colour=red", check=False)
    assert p.returncode == 1 and "invalid filter 'colour'" in p.stderr


def test_inspect_shape_and_secret_masking(busybox):
    d = busybox
    name = d("volume", "create").stdout.strip()
    assert re.fullmatch(r"[0-9a-f]{64}", name)
    v = inspect(d, name, "volume")
    assert list(v) == ["CreatedAt", "Driver", "Labels", "Mountpoint", "Name", "Options", "Scope"]
    assert v["Driver"] == "local" and v["Scope"] == "local" and v["Labels"] is None and v["Options"] is None
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ", v["CreatedAt"])
    d("volume", "create", "--name", "opts", "--label", "a=b", "-o", "type=cifs", "-o", "device=//srv/share",
      "-o", "o=username=me,password=hunter2,vers=3")
    v = inspect(d, "opts", "volume")
    assert v["Labels"] == {"a": "b"}
    assert v["Options"] == {"type": "cifs", "device": "//srv/share", "o": "username=me,password=********,vers=3"}
    assert "hunter2" not in d("volume", "inspect", "opts").stdout
    assert "hunter2" not in (d.root / "dockyard.db").read_bytes().decode(errors="replace")
    opts_file = d.root / "volumes" / "opts" / "opts.json"
    assert opts_file.stat().st_mode & 0o077 == 0
    assert d("volume", "inspect", "-f", "{{.Name}} {{.Driver}}", "opts").stdout == "opts local\n"
    p = d("volume", "inspect", "opts", "nosuch", check=False)
    assert p.returncode == 1 and "No such volume: nosuch" in p.stderr
    assert len(json.loads(p.stdout)) == 1
    # create is idempotent for the same name and driver
    assert d("volume", "create", "opts").stdout == "opts\n"
    p = d("volume", "create", "x", "--name", "y", check=False)
    assert p.returncode != 0 and "conflicting options" in p.stderr


# -- local driver options ----------------------------------------------------------------------
def test_local_tmpfs_volume_refcounted_across_processes(busybox):
    d = busybox
    d("volume", "create", "--driver", "local", "-o", "type=tmpfs", "-o", "device=tmpfs", "-o", "o=size=100m",
      "tmpvol")
    data = d.root / "volumes" / "tmpvol" / "_data"
    assert not mounted(data)  # mounted on first use only
    d("run", "-d", "--name", "t1", "-v", "tmpvol:/data", "busybox", "sleep", "3600")
    assert mounted(data)
    assert d("exec", "t1", "df", "-k", "/data").stdout.splitlines()[1].split()[1] == "102400"
    d("exec", "t1", "sh", "-c", "echo in-memory > /data/f")
    d("run", "-d", "--name", "t2", "-v", "tmpvol:/data", "busybox", "sleep", "3600")
    assert d("exec", "t2", "cat", "/data/f").stdout == "in-memory\n"
    # t1 stops: t2 still holds the mount (the refs live on disk, each command is a new process)
    d("stop", "-t", "0", "t1")
    assert mounted(data)
    assert d("exec", "t2", "cat", "/data/f").stdout == "in-memory\n"
    # the last one out unmounts; conmon's exit command does it for a container that just exits
    d("kill", "t2")
    wait_for(lambda: inspect(d, "t2")["State"]["Status"] == "exited")
    wait_for(lambda: not mounted(data))
    # a tmpfs volume's content lives while mounted, as Docker's does
    assert d("run", "--rm", "-v", "tmpvol:/data", "busybox", "ls", "-A", "/data").stdout == ""
    assert not mounted(data)


def test_local_bind_volume_and_bad_options(busybox, scratch):
    d = busybox
    host = scratch / "hostdir"
    host.mkdir()
    (host / "pre").write_text("from host\n")
    d("volume", "create", "-o", "type=none", "-o", "o=bind", "-o", f"device={host}", "hostvol")
    out = d("run", "--rm", "-v", "hostvol:/data", "busybox", "sh", "-c", "cat /data/pre; echo back > /data/new")
    assert out.stdout == "from host\n"
    assert (host / "new").read_text() == "back\n"
    assert not mounted(d.root / "volumes" / "hostvol" / "_data")
    cases = [
        (("-o", "bogus=1", "v1"), 'create v1: invalid option: "bogus"'),
        (("-o", "type=tmpfs", "v2"), 'create v2: missing required option: "device"'),
        (("-o", "o=size=1m", "-o", "type=tmpfs", "v3"), 'create v3: missing required option: "device"'),
        (("-o", "size=10m", "v4"), "create v4: quota size requested but no quota support"),
        (("a/b",), 'create a/b: "a/b" includes invalid characters for a local volume name'),
        (("x",), "create x: volume name is too short"),
        (("-d", "nosuch", "v5"), 'create v5: error looking up volume plugin nosuch: plugin "nosuch" not found'),
    ]
    for args, message in cases:
        p = d("volume", "create", *args, check=False)
        assert p.returncode == 1, args
        assert message in p.stderr, (args, p.stderr)
    assert volume_names(d) == ["hostvol"]
    assert sorted(p.name for p in (d.root / "volumes").iterdir() if not p.name.startswith(".")) == ["hostvol"]
    # a mount that fails at start: the error names the volume and the cause; nothing half-mounted
    d("volume", "create", "-o", "type=none", "-o", "o=bind", "-o", f"device={scratch}/missing", "broken")
    d("volume", "create", "-o", "type=tmpfs", "-o", "device=tmpfs", "fine")
    p = d("run", "-d", "--name", "half", "-v", "fine:/a", "-v", "broken:/b", "busybox", "sleep", "60", check=False)
    assert p.returncode == 125
    assert "error while mounting volume 'broken'" in p.stderr and "failed to mount local volume" in p.stderr
    assert running_ids(d) == []
    assert not mounted(d.root / "volumes" / "fine" / "_data")
    assert not mounted(d.root / "volumes" / "broken" / "_data")
    assert json.loads((d.root / "volumes" / "fine" / "mounts.json").read_text()) == {}


# -- -v binds, --mount forms, tmpfs --------------------------------------------------------------
def test_binds_mount_forms_and_tmpfs(busybox, scratch):
    d = busybox
    host = scratch / "share"
    host.mkdir()
    (host / "in").write_text("host data\n")
    out = d("run", "--rm", "-v", f"{host}:/h:ro", "busybox", "sh", "-c",
            "cat /h/in; touch /h/x 2>&1; echo rc=$?").stdout
    assert out.startswith("host data\n") and "Read-only file system" in out
    d("run", "--rm", "-v", f"{host}:/h", "busybox", "sh", "-c", "echo rw > /h/out")
    assert (host / "out").read_text() == "rw\n"
    # -v creates a missing host directory, as Docker does; --mount refuses
    d("run", "--rm", "-v", f"{scratch}/made/by/v:/m", "busybox", "true")
    assert (scratch / "made" / "by" / "v").is_dir()
    p = d("run", "--rm", "--mount", f"type=bind,source={scratch}/nope,target=/m", "busybox", "true", check=False)
    assert p.returncode == 125
    assert f'invalid mount config for type "bind": bind source path does not exist: {scratch}/nope' in p.stderr
    # --mount: volume read-only, bind read-only with propagation, tmpfs with size and mode
    d("run", "--rm", "--mount", "type=volume,source=mv,target=/data", "busybox", "sh", "-c", "echo v > /data/f")
    out = d("run", "--rm", "--mount", "source=mv,target=/data,readonly", "busybox", "sh", "-c",
            "cat /data/f; touch /data/g 2>&1; echo rc=$?").stdout
    assert out.startswith("v\n") and "Read-only file system" in out
    d("create", "--name", "forms",
      "--mount", f"type=bind,src={host},dst=/b,ro=true,bind-propagation=rslave",
      "--mount", "type=tmpfs,target=/t,tmpfs-size=1m,tmpfs-mode=1770",
      "--mount", "type=volume,source=mv,target=/data,volume-driver=local",
      "busybox", "sh", "-c", "df -k /t | tail -1; stat -c %a /t; cat /b/in; cat /data/f")
    info = inspect(d, "forms")
    mounts = {m["Destination"]: m for m in info["Mounts"]}
    assert mounts["/b"] == {"Type": "bind", "Source": str(host), "Destination": "/b", "Mode": "", "RW": False,
                            "Propagation": "rslave"}
    assert mounts["/t"]["Type"] == "tmpfs" and mounts["/data"]["Name"] == "mv"
    hc = {m["Target"]: m for m in info["HostConfig"]["Mounts"]}
    assert hc["/t"]["TmpfsOptions"] == {"SizeBytes": 1 << 20, "Mode": 0o1770}
    assert hc["/b"]["ReadOnly"] is True and hc["/b"]["BindOptions"] == {"Propagation": "rslave"}
    d("start", "-a", "forms")
    lines = d("logs", "forms").stdout.splitlines()
    assert lines[0].split()[1] == "1024" and lines[1] == "1770" and lines[2:] == ["host data", "v"]
    # docker cp sees volume mounts of a stopped container
    d("cp", "forms:/data/f", str(scratch / "copied"))
    assert (scratch / "copied").read_text() == "v\n"


def test_bad_mount_flags(busybox):
    d = busybox
    cases = [
        (("-v", "/foo:rw"), "invalid volume specification: '/foo:rw'"),
        (("-v", "vol:/data:rx"), "invalid mode: rx"),
        (("-v", "vol:data"), ("invalid volume specification: 'vol:data': invalid mount config for type \"volume\": "
                              "invalid mount path: 'data' mount path must be absolute")),
        (("-v", "vol:/"), "destination can't be '/'"),
        (("-v", "/x:ro"), "invalid volume specification: '/x:ro'"),
        (("-v", "/anon:/anon:ro,rw"), "invalid mode: ro,rw"),
        (("--mount", "type=volume,target=/d,bogus=1"), "unexpected key 'bogus' in 'bogus=1'"),
        (("--mount", "type=volume"), "target is required"),
        (("--mount", "type=tmpfs,target=/t,volume-nocopy"), "cannot mix 'volume-*' options with mount type 'tmpfs'"),
        (("--mount", "type=bind,target=/t,readonly=maybe"), "invalid value for readonly: maybe"),
        (("--mount", "type=tmpfs,target=/t,tmpfs-size=lots"), "invalid value for tmpfs-size: lots"),
        (("--mount", "type=weird,target=/t"), "mount type unknown"),
        (("--mount", "type=volume,target=/t,readonly"), "must not set ReadOnly mode when using anonymous volumes"),
        (("--mount", "type=bind,source=/tmp,target=/t,bind-propagation=sideways"), "invalid propagation mode"),
        (("-v", "a/b:/x"), '"a/b" includes invalid characters for a local volume name'),
        (("-v", "vol1:/d", "-v", "vol2:/d"), "Duplicate mount point: /d"),
        (("-v", "newvol:/d", "--volume-driver", "nosuch"), 'plugin "nosuch" not found'),
    ]
    for args, message in cases:
        p = d("run", "--rm", *args, "busybox", "true", check=False)
        assert p.returncode == 125, (args, p.stderr)
        assert message in p.stderr, (args, p.stderr)
    assert d("ps", "-aq").stdout == ""
    assert volume_names(d) == []


# -- plugins -----------------------------------------------------------------------------------
class PluginProcess:
    def __init__(self, root: Path, name: str = "testplugin") -> None:
        self.dir = root / "data"
        self.sockets = root / "plugins"
        self.socket = self.sockets / f"{name}.sock"
        self.proc: subprocess.Popen | None = None

    def start(self) -> None:
        self.sockets.mkdir(parents=True, exist_ok=True)
        self.proc = subprocess.Popen([sys.executable, str(HELPERS / "volume_plugin.py"), "--socket",
                                      str(self.socket), "--dir", str(self.dir)])
        wait_for(self.socket.exists, timeout=10)

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        if self.socket.exists():
            self.socket.unlink()

    def kill(self) -> None:
        """Die as a crashed plugin does: the socket file stays, nobody answers."""
        if self.proc and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()

    def calls(self, method: str | None = None) -> list[dict]:
        try:
            lines = (self.dir / "calls.jsonl").read_text().splitlines()
        except FileNotFoundError:
            return []
        out = [json.loads(line) for line in lines]
        return [c for c in out if method is None or c["method"] == f"VolumeDriver.{method}"]


@pytest.fixture
def plugin(scratch, monkeypatch):
    p = PluginProcess(scratch / "plugin")
    p.start()
    monkeypatch.setenv("DOCKYARD_PLUGIN_DIRS", str(p.sockets))
    try:
        yield p
    finally:
        p.stop()


def test_plugin_protocol_end_to_end(busybox, plugin):
    d = busybox
    assert d("volume", "create", "--driver", "testplugin", "-o", "colour=blue", "--label", "x=y", "pv").stdout == "pv\n"
    assert plugin.calls("Create")[0]["body"] == {"Name": "pv", "Opts": {"colour": "blue"}}
    v = inspect(d, "pv", "volume")
    assert v["Driver"] == "testplugin" and v["Options"] == {"colour": "blue"} and v["Status"] == {"mounts": 0}
    cid = d("run", "-d", "--name", "pc", "-v", "pv:/data", "busybox", "sh", "-c",
            "echo from-container > /data/f; sleep 3600").stdout.strip()
    wait_for(lambda: (plugin.dir / "volumes" / "pv" / "f").exists())
    assert (plugin.dir / "volumes" / "pv" / "f").read_text() == "from-container\n"
    assert [c["body"] for c in plugin.calls("Mount")] == [{"Name": "pv", "ID": cid}]
    assert inspect(d, "pv", "volume")["Mountpoint"] == str(plugin.dir / "volumes" / "pv")
    assert {m["Destination"]: m for m in inspect(d, "pc")["Mounts"]}["/data"]["Driver"] == "testplugin"
    assert plugin.calls("Unmount") == []
    d("stop", "-t", "0", "pc")
    assert [c["body"] for c in plugin.calls("Unmount")] == [{"Name": "pv", "ID": cid}]
    # a container that exits by itself: conmon's exit command unmounts (a new process, same env)
    d("run", "-d", "--name", "quick", "-v", "pv:/data", "busybox", "cat", "/data/f")
    wait_for(lambda: len(plugin.calls("Unmount")) == 2)
    assert d("logs", "quick").stdout == "from-container\n"
    assert volume_names(d, "driver=testplugin") == ["pv"]
    d("rm", "pc", "quick")
    assert d("volume", "rm", "pv").stdout == "pv\n"
    assert [c["body"] for c in plugin.calls("Remove")] == [{"Name": "pv"}]
    assert not (plugin.dir / "volumes" / "pv").exists()
    # -v with --volume-driver creates the volume through the plugin
    d("run", "--rm", "-v", "auto:/d", "--volume-driver", "testplugin", "busybox", "sh", "-c", "echo a > /d/a")
    assert (plugin.dir / "volumes" / "auto" / "a").read_text() == "a\n"
    assert inspect(d, "auto", "volume")["Driver"] == "testplugin"


def test_plugin_failures_leave_nothing_half_done(busybox, plugin):
    d = busybox
    p = d("volume", "create", "-d", "testplugin", "-o", "fail=create", "pf", check=False)
    assert p.returncode == 1
    assert "create pf: VolumeDriver.Create: injected create failure" in p.stderr
    assert volume_names(d) == []
    d("volume", "create", "-d", "testplugin", "good")
    d("volume", "create", "-d", "testplugin", "-o", "fail=mount", "badmount")
    d("volume", "create", "-o", "type=tmpfs", "-o", "device=tmpfs", "localtmp")
    p = d("run", "-d", "--name", "half", "-v", "localtmp:/l", "-v", "good:/a", "-v", "badmount:/b", "busybox",
          "sleep", "60", check=False)
    assert p.returncode == 125
    assert "error while mounting volume 'badmount': VolumeDriver.Mount: injected mount failure" in p.stderr
    assert running_ids(d) == [] and d("ps", "-aq").stdout == ""  # run leaves no container behind
    mounts, unmounts = plugin.calls("Mount"), plugin.calls("Unmount")
    assert [c["body"]["Name"] for c in mounts] == ["good", "badmount"]
    assert [c["body"]["Name"] for c in unmounts] == ["good"]
    assert not mounted(d.root / "volumes" / "localtmp" / "_data")
    # a plugin that cannot be reached: a clear error naming the volume, nothing started
    plugin.kill()
    p = d("run", "-d", "-v", "good:/a", "busybox", "sleep", "60", check=False)
    assert p.returncode == 125
    assert "error while mounting volume 'good'" in p.stderr and "cannot reach plugin testplugin" in p.stderr
    assert running_ids(d) == []
    plugin.stop()  # and gone: its socket too
    p = d("volume", "create", "-d", "testplugin", "later", check=False)
    assert p.returncode == 1 and 'plugin "testplugin" not found' in p.stderr
    assert "later" not in volume_names(d)


def test_plugin_found_through_spec_file(busybox, scratch, monkeypatch):
    p = PluginProcess(scratch / "specplugin", name="hidden")
    p.start()
    try:
        specs = scratch / "specs"
        specs.mkdir()
        (specs / "specdriver.spec").write_text(f"unix://{p.socket}\n")
        monkeypatch.setenv("DOCKYARD_PLUGIN_DIRS", str(specs))
        busybox("volume", "create", "-d", "specdriver", "sv")
        assert (p.dir / "volumes" / "sv").is_dir()
        busybox("run", "--rm", "-v", "sv:/x", "busybox", "sh", "-c", "echo spec > /x/y")
        assert (p.dir / "volumes" / "sv" / "y").read_text() == "spec\n"
    finally:
        p.stop()


# -- system df ---------------------------------------------------------------------------------
def test_system_df_volume_sizes(busybox):
    d = busybox
    d("volume", "create", "big")
    d("volume", "create", "empty")
    d("run", "--name", "writer", "-v", "big:/d", "busybox", "sh", "-c",
      "head -c 1000000 /dev/zero > /d/a; head -c 500 /dev/zero > /d/b; ln /d/b /d/b2")
    out = d("system", "df").stdout.splitlines()
    assert out[0].split() == ["TYPE", "TOTAL", "ACTIVE", "SIZE", "RECLAIMABLE"]
    rows = {line[:15].strip(): line[15:].split() for line in out[1:]}
    assert rows["Local Volumes"] == ["2", "1", "1MB", "0B", "(0%)"]
    assert rows["Images"][:2] == ["1", "1"] and rows["Containers"][:2] == ["1", "0"]
    assert rows["Build Cache"] == ["0", "0", "0B", "0B"]
    out = d("system", "df", "-v").stdout
    assert "Images space usage:" in out and "Containers space usage:" in out and "Build cache usage: 0B" in out
    section = out.split("Local Volumes space usage:\n\n", 1)[1].split("\n\n", 1)[0].splitlines()
    assert section[0].split() == ["VOLUME", "NAME", "LINKS", "SIZE"]
    assert [line.split() for line in section[1:]] == [["big", "1", "1MB"], ["empty", "0", "0B"]]
    d("rm", "writer")
    out = d("system", "df", "--format", "{{.Type}}: {{.Reclaimable}}").stdout
    assert "Local Volumes: 1MB (100%)" in out


def test_volume_sync_without_remote_is_noop(busybox):
    busybox("volume", "create", "plain")
    assert busybox("volume", "sync", "plain").stdout == "plain\n"
    p = busybox("volume", "sync", "nosuch", check=False)
    assert p.returncode == 1 and "no such volume" in p.stderr


def test_data_survives_new_engine_in_process(busybox):
    """The data root reopened by a fresh Engine (no shared state with the commands that wrote it)."""
    busybox("volume", "create", "persist")
    busybox("run", "--rm", "-v", "persist:/p", "busybox", "sh", "-c", "echo kept > /p/k")
    code = ("from dockyard.engine import Engine; import sys; e = Engine(sys.argv[1]); "
            "v = e.volumes.inspect('persist'); print(open(v.mountpoint + '/k').read(), end='')")
    out = subprocess.run([sys.executable, "-c", code, str(busybox.root)], capture_output=True, text=True,
                         env={**os.environ}, check=True).stdout
    assert out == "kept\n"
