"""Container and exec endpoints without root or runc: the create body -> ContainerCreateOptions
mapping (the only place Docker's container JSON enters dockyard), and the errors clients see
(status codes and messages), validated against the Engine API reference."""

from __future__ import annotations

import json

import pytest
from helpers.apiclient import ApiClient
from helpers.openapi import validate

from dockyard.api.containers import create_options
from dockyard.api.streams import detach_keys
from dockyard.engine import Engine
from dockyard.errors import InvalidArgument


@pytest.fixture
def api(tmp_path):
    with ApiClient(Engine(tmp_path / "root")) as client:
        yield client


def test_create_body_maps_config_hostconfig_and_networking_config():
    body = {
        "Hostname": "h1", "Domainname": "example.org", "User": "nobody", "Tty": True, "OpenStdin": True,
        "StdinOnce": True, "AttachStdin": True, "AttachStdout": True, "AttachStderr": True,
        "Env": ["A=1", "FROM_CLIENT"], "Cmd": ["sh", "-c", "echo hi"], "Entrypoint": ["/bin/tini", "--"],
        "Image": "busybox", "WorkingDir": "/srv", "Labels": {"app": "web"}, "StopSignal": "SIGINT",
        "StopTimeout": 3, "ExposedPorts": {"80/tcp": {}, "53/udp": {}}, "MacAddress": "02:42:ac:11:00:09",
        "Volumes": {"/data": {}},
        "Healthcheck": {"Test": ["CMD", "wget", "-q", "http://localhost/"], "Interval": 5_000_000_000,
                        "Retries": 4, "StartPeriod": 1_000_000_000},
        "HostConfig": {
            "Binds": ["/srv/www:/usr/share/www:ro"],
            "Mounts": [{"Type": "tmpfs", "Target": "/run/cache", "TmpfsOptions": {"SizeBytes": 1048576, "Mode": 0o700}},
                       {"Type": "volume", "Source": "logs", "Target": "/logs",
                        "VolumeOptions": {"NoCopy": True, "Labels": {"k": "v"}}}],
            "PortBindings": {"80/tcp": [{"HostIp": "127.0.0.1", "HostPort": "8080"}],
                             "53/udp": [{"HostIp": "::1", "HostPort": ""}]},
            "PublishAllPorts": True, "NetworkMode": "front",
            "RestartPolicy": {"Name": "on-failure", "MaximumRetryCount": 2}, "AutoRemove": False,
            "Memory": 64 << 20, "NanoCpus": 500_000_000, "PidsLimit": 100, "CpuShares": 512,
            "CapAdd": ["NET_ADMIN"], "CapDrop": ["MKNOD"], "Privileged": False, "SecurityOpt": ["no-new-privileges"],
            "Dns": ["1.1.1.1"], "DnsSearch": ["corp"], "DnsOptions": ["ndots:2"], "ExtraHosts": ["db:10.0.0.2"],
            "Tmpfs": {"/tmp": "size=64m"}, "ShmSize": 128 << 20, "Ulimits": [{"Name": "nofile", "Soft": 1024, "Hard": 2048}],
            "ReadonlyRootfs": True, "Init": True,
        },
        "NetworkingConfig": {"EndpointsConfig": {"front": {"Aliases": ["web", "www"],
                                                           "IPAMConfig": {"IPv4Address": "172.30.0.9"}}}},
    }
    o = create_options(body, "web-1")
    assert (o.image, o.name, o.command, o.entrypoint) == ("busybox", "web-1", ["sh", "-c", "echo hi"],
                                                          ["/bin/tini", "--"])
    assert o.env == ["A=1"]  # a bare KEY is for the client to resolve, never the server's environment
    assert (o.hostname, o.domainname, o.user, o.workdir) == ("h1", "example.org", "nobody", "/srv")
    assert o.tty and o.interactive and o.attach
    assert o.labels == {"app": "web"} and o.stop_signal == "SIGINT" and o.stop_timeout == 3
    assert sorted(o.expose) == ["53/udp", "80/tcp"] and o.publish_all
    assert sorted(o.publish) == ["127.0.0.1:8080:80/tcp", "[::1]::53/udp"]
    assert o.network == "front" and o.network_aliases == ["web", "www"] and o.ip == "172.30.0.9"
    assert o.mac_address == "02:42:ac:11:00:09"
    assert o.restart_policy.name == "on-failure" and o.restart_policy.maximum_retry_count == 2
    r = o.resources
    assert (r.memory, r.nano_cpus, r.pids_limit, r.cpu_shares) == (64 << 20, 500_000_000, 100, 512)
    assert o.cap_add == ["NET_ADMIN"] and o.cap_drop == ["MKNOD"] and o.security_opt == ["no-new-privileges"]
    assert (o.dns, o.dns_search, o.dns_options, o.add_hosts) == (["1.1.1.1"], ["corp"], ["ndots:2"], ["db:10.0.0.2"])
    assert o.tmpfs == {"/tmp": "size=64m"} and o.shm_size == 128 << 20
    assert [(u.name, u.soft, u.hard) for u in o.ulimits] == [("nofile", 1024, 2048)]
    assert o.read_only and o.init
    assert o.health_cmd == "wget -q http://localhost/" and o.health_interval == 5.0 and o.health_retries == 4
    assert o.health_start_period == 1.0
    kinds = [(m.type, m.target) for m in o.mounts]
    assert kinds == [("bind", "/usr/share/www"), ("tmpfs", "/run/cache"), ("volume", "/logs"), ("volume", "/data")]
    bind, tmpfs, vol, anon = o.mounts
    assert bind.source == "/srv/www" and bind.readonly
    assert vol.name == "logs" and vol.nocopy and vol.labels == {"k": "v"}
    assert anon.anonymous


