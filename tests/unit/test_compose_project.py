"""compose converge, without containers: the planner (what to keep, start, recreate, remove,
create), published ports under --scale, the service -> container options mapping, and
ComposeProject driven against an in-memory fake of the engine facade (idempotent up, recreate
only what changed, scale up and down, down after a partial up, depends_on waits, --wait)."""

from __future__ import annotations

import itertools
import secrets
from dataclasses import dataclass, field

import pytest

from dockyard.compose import convert as cv
from dockyard.compose.loader import load_project
from dockyard.compose.plan import Existing, check_ports, orphans, parse_scale, plan_service
from dockyard.compose.project import ComposeProject, DownOptions, Reporter, UpOptions
from dockyard.containers.model import ContainerSpec, HealthSpec
from dockyard.errors import Conflict, FailedPrecondition, InvalidArgument, NotFound


def load(text: str, name: str = "demo", environ: dict | None = None):
    return load_project([("compose.yaml", text)], project_name=name, working_dir="/srv/demo",
                        environ=environ or {})


def ex(number: int, *, h: str = "h1", image: str = "img1", state: str = "running", cid: str | None = None):
    return Existing(cid or f"c{number}-{secrets.token_hex(2)}", f"demo-web-{number}", number, h, image, state)


# -- the planner -----------------------------------------------------------------------------------
def kinds(plan):
    return [(a.kind, a.number) for a in plan.actions]


def test_plan_creates_missing_replicas():
    plan = plan_service("web", replicas=3, config_hash="h1", image_id="img1", existing=[])
    assert kinds(plan) == [("create", 1), ("create", 2), ("create", 3)]


def test_plan_keeps_what_is_up_to_date_and_running():
    plan = plan_service("web", replicas=2, config_hash="h1", image_id="img1", existing=[ex(1), ex(2)])
    assert kinds(plan) == [("keep", 1), ("keep", 2)]
    assert not plan.changed


def test_plan_starts_stopped_containers_of_the_same_config():
    plan = plan_service("web", replicas=2, config_hash="h1", image_id="img1",
                        existing=[ex(1, state="exited"), ex(2, state="created")])
    assert kinds(plan) == [("start", 1), ("start", 2)]


def test_plan_recreates_on_config_or_image_change_only():
    existing = [ex(1, h="old"), ex(2, image="img0"), ex(3)]
    plan = plan_service("web", replicas=3, config_hash="h1", image_id="img1", existing=existing)
    assert kinds(plan) == [("keep", 3), ("recreate", 1), ("recreate", 2)]


def test_plan_force_and_no_recreate():
    assert kinds(plan_service("web", replicas=1, config_hash="h1", image_id="img1", existing=[ex(1)],
                              force_recreate=True)) == [("recreate", 1)]
    assert kinds(plan_service("web", replicas=1, config_hash="h2", image_id="img1", existing=[ex(1)],
                              no_recreate=True)) == [("keep", 1)]
    assert kinds(plan_service("web", replicas=1, config_hash="h2", image_id="img1",
                              existing=[ex(1, state="exited")], no_recreate=True)) == [("start", 1)]


def test_plan_scale_down_removes_the_highest_numbers():
    plan = plan_service("web", replicas=1, config_hash="h1", image_id="img1", existing=[ex(3), ex(1), ex(2)])
    assert kinds(plan) == [("remove", 2), ("remove", 3), ("keep", 1)]
    assert kinds(plan_service("web", replicas=0, config_hash="h1", image_id="img1", existing=[ex(1)])) == [
        ("remove", 1)]


def test_plan_scale_up_fills_the_gaps_first():
    plan = plan_service("web", replicas=4, config_hash="h1", image_id="img1", existing=[ex(1), ex(3)])
    assert kinds(plan) == [("keep", 1), ("keep", 3), ("create", 2), ("create", 4)]


def test_plan_duplicate_numbers_keep_the_running_one():
    running = ex(1, cid="b-running")
    stale = ex(1, state="exited", cid="a-stale")
    plan = plan_service("web", replicas=1, config_hash="h1", image_id="img1", existing=[stale, running])
    assert [(a.kind, a.container.id) for a in plan.actions] == [("remove", "a-stale"), ("keep", "b-running")]


