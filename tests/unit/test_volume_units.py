"""Volumes without root: -v/--mount parsing, option masking, plugin discovery, and the volume
service over plain local directories (metadata in a temporary SQLite file)."""

from __future__ import annotations

import json
import socket
from pathlib import Path

import pytest

from dockyard.errors import Conflict, InvalidArgument, NotFound
from dockyard.metadata.db import MetadataDB
from dockyard.volumes.mountspec import parse_mount, parse_volume, tmpfs_options, valid_mode, validate
from dockyard.volumes.plugin import find_plugin, parse_address
from dockyard.volumes.registry import get_driver
from dockyard.volumes.service import ANONYMOUS_LABEL, VolumeService, mask_options


# -- -v ------------------------------------------------------------------------------------------
def test_parse_volume_forms():
    m = parse_volume("/data")
    assert (m.type, m.target, m.name, m.anonymous) == ("volume", "/data", "", True)
    m = parse_volume("vol:/data:ro,z")
    assert (m.type, m.name, m.target, m.readonly, m.mode, m.raw) == ("volume", "vol", "/data", True, "ro,z",
                                                                     "vol:/data:ro,z")
    m = parse_volume("vol:/data:nocopy", volume_driver="plug")
    assert m.nocopy and m.driver == "plug" and not m.readonly
    m = parse_volume("/host/dir/../x:/in:rshared")
    assert (m.type, m.source, m.target, m.options, m.create_source) == ("bind", "/host/x", "/in", ["rshared"], True)


@pytest.mark.parametrize("raw,message", [
    ("", "invalid volume specification: ''"),
    ("/foo:rw", "invalid volume specification: '/foo:rw'"),
    ("a:b:c:d", "invalid volume specification: 'a:b:c:d'"),
    ("v:/d:bogus", "invalid mode: bogus"),
    ("v:/d:ro,rw", "invalid mode: ro,rw"),
    ("v:rel", "mount path must be absolute"),
    ("v:/", "destination can't be '/'"),
])
def test_parse_volume_errors(raw, message):
    with pytest.raises(InvalidArgument) as e:
        parse_volume(raw)
    assert message in str(e.value)


def test_valid_mode():
    assert valid_mode("ro,z,rprivate,nocopy,cached")
    assert not valid_mode("z,Z") and not valid_mode("shared,slave") and not valid_mode("nope")


# -- --mount -------------------------------------------------------------------------------------
def test_parse_mount_forms():
    m = parse_mount("type=volume,source=v,target=/d,readonly,volume-driver=drv,volume-opt=a=b,"
                    "volume-opt=c=d=e,volume-label=l=1,volume-nocopy=true")
    assert (m.type, m.name, m.target, m.readonly, m.driver, m.driver_opts, m.labels, m.nocopy) == \
        ("volume", "v", "/d", True, "drv", {"a": "b", "c": "d=e"}, {"l": "1"}, True)
    m = parse_mount("target=/anon")
    assert m.type == "volume" and m.anonymous
    m = parse_mount("type=bind,src=/h,dst=/c,ro=false,bind-propagation=rslave,bind-nonrecursive")
    assert (m.type, m.source, m.readonly, m.options) == ("bind", "/h", False, ["rslave", "bind"])
    m = parse_mount("type=tmpfs,destination=/t,tmpfs-size=64m,tmpfs-mode=1777")
    assert m.options == ["mode=1777", "size=64m"]
    m = parse_mount('"type=bind","source=/with,comma",target=/c')
    assert m.source == "/with,comma"


@pytest.mark.parametrize("value,message", [
    ("type=volume", "target is required"),
    ("type=volume,target=/d,foo=1", "unexpected key 'foo' in 'foo=1'"),
    ("type=volume,target=/d,bar", "invalid field 'bar' must be a key=value pair"),
    ("type=bind,target=/d,readonly=perhaps", "invalid value for readonly: perhaps"),
    ("type=tmpfs,target=/d,tmpfs-mode=9", "invalid value for tmpfs-mode: 9"),
    ("type=bind,target=/d,volume-driver=x", "cannot mix 'volume-*' options with mount type 'bind'"),
    ("type=volume,target=/d,tmpfs-size=1m", "cannot mix 'tmpfs-*' options with mount type 'volume'"),
])
def test_parse_mount_errors(value, message):
    with pytest.raises(InvalidArgument) as e:
        parse_mount(value)
    assert message in str(e.value) and '"--mount" flag' in str(e.value)


def test_validate_daemon_side(tmp_path):
    with pytest.raises(InvalidArgument, match="bind source path does not exist"):
        validate(parse_mount(f"type=bind,source={tmp_path}/nope,target=/x"))
    validate(parse_mount(f"type=bind,source={tmp_path},target=/x"))
    with pytest.raises(InvalidArgument, match="Source must not be specified"):
        validate(parse_mount("type=tmpfs,source=x,target=/x"))
    with pytest.raises(InvalidArgument, match="mount type unknown"):
        validate(parse_mount("type=npipe,target=/x"))


def test_tmpfs_options_units():
    assert tmpfs_options(3 << 30, None) == ["size=3g"]
    assert tmpfs_options(3072, 0o700) == ["mode=700", "size=3k"]
    assert tmpfs_options(1536, None) == ["size=1536"]
    assert tmpfs_options(1000, None) == ["size=1000"]