def test_create_defaults_and_resets():
    o = create_options({"Image": "busybox"}, "")
    assert o.command == [] and o.entrypoint is None and o.user is None and o.network == ""
    assert o.restart_policy.name == "no" and not o.attach and o.mounts == []
    # Entrypoint [""] is docker's --entrypoint "": no entrypoint at all
    assert create_options({"Image": "busybox", "Entrypoint": [""]}, "").entrypoint == ""
    assert create_options({"Image": "busybox", "Entrypoint": "sh"}, "").entrypoint == "sh"
    assert create_options({"Image": "busybox", "HostConfig": {"NetworkMode": "default"}}, "").network == "bridge"
    assert create_options({"Image": "b", "Healthcheck": {"Test": ["NONE"]}}, "").no_healthcheck
    with pytest.raises(InvalidArgument):
        create_options({}, "")
    with pytest.raises(InvalidArgument):
        create_options({"Image": "b", "HostConfig": {"RestartPolicy": {"Name": "sometimes"}}}, "")
    with pytest.raises(InvalidArgument):
        create_options({"Image": "b", "HostConfig": {"Mounts": [{"Type": "bind", "Source": "/x"}]}}, "")
    # what dockyard cannot do is refused, not silently dropped; "not set" forms pass
    with pytest.raises(InvalidArgument, match="PidMode"):
        create_options({"Image": "b", "HostConfig": {"PidMode": "host"}}, "")
    with pytest.raises(InvalidArgument, match="Devices"):
        create_options({"Image": "b", "HostConfig": {"Devices": [{"PathOnHost": "/dev/fuse"}]}}, "")
    create_options({"Image": "b", "HostConfig": {"Links": [], "Devices": None, "IpcMode": "private",
                                                 "Runtime": "runc", "CgroupnsMode": "", "Sysctls": {}}}, "")


def test_detach_keys():
    assert detach_keys(None) == b"\x10\x11"
    assert detach_keys("ctrl-a,x") == b"\x01x"
    with pytest.raises(InvalidArgument):
        detach_keys("ctrl-foo")


def test_list_is_empty_and_valid(api):
    r = api.get("/containers/json", params={"all": "1", "size": "1"})
    assert r.status == 200 and r.json() == []
    validate("/containers/json", "get", 200, r.body)
    r = api.get("/containers/json", params={"filters": json.dumps({"status": ["running"]})})
    assert r.status == 200
    r = api.get("/containers/json", params={"filters": json.dumps({"nonsense": ["x"]})})
    assert r.status == 400
    validate("/containers/json", "get", 400, r.body)


@pytest.mark.parametrize("method,path,template", [
    ("GET", "/containers/nosuch/json", "/containers/{id}/json"),
    ("POST", "/containers/nosuch/start", "/containers/{id}/start"),
    ("POST", "/containers/nosuch/stop", "/containers/{id}/stop"),
    ("POST", "/containers/nosuch/restart", "/containers/{id}/restart"),
    ("POST", "/containers/nosuch/kill", "/containers/{id}/kill"),
    ("POST", "/containers/nosuch/wait", "/containers/{id}/wait"),
    ("DELETE", "/containers/nosuch", "/containers/{id}"),
    ("GET", "/containers/nosuch/logs?stdout=1", "/containers/{id}/logs"),
    ("GET", "/containers/nosuch/top", "/containers/{id}/top"),
    ("GET", "/containers/nosuch/stats?stream=0", "/containers/{id}/stats"),
    ("GET", "/containers/nosuch/changes", "/containers/{id}/changes"),
    ("GET", "/containers/nosuch/export", "/containers/{id}/export"),
    ("POST", "/containers/nosuch/pause", "/containers/{id}/pause"),
    ("POST", "/containers/nosuch/rename?name=x", "/containers/{id}/rename"),
    ("POST", "/containers/nosuch/attach?stream=1&stdout=1", "/containers/{id}/attach"),
    ("POST", "/containers/nosuch/exec", "/containers/{id}/exec"),
    ("GET", "/exec/nosuch/json", "/exec/{id}/json"),
    ("POST", "/exec/nosuch/start", "/exec/{id}/start"),
    ("POST", "/exec/nosuch/resize?h=10&w=10", "/exec/{id}/resize"),
])
def test_missing_objects_are_404_with_a_message(api, method, path, template):
    kw = {"json": {"Cmd": ["true"]}} if path.endswith("/exec") else {}
    r = api.request(method, "/v1.43" + path, **kw)
    assert r.status == 404, r.body
    assert r.headers["Content-Type"] == "application/json"
    assert r.json()["message"]
    validate(template, method.lower(), 404, r.body)


def test_create_errors(api):
    r = api.post("/containers/create", json={"Image": "nosuch"})
    assert r.status == 404
    # dockerd's words: the docker CLI pulls and retries on exactly this 404
    assert r.json()["message"] == "No such image: nosuch:latest"
    validate("/containers/create", "post", 404, r.body)
    r = api.post("/containers/create", json={"Cmd": ["true"]})
    assert r.status == 400
    validate("/containers/create", "post", 400, r.body)
    r = api.post("/containers/create", data=b"{not json", headers={"Content-Type": "application/json"})
    assert r.status == 400


def test_bad_parameters_are_400(api):
    assert api.post("/containers/x/wait", params={"condition": "whenever"}).status == 400
    assert api.get("/containers/x/logs").status == 400  # neither stdout nor stderr
    assert api.request("HEAD", "/containers/x/archive").status == 400
    assert api.get("/containers/x/archive").status == 400