def test_plan_refuses_a_negative_scale():
    with pytest.raises(InvalidArgument):
        plan_service("web", replicas=-1, config_hash="h", image_id="", existing=[])


# -- ports and --scale -----------------------------------------------------------------------------
def test_fixed_host_port_cannot_be_scaled():
    p = load("services:\n  web:\n    image: busybox\n    ports: ['8080:80']\n")
    check_ports(p.services["web"], 1)
    with pytest.raises(InvalidArgument, match="port is already allocated") as e:
        check_ports(p.services["web"], 3)
    assert "8080-8082:80" in str(e.value)


def test_ranges_and_container_only_ports_scale():
    p = load("services:\n  web:\n    image: busybox\n    ports: ['8000-8005:80', '9000', '127.0.0.1::81']\n")
    check_ports(p.services["web"], 3)
    with pytest.raises(InvalidArgument, match="has 6 ports for 7 replicas"):
        check_ports(p.services["web"], 7)


def test_parse_scale():
    assert parse_scale(["web=3", "db=0"], {"web", "db"}) == {"web": 3, "db": 0}
    for bad in ("web", "web=x", "web=-1"):
        with pytest.raises(InvalidArgument):
            parse_scale([bad], {"web"})
    with pytest.raises(InvalidArgument, match="no such service"):
        parse_scale(["nope=2"], {"web"})


def test_orphans():
    assert orphans([("a-web-1", "web"), ("a-old-1", "old")], {"web"}) == ["a-old-1"]


# -- service -> container options ------------------------------------------------------------------
FULL = """
services:
  web:
    image: registry.local:5000/shop/web:1
    command: ["serve", "--port", "80"]
    entrypoint: ["/bin/tini", "--"]
    environment: {A: "1", SECRET_TOKEN: "s3cr3t", UNSET: null}
    ports: ["8080:80", "127.0.0.1::81/udp", "[::1]:9000:90"]
    expose: ["7000"]
    volumes: ["data:/data:ro", "/srv/static:/static", "/cache"]
    tmpfs: ["/run:size=1m"]
    networks:
      front: {aliases: [www]}
      back: {}
    healthcheck:
      test: ["CMD", "wget", "-q", "http://localhost/health ok"]
      interval: 5s
      retries: 2
    restart: on-failure:3
    deploy: {resources: {limits: {cpus: "0.5", memory: 64m}}}
    labels: {team: shop}
    user: "1000:1000"
    x-dockyard-restart-unhealthy: true
volumes:
  data: {driver: azureblob, driver_opts: {container: c1}}
networks:
  front: {}
  back: {}
"""


def test_create_options_map_the_service():
    p = load(FULL)
    s = p.services["web"]
    opts, extra = cv.create_options(p, s, 2, image_id="sha256:abc")
    assert opts.name == "demo-web-2" and opts.image == "registry.local:5000/shop/web:1"
    # one entrypoint string in the engine's options: the same process arguments
    assert [opts.entrypoint, *opts.command] == ["/bin/tini", "--", "serve", "--port", "80"]
    assert sorted(opts.env) == ["A=1", "SECRET_TOKEN=s3cr3t"]
    assert opts.publish == ["8080:80/tcp", "127.0.0.1::81/udp", "[::1]:9000:90/tcp"]
    assert opts.expose == ["7000"]
    by_target = {m.target: m for m in opts.mounts}
    assert by_target["/data"].name == "demo_data" and by_target["/data"].readonly
    assert by_target["/data"].driver == "azureblob" and by_target["/data"].driver_opts == {"container": "c1"}
    assert by_target["/static"].type == "bind" and by_target["/static"].source == "/srv/static"
    assert by_target["/cache"].anonymous
    assert opts.tmpfs == {"/run": "size=1m"}
    assert opts.health_cmd == "wget -q 'http://localhost/health ok'" and opts.health_interval == 5.0
    assert opts.health_retries == 2
    assert (opts.restart_policy.name, opts.restart_policy.maximum_retry_count) == ("on-failure", 3)
    assert opts.resources.nano_cpus == 500_000_000 and opts.resources.memory == 64 << 20
    assert opts.user == "1000:1000"
    labels = opts.labels
    assert labels[cv.PROJECT] == "demo" and labels[cv.SERVICE] == "web" and labels[cv.NUMBER] == "2"
    assert labels[cv.ONEOFF] == "False" and labels[cv.CONFIG_HASH] == s.config_hash()
    assert labels[cv.IMAGE] == "sha256:abc" and labels[cv.WORKING_DIR] == "/srv/demo"
    assert labels["team"] == "shop" and labels[cv.RESTART_UNHEALTHY_LABEL] == "true"
    # the first network at create, with the service name as alias; the others connected after
    assert opts.network == "demo_back" and opts.network_aliases == ["web"]
    assert [(a.network, a.aliases) for a in extra] == [("demo_front", ["web", "www"])]