# -- masking and discovery ----------------------------------------------------------------------
def test_mask_options():
    opts = {"storage_account_key": "s3cr3t", "storage_account_name": "acct", "o": "user=me,password=pw,vers=3",
            "sas_token": "sv=x", "type": "cifs"}
    assert mask_options(opts) == {"storage_account_key": "********", "storage_account_name": "acct",
                                  "o": "user=me,password=********,vers=3", "sas_token": "********", "type": "cifs"}


def test_find_plugin_sockets_specs_and_json(tmp_path):
    a, b = tmp_path / "run", tmp_path / "etc"
    a.mkdir()
    b.mkdir()
    assert find_plugin("nope", [a, b]) is None
    assert find_plugin("../etc/passwd", [a, b]) is None
    (b / "viaspec.spec").write_text("tcp://127.0.0.1:8080\n")
    addr = find_plugin("viaspec", [a, b])
    assert (addr.scheme, addr.location) == ("http", "127.0.0.1:8080")
    (b / "viajson.json").write_text(json.dumps({"Name": "viajson", "Addr": "https://plug:443",
                                               "TLSConfig": {"InsecureSkipVerify": True}}))
    addr = find_plugin("viajson", [a, b])
    assert addr.scheme == "https" and addr.tls.insecure_skip_verify
    (b / "both.spec").write_text("unix:///elsewhere.sock")
    (a / "both").mkdir()
    s = socket.socket(socket.AF_UNIX)
    s.bind(str(a / "both" / "both.sock"))
    try:
        addr = find_plugin("both", [b, a])  # a socket anywhere wins over a spec file
        assert (addr.scheme, addr.location) == ("unix", str(a / "both" / "both.sock"))
    finally:
        s.close()
    assert parse_address("x", "unix:///run/x.sock").location == "/run/x.sock"
    with pytest.raises(InvalidArgument):
        parse_address("x", "ftp://nope")


def test_unknown_driver_words(tmp_path, monkeypatch):
    monkeypatch.setenv("DOCKYARD_PLUGIN_DIRS", str(tmp_path))
    with pytest.raises(InvalidArgument) as e:
        get_driver("nosuch", tmp_path)
    assert str(e.value) == 'error looking up volume plugin nosuch: plugin "nosuch" not found'


# -- the service over plain local directories ---------------------------------------------------
@pytest.fixture
def service(tmp_path, monkeypatch):
    monkeypatch.setenv("DOCKYARD_PLUGIN_DIRS", str(tmp_path / "noplugins"))
    return VolumeService(MetadataDB(tmp_path / "dockyard.db"), tmp_path)


def test_service_create_list_remove(service, tmp_path):
    rec = service.create("alpha", labels={"env": "prod"})
    assert rec.mountpoint == str(tmp_path / "volumes" / "alpha" / "_data")
    assert service.create("alpha").name == "alpha"  # idempotent
    anon = service.create()
    assert len(anon.name) == 64
    with pytest.raises(Conflict):
        service.create("alpha", driver="azurefile")
    with pytest.raises(InvalidArgument, match="create bad: invalid option"):
        service.create("bad", opts={"nope": "1"})
    assert service.find("bad") is None and not (tmp_path / "volumes" / "bad").exists()
    assert [r.name for r in service.list({"label": ["env=prod"]})] == ["alpha"]
    service.attach("c" * 64, [parse_volume("alpha:/a")])
    assert [r.name for r in service.list({"dangling": ["false"]})] == ["alpha"]
    with pytest.raises(Conflict, match=r"remove alpha: volume is in use - \[c{64}\]"):
        service.remove("alpha")
    service.detach("c" * 64)
    service.remove("alpha")
    with pytest.raises(NotFound, match="get alpha: no such volume"):
        service.remove("alpha")
    service.remove("alpha", force=True)


def test_service_attach_is_all_or_nothing(service):
    cid = "d" * 64
    mounts = [parse_volume("/anon"), parse_volume("named:/n"), parse_volume("x:/y")]
    mounts[2].driver = "nosuchdriver"
    with pytest.raises(InvalidArgument, match="plugin"):
        service.attach(cid, mounts)
    assert service.all() == []
    out = service.attach(cid, mounts[:2])
    anon = out[0].name
    assert service.get(anon).labels == {ANONYMOUS_LABEL: ""} and service.get(anon).refs == [cid]
    service.detach(cid, remove=[anon])
    assert [r.name for r in service.all()] == ["named"]


def test_service_prune(service):
    service.create("named")
    cid = "e" * 64
    anon = service.attach(cid, [parse_volume("/a")])[0].name
    service.create("busy")
    service.attach("f" * 64, [parse_volume("busy:/b")])
    service.detach(cid)
    assert service.prune() == ([anon], 0)
    assert service.prune(all_=True, labels=["x"]) == ([], 0)
    assert service.prune(all_=True) == (["named"], 0)
    assert [r.name for r in service.all()] == ["busy"]


def test_local_mount_refs_on_disk(service, tmp_path):
    service.create("plain")
    cid = "a" * 64
    out = service.mount_container(cid, [parse_volume("plain:/p")], None)
    assert out[0].source == str(tmp_path / "volumes" / "plain" / "_data")
    assert json.loads((tmp_path / "volumes" / "plain" / "mounts.json").read_text()) == {cid: 1}
    # another process (a new service over the same root) releases it, exactly once
    other = VolumeService(MetadataDB(tmp_path / "dockyard.db"), tmp_path)
    assert other.unmount_container(cid) == []
    assert json.loads((tmp_path / "volumes" / "plain" / "mounts.json").read_text()) == {}
    assert service.unmount_container(cid) == []
    assert Path(out[0].source).is_dir()