def test_build_only_service_image_name_and_disabled_healthcheck():
    p = load("services:\n  api:\n    build: .\n    healthcheck: {disable: true}\n    network_mode: host\n")
    opts, extra = cv.create_options(p, p.services["api"], 1)
    assert opts.image == "demo-api" and opts.no_healthcheck and opts.network == "host" and extra == []


def test_config_hash_ignores_scale_but_not_the_command():
    a = load("services:\n  web: {image: busybox, command: [a]}\n").services["web"]
    b = load("services:\n  web: {image: busybox, command: [a], scale: 3}\n").services["web"]
    c = load("services:\n  web: {image: busybox, command: [b]}\n").services["web"]
    assert a.config_hash() == b.config_hash() != c.config_hash()


# -- ComposeProject against a fake engine ------------------------------------------------------------
@dataclass
class Rec:
    id: str
    name: str
    image_id: str
    spec: ContainerSpec
    state: str = "created"
    exit_code: int = 0
    health: dict | None = None
    created: float = 0.0

    @property
    def running(self) -> bool:
        return self.state in ("running", "paused", "restarting")


@dataclass
class Net:
    id: str
    name: str
    labels: dict = field(default_factory=dict)


@dataclass
class Vol:
    name: str
    labels: dict = field(default_factory=dict)


class FakeEngine:
    """The slice of the engine facade compose uses, in memory; ``log`` records every change."""

    def __init__(self, images: dict[str, str] | None = None) -> None:
        self.log: list[tuple] = []
        self.recs: dict[str, Rec] = {}
        self.nets: dict[str, Net] = {}
        self.vols: dict[str, Vol] = {}
        self.imgs = dict(images or {"busybox": "sha256:bb"})
        self.ids = itertools.count(1)
        self.health_after_start: str | None = None
        eng = self

        class Containers:
            def list(self, all_=False, filters=None, last=-1):
                want = [f.split("=", 1) for f in filters.get("label")] if filters else []
                return [r for r in eng.recs.values() if (all_ or r.running)
                        and all(r.spec.labels.get(k) == v for k, v in want)]

            def get(self, name_or_id, reconcile=True):
                for r in eng.recs.values():
                    if name_or_id in (r.id, r.name):
                        return r
                raise NotFound(f"No such container: {name_or_id}")

            def create(self, opts):
                if opts.image not in eng.imgs:
                    raise NotFound(f"No such image: {opts.image}")
                if any(r.name == opts.name for r in eng.recs.values()):
                    raise Conflict(f"name {opts.name} in use")
                cid = f"{next(eng.ids):064x}"
                hc = HealthSpec(test=["CMD-SHELL", opts.health_cmd]) if opts.health_cmd else None
                spec = ContainerSpec(id=cid, name=opts.name, image_id=eng.imgs[opts.image], image_name=opts.image,
                                     args=list(opts.command), labels=dict(opts.labels), healthcheck=hc,
                                     mounts=list(opts.mounts))
                eng.recs[cid] = Rec(cid, opts.name, eng.imgs[opts.image], spec)
                eng.log.append(("create", opts.name))
                return eng.recs[cid]

            def start(self, cid, on_created=None, client_lock=None):
                r = self.get(cid)
                r.state = "running"
                if r.spec.healthcheck:
                    r.health = {"Status": eng.health_after_start or "healthy",
                                "Log": [{"ExitCode": 1, "Output": "connection refused"}]}
                eng.log.append(("start", r.name))
                return r

            def stop(self, cid, timeout=None, signal=None):
                r = self.get(cid)
                r.state = "exited"
                eng.log.append(("stop", r.name))
                return r

            def restart(self, cid, timeout=None):
                self.stop(cid)
                return self.start(cid)

            def kill(self, cid, signal="SIGKILL"):
                self.stop(cid)

            def rename(self, cid, new):
                r = self.get(cid)
                eng.log.append(("rename", r.name, new))
                r.name = new

            def remove(self, cid, force=False, volumes=False):
                r = self.get(cid)
                del eng.recs[r.id]
                eng.log.append(("remove", r.name))

        class Networks:
            def get(self, name):
                if name in eng.nets:
                    return eng.nets[name]
                raise NotFound(f"network {name} not found")

            def create(self, opts):
                eng.nets[opts.name] = Net(f"n{len(eng.nets)}", opts.name, dict(opts.labels))
                eng.log.append(("network", opts.name))
                return eng.nets[opts.name]

            def list(self, filters=None):
                want = [f.split("=", 1) for f in filters.get("label")] if filters else []
                return [n for n in eng.nets.values() if all(n.labels.get(k) == v for k, v in want)]

            def remove(self, name_or_id):
                net = next(n for n in eng.nets.values() if name_or_id in (n.id, n.name))
                del eng.nets[net.name]
                eng.log.append(("network-rm", net.name))

            def connect(self, network, container, aliases=None, ip=""):
                eng.log.append(("connect", network, container, tuple(aliases or ())))

        class Volumes:
            def inspect(self, name):
                if name in eng.vols:
                    return eng.vols[name]
                raise NotFound(f"no such volume: {name}")

            def create(self, opts):
                eng.vols[opts.name] = Vol(opts.name, dict(opts.labels))
                eng.log.append(("volume", opts.name, opts.driver, tuple(sorted(opts.driver_opts.items()))))
                return eng.vols[opts.name]

            def list(self, filters=None):
                want = [f.split("=", 1) for f in filters.get("label")] if filters else []
                return [v for v in eng.vols.values() if all(v.labels.get(k) == v2 for k, v2 in want)]

            def remove(self, name, force=False):
                del eng.vols[name]
                eng.log.append(("volume-rm", name))

        class Images:
            def inspect(self, name):
                if name not in eng.imgs:
                    raise NotFound(f"No such image: {name}")
                return {"Id": eng.imgs[name]}

        class Remote:
            def pull(self, opts):
                raise NotFound(f"pull access denied for {opts.name}")

        self.containers, self.networks, self.volumes = Containers(), Networks(), Volumes()
        self.images, self.remote = Images(), Remote()

    def changes(self) -> list[tuple]:
        out, self.log = self.log, []
        return out


TWO = """
services:
  server:
    image: busybox
    command: [httpd, -f]
    healthcheck: {test: ["CMD", "true"], interval: 1s}
  client:
    image: busybox
    command: [sleep, "1000"]
    depends_on: {server: {condition: service_healthy}}
    volumes: [data:/data]
volumes:
  data: {}
"""


def compose(engine, text=TWO) -> ComposeProject:
    return ComposeProject(engine, load(text), Reporter(), sleep=lambda: None)


def test_up_creates_everything_in_dependency_order_then_changes_nothing():
    e = FakeEngine()
    compose(e).up(UpOptions())
    log = e.changes()
    assert log[:2] == [("network", "demo_default"), ("volume", "demo_data", "local", ())]
    assert [x for x in log if x[0] in ("create", "start")] == [
        ("create", "demo-server-1"), ("start", "demo-server-1"), ("create", "demo-client-1"),
        ("start", "demo-client-1")]
    ids = sorted(e.recs)
    compose(e).up(UpOptions())
    assert e.changes() == [] and sorted(e.recs) == ids


def test_a_change_recreates_only_that_service():
    e = FakeEngine()
    compose(e).up(UpOptions())
    server = next(r.id for r in e.recs.values() if r.name == "demo-server-1")
    e.changes()
    compose(e, TWO.replace("[sleep, \"1000\"]", "[sleep, \"2000\"]")).up(UpOptions())
    log = e.changes()
    assert ("create", "demo-client-1") in log and ("stop", "demo-client-1") in log
    assert not any(x[1] == "demo-server-1" for x in log if x[0] in ("create", "stop", "remove"))
    assert any(r.id == server for r in e.recs.values())
    # the old container was moved aside, the new one took the name, the old one went
    renamed = [x for x in log if x[0] == "rename"]
    assert renamed and renamed[0][2].endswith("_demo-client-1")
    assert sorted(r.name for r in e.recs.values()) == ["demo-client-1", "demo-server-1"]


def test_scale_up_and_down():
    e = FakeEngine()
    compose(e).up(UpOptions(scale={"server": 3}))
    assert sorted(r.name for r in e.recs.values()) == ["demo-client-1", "demo-server-1", "demo-server-2",
                                                       "demo-server-3"]
    e.changes()
    compose(e).up(UpOptions())
    assert [x for x in e.changes() if x[0] == "remove"] == [("remove", "demo-server-2"), ("remove", "demo-server-3")]


def test_unhealthy_dependency_stops_up_naming_the_container():
    e = FakeEngine()
    e.health_after_start = "unhealthy"
    with pytest.raises(FailedPrecondition, match="demo-server-1 is unhealthy") as err:
        compose(e).up(UpOptions())
    assert "connection refused" in str(err.value)
    assert not any(r.name == "demo-client-1" for r in e.recs.values())


def test_wait_reports_the_service_and_the_last_check():
    e = FakeEngine()
    e.health_after_start = "unhealthy"
    with pytest.raises(FailedPrecondition) as err:
        compose(e).up(UpOptions(services=["server"], wait=True))
    assert "'server'" in str(err.value) and "connection refused" in str(err.value)


def test_down_after_a_partial_up_removes_what_was_made():
    text = TWO + "  broken:\n    image: does-not-exist\n    networks: [extra]\nnetworks:\n  extra: {}\n"
    text = text.replace("volumes:\n  data: {}\n", "") + "volumes:\n  data: {}\n"
    e = FakeEngine()
    with pytest.raises(NotFound):
        compose(e, text).up(UpOptions())
    assert e.nets and e.vols  # made before the missing image stopped it
    compose(e, text).down(DownOptions(volumes=True))
    assert e.recs == {} and e.nets == {} and e.vols == {}


def test_down_keeps_foreign_networks_and_external_volumes():
    e = FakeEngine()
    e.nets["demo_default"] = Net("x", "demo_default", {})   # not made by compose
    e.vols["shared"] = Vol("shared", {})
    text = TWO.replace("volumes:\n  data: {}\n", "volumes:\n  data: {external: true, name: shared}\n")
    compose(e, text).up(UpOptions())
    compose(e, text).down(DownOptions(volumes=True))
    assert "demo_default" in e.nets and "shared" in e.vols and e.recs == {}


def test_orphans_are_removed_only_when_asked():
    e = FakeEngine()
    compose(e).up(UpOptions())
    only_server = "services:\n  server:\n    image: busybox\n    healthcheck: {test: [CMD, 'true']}\n"
    compose(e, only_server).up(UpOptions())
    assert any(r.name == "demo-client-1" for r in e.recs.values())
    compose(e, only_server).up(UpOptions(remove_orphans=True))
    assert not any(r.name == "demo-client-1" for r in e.recs.values())


def test_fixed_port_scale_fails_before_anything_is_made():
    e = FakeEngine()
    with pytest.raises(InvalidArgument, match="port is already allocated"):
        compose(e, "services:\n  web:\n    image: busybox\n    ports: ['8080:80']\n").up(
            UpOptions(scale={"web": 2}))
    assert e.log == []


def test_no_deps_starts_only_the_named_service():
    e = FakeEngine()
    compose(e).up(UpOptions(services=["client"], no_deps=True))
    assert sorted(r.name for r in e.recs.values()) == ["demo-client-1"]


def test_extra_networks_are_connected_with_the_service_alias():
    e = FakeEngine()
    compose(e, FULL.replace("registry.local:5000/shop/web:1", "busybox").replace(
        "volumes: [\"data:/data:ro\", \"/srv/static:/static\", \"/cache\"]", "")).up(UpOptions())
    assert ("connect", "demo_front", next(iter(e.recs)), ("web", "www")) in e.log
