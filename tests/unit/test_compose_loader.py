"""Compose files -> Project: YAML, validation, interpolation, short syntaxes, merge, extends, profiles,
the project name, env files, consistency checks, config rendering and the config hash."""

from __future__ import annotations

import textwrap

import pytest

from dockyard.compose.loader import load_project, normalize_project_name, render_config
from dockyard.compose.model import (
    BindOptions,
    Dependency,
    PortConfig,
    ServiceNetwork,
    TmpfsOptions,
    Ulimit,
    VolumeMount,
    VolumeOptions,
    format_duration,
    parse_bytes,
    parse_duration,
    parse_port,
    parse_volume,
)
from dockyard.errors import InvalidArgument, NotFound

WD = "/srv/shop"


def load(*texts: str, files: dict[str, str] | None = None, **kw):
    """Load ``texts`` as compose.yaml, compose.override.yaml, ...; ``files`` is what read_file sees."""
    names = ["compose.yaml", "compose.override.yaml", "third.yaml"]
    kw.setdefault("working_dir", WD)
    kw.setdefault("environ", {})
    store = dict(files or {})

    def read_file(path: str) -> str:
        try:
            return store[path]
        except KeyError:
            raise FileNotFoundError(2, "No such file or directory", path) from None

    kw.setdefault("read_file", read_file)
    return load_project([(names[i], textwrap.dedent(t)) for i, t in enumerate(texts)], **kw)


def error_of(*texts: str, kind: type[Exception] = InvalidArgument, **kw) -> str:
    with pytest.raises(kind) as exc:
        load(*texts, **kw)
    return str(exc.value)


# -- basics -------------------------------------------------------------------------------------------

def test_minimal_project_gets_defaults():
    p = load("""
        services:
          web:
            image: nginx
    """)
    assert p.name == "shop" and p.working_dir == WD and p.files == ["compose.yaml"]
    web = p.services["web"]
    assert web.image == "nginx" and web.command is None and web.replicas == 1
    assert web.networks == {"default": ServiceNetwork()}
    assert p.networks["default"].name == "shop_default"
    assert p.volumes == {} and p.disabled_services == {} and p.warnings == []


def test_yaml_12_scalars_like_docker_compose():
    p = load("""
        services:
          web:
            image: nginx
            ports:
              - 22:22
            environment:
              FLAG: yes
              SWITCH: on
              MODE: 0755
              REAL: true
    """)
    assert p.services["web"].ports == [PortConfig(target=22, published="22")]
    assert p.services["web"].environment == {"FLAG": "yes", "SWITCH": "on", "MODE": "755", "REAL": "true"}


def test_anchors_and_merge_keys():
    p = load("""
        x-common: &common
          image: base:1
          environment: {A: "1"}
        services:
          a:
            <<: *common
          b:
            <<: *common
            image: other:2
    """)
    assert p.services["a"].image == "base:1" and p.services["b"].image == "other:2"
    assert p.services["b"].environment == {"A": "1"}
    assert p.extensions["x-common"]["image"] == "base:1"


def test_obsolete_version_and_unset_variables_are_warnings():
    p = load("""
        version: "3.9"
        services:
          web:
            image: nginx:${TAG}
    """)
    assert p.services["web"].image == "nginx:"
    assert any("`version` is obsolete" in w for w in p.warnings)
    assert 'The "TAG" variable is not set. Defaulting to a blank string.' in p.warnings


# -- invalid files ------------------------------------------------------------------------------------

@pytest.mark.parametrize("text,message", [
    ("services:\n  web:\n    imagee: nginx\n",
     "validating compose.yaml: services.web Additional property imagee is not allowed (line 3)"),
    ("servicess:\n  web: {}\n",
     "validating compose.yaml: (root) Additional property servicess is not allowed (line 1)"),
    ("services:\n  web:\n    image: 5\n",
     "validating compose.yaml: services.web.image Invalid type. Expected: string, given: integer (line 3)"),
    ("services:\n  web:\n    image: x\n    ports:\n      - true\n",
     ("validating compose.yaml: services.web.ports.0 Invalid type. Expected: number or string or object, "
     "given: boolean (line 5)")),
    ("services:\n  web:\n    image: x\n    ports:\n      - target: 80\n        publishd: 8080\n",
     "validating compose.yaml: services.web.ports.0 Additional property publishd is not allowed (line 6)"),
    ("services:\n  web:\n    image: x\n    depends_on:\n      db:\n        condition: started\n  db:\n    image: y\n",
     ('validating compose.yaml: services.web.depends_on.db.condition must be one of the following: '
     '"service_started", "service_healthy", "service_completed_successfully" (line 6)')),
    ("services:\n  web:\n    image: x\n    ports: ['80:80', '80:80']\n",
     "validating compose.yaml: services.web.ports array items[0,1] must be unique (line 4)"),
    ("services:\n  web:\n    image: x\n    ports:\n      - '80:abc'\n",
     "compose.yaml: services.web.ports.0: invalid containerPort: abc (line 5)"),
    ("services:\n  web:\n    image: x\n    ports: ['99999:80']\n",
     "compose.yaml: services.web.ports.0: invalid hostPort: 99999"),
    ("services:\n  web:\n    image: x\n    ports: ['80-82:90-91']\n",
     "invalid ranges specified for container and host Ports: 90-91 and 80-82"),
    ("services:\n  web:\n    image: x\n    ports: ['80/icmp']\n", "services.web.ports.0: invalid proto: icmp"),
    ("services:\n  web:\n    image: x\n    ports: ['nope:8080:80']\n", "invalid IP address: nope"),
    ("services:\n  web:\n    image: ${IMAGE:?set IMAGE first}\n",
     ("compose.yaml: error while interpolating services.web.image: required variable IMAGE is missing a value: "
     "set IMAGE first")),
    ("services:\n  web:\n    image: x\n    command: echo $5\n",
     "invalid interpolation format for services.web.command"),
    ("services:\n  web:\n    image: x\n   bad: [\n", "failed to parse compose.yaml: line 4, column 4:"),
    ("services:\n  web:\n    image: x\n    image: y\n",
     "failed to parse compose.yaml: line 4, column 5: mapping key 'image' already defined at line 3"),
    ("- a\n- b\n", "compose.yaml: Top-level object must be a mapping"),
    ("# only a comment\n", "compose.yaml: empty compose file"),
    ("services:\n  web:\n    image: x\n    labels:\n      1: a\n", "compose.yaml: non-string key in services.web.labels: 1"),
    ("services:\n  web:\n    image: x\n    restart: sometimes\n", "services.web.restart: invalid restart policy"),
    ("services:\n  web:\n    image: x\n    volumes: ['./a:/b:rx']\n",
     "compose.yaml: services.web.volumes.0: invalid spec: ./a:/b:rx: unknown mode 'rx' (line 4)"),
    ("services:\n  web:\n    image: x\n    volumes: ['./a:relative']\n", "must be an absolute path"),
    ("services:\n  web:\n    image: x\n    volumes:\n      - type: bind\n        target: /x\n",
     'invalid mount config for type "bind": field Source must not be empty'),
    ("services:\n  web:\n    image: x\n    healthcheck:\n      interval: 5 minutes\n",
     "compose.yaml: services.web.healthcheck.interval: invalid duration '5 minutes'"),
    ("services:\n  web:\n    image: x\n    mem_limit: lots\n", "compose.yaml: services.web.mem_limit: invalid size 'lots'"),
    ("services:\n  web:\n    command: run\n",
     'service "web" has neither an image nor a build context specified: invalid compose project'),
    ("include: [other.yaml]\nservices: {}\n", "include is not supported"),
])
def test_invalid_files_say_file_path_and_problem(text, message):
    assert message in error_of(text)


def test_validation_reports_every_problem():
    msg = error_of("services:\n  a:\n    imagee: x\n  b:\n    image: [x]\n")
    assert msg.splitlines() == [
        "validating compose.yaml: services.a Additional property imagee is not allowed (line 3)",
        "validating compose.yaml: services.b.image Invalid type. Expected: string, given: array (line 5)",
    ]


def test_an_invalid_override_file_is_named():
    msg = error_of("services:\n  web:\n    image: x\n", "services:\n  web:\n    prots: []\n")
    assert msg == "validating compose.override.yaml: services.web Additional property prots is not allowed (line 3)"


def test_consistency_errors():
    assert error_of("services:\n  web:\n    image: x\n    volumes: ['data:/d']\n") == \
        'service "web" refers to undefined volume data: invalid compose project'
    assert error_of("services:\n  web:\n    image: x\n    networks: [front]\n") == \
        'service "web" refers to undefined network front: invalid compose project'
    assert error_of("services:\n  web:\n    image: x\n    secrets: [key]\n") == \
        'service "web" refers to undefined secret key: invalid compose project'
    assert error_of("services:\n  web:\n    image: x\n    depends_on: [db]\n") == \
        'service "web" depends on undefined service "db": invalid compose project'
    assert error_of("""
        services:
          a: {image: x, depends_on: [b]}
          b: {image: x, depends_on: [c]}
          c: {image: x, depends_on: [a]}
    """) == "dependency cycle detected: a -> b -> c -> a"
    assert "mutually exclusive `network_mode` and `networks`" in error_of(
        "services:\n  web:\n    image: x\n    network_mode: host\n    networks: [default]\n")
    assert "can't set distinct values on 'scale' and 'deploy.replicas'" in error_of(
        "services:\n  web:\n    image: x\n    scale: 2\n    deploy: {replicas: 3}\n")
    assert "can't set container_name and web as container name must be unique" in error_of(
        "services:\n  web:\n    image: x\n    container_name: one\n    scale: 2\n")
    assert "test and disable can't be set at the same time" in error_of(
        "services:\n  web:\n    image: x\n    healthcheck: {test: [CMD, 'true'], disable: true}\n")
    assert "secret 'key' must declare exactly one of" in error_of("secrets:\n  key: {}\nservices: {}\n")


# -- project name -------------------------------------------------------------------------------------

SIMPLE = "services:\n  web:\n    image: x\n"


def test_project_name_precedence():
    named = "name: from-file\n" + SIMPLE
    assert load(SIMPLE).name == "shop"
    assert load(named).name == "from-file"
    assert load(named, environ={"COMPOSE_PROJECT_NAME": "from_env"}).name == "from_env"
    assert load(named, dotenv_text="COMPOSE_PROJECT_NAME=dotenv\n").name == "dotenv"
    assert load(named, project_name="flag", environ={"COMPOSE_PROJECT_NAME": "env"}).name == "flag"
    # the last file's name wins
    assert load(named, "name: second\n").name == "second"


def test_guessed_names_are_normalised_given_names_are_checked():
    assert load("name: My_Shop.v2!\n" + SIMPLE).name == "my_shopv2"
    assert load("name: ${PREFIX}-shop\n" + SIMPLE, environ={"PREFIX": "Dev"}).name == "dev-shop"
    assert load(SIMPLE, working_dir="/home/ann/-My App").name == "myapp"
    assert normalize_project_name("__Hello World--") == "helloworld--"
    for bad in ("MyApp", "-app", "a b", "app!"):
        msg = error_of(SIMPLE, project_name=bad)
        assert msg == (f"invalid project name {bad!r}: must consist only of lowercase alphanumeric characters, "
                       "hyphens, and underscores as well as start with a letter or number")
    assert "invalid project name 'Bad Name'" in error_of(SIMPLE, environ={"COMPOSE_PROJECT_NAME": "Bad Name"})
    assert error_of(SIMPLE, working_dir="/tmp/___") == "project name must not be empty"


def test_project_name_is_available_to_interpolation_and_names_resources():
    p = load("""
        name: shop
        services:
          web:
            image: x
            labels: {project: "${COMPOSE_PROJECT_NAME}"}
            volumes: [data:/data]
            networks: [back]
        volumes:
          data: {}
          ext: {external: true}
          named: {name: fixed-name}
          legacy: {external: {name: old-style}}
        networks:
          back: {}
    """)
    assert p.services["web"].labels == {"project": "shop"}
    assert {k: v.name for k, v in p.volumes.items()} == {
        "data": "shop_data", "ext": "ext", "named": "fixed-name", "legacy": "old-style"}
    assert p.volumes["legacy"].external and not p.volumes["data"].external
    assert list(p.networks) == ["back"]  # no service is on the default network, so there is none


# -- environment and interpolation --------------------------------------------------------------------

def test_shell_environment_wins_over_dotenv_and_dotenv_interpolates():
    text = "services:\n  web:\n    image: ${IMAGE}:${TAG}\n"
    dotenv = "IMAGE=shop/web\nTAG=from-dotenv\nFULL=${IMAGE}:${TAG}\n"
    p = load(text, dotenv_text=dotenv, environ={"TAG": "from-shell"})
    assert p.services["web"].image == "shop/web:from-shell"
    assert p.environment["FULL"] == "shop/web:from-shell"  # the shell wins inside .env too
    assert "line 1" in error_of(text, dotenv_text="BAD KEY=1\n")


def test_environment_and_env_file():
    files = {
        f"{WD}/common.env": "SHARED=from-common\nOVERRIDDEN=common\nINTERP=${TAG:-none}\nPASSED\n",
        f"{WD}/conf/web.env": "OVERRIDDEN=web\nEXTRA='lit $x'\n",
    }
    p = load("""
        services:
          web:
            image: x
            env_file: [common.env, ./conf/web.env, {path: missing.env, required: false}]
            environment:
              - OVERRIDDEN=inline
              - FROM_SHELL
              - NOT_SET
              - EMPTY=
    """, files=files, environ={"TAG": "1.0", "PASSED": "p", "FROM_SHELL": "s"})
    web = p.services["web"]
    assert web.environment == {
        "SHARED": "from-common", "OVERRIDDEN": "inline", "INTERP": "1.0", "PASSED": "p", "EXTRA": "lit $x",
        "FROM_SHELL": "s", "NOT_SET": None, "EMPTY": ""}
    assert [(e.path, e.required) for e in web.env_file] == [
        (f"{WD}/common.env", True), (f"{WD}/conf/web.env", True), (f"{WD}/missing.env", False)]


def test_missing_env_file_is_not_found():
    msg = error_of("services:\n  web:\n    image: x\n    env_file: nope.env\n", kind=NotFound)
    assert msg.startswith(f"env file {WD}/nope.env not found")


def test_env_file_raw_format_and_errors():
    files = {f"{WD}/raw.env": "A=$literal 'quotes'\n# comment\nB=2\n", f"{WD}/bad.env": "A='open\n"}
    p = load("services:\n  web:\n    image: x\n    env_file: [{path: raw.env, format: raw}]\n", files=files)
    assert p.services["web"].environment == {"A": "$literal 'quotes'", "B": "2"}
    assert f"{WD}/bad.env: line 1: unterminated quoted value" in error_of(
        "services:\n  web:\n    image: x\n    env_file: bad.env\n", files=files)


def test_interpolated_strings_are_cast_where_the_schema_wants_a_type():
    p = load("""
        services:
          web:
            image: x
            read_only: ${RO}
            depends_on:
              db: {condition: service_started, required: "${REQ}"}
          db: {image: y, profiles: [never]}
    """, environ={"RO": "true", "REQ": "false"})
    assert p.services["web"].read_only is True
    assert p.services["web"].depends_on == {}  # optional and disabled: dropped


# -- short syntaxes -----------------------------------------------------------------------------------

@pytest.mark.parametrize("spec,expected", [
    ("80", [PortConfig(target=80)]),
    (80, [PortConfig(target=80)]),
    ("8080:80", [PortConfig(target=80, published="8080")]),
    ("127.0.0.1:8080:80", [PortConfig(target=80, published="8080", host_ip="127.0.0.1")]),
    ("127.0.0.1::80", [PortConfig(target=80, host_ip="127.0.0.1")]),
    ("[::1]:8080:80", [PortConfig(target=80, published="8080", host_ip="::1")]),
    ("53:53/udp", [PortConfig(target=53, published="53", protocol="udp")]),
    ("9090-9091:8080-8081", [PortConfig(target=8080, published="9090"), PortConfig(target=8081, published="9091")]),
    ("3000-3001", [PortConfig(target=3000), PortConfig(target=3001)]),
    ("8000-8010:80", [PortConfig(target=80, published="8000-8010")]),
])
def test_port_short_syntax(spec, expected):
    assert parse_port(spec) == expected


@pytest.mark.parametrize("spec,expected", [
    ("/data", VolumeMount(type="volume", target="/data")),
    ("db:/var/lib/db", VolumeMount(type="volume", source="db", target="/var/lib/db")),
    ("db:/d:ro,nocopy", VolumeMount(type="volume", source="db", target="/d", read_only=True,
                                    volume=VolumeOptions(nocopy=True))),
    ("./src:/app:rw,z,rshared", VolumeMount(type="bind", source="./src", target="/app",
                                            bind=BindOptions(create_host_path=True, selinux="z",
                                                             propagation="rshared"))),
    ("/etc/x:/x:ro,cached", VolumeMount(type="bind", source="/etc/x", target="/x", read_only=True,
                                        consistency="cached", bind=BindOptions(create_host_path=True))),
])
def test_volume_short_syntax(spec, expected):
    assert parse_volume(spec) == expected


@pytest.mark.parametrize("spec,message", [
    ("", "invalid empty volume spec"), ("a::b", "empty section"), ("a:/b:ro:x", "too many colons"),
    ("db:/d:rshared", "applies to bind mounts only"), ("./x:/d:nocopy", "applies to volumes only"),
])
def test_volume_short_syntax_errors(spec, message):
    with pytest.raises(ValueError, match=message):
        parse_volume(spec)


def test_units():
    assert parse_duration("1m30s") == 90 and parse_duration("500ms") == 0.5 and parse_duration("1.5h") == 5400
    assert parse_duration(10) == 10 and parse_duration("2h3m4s5ms") == pytest.approx(7384.005)
    assert [format_duration(s) for s in (90, 0.5, 3600, 30, 0, 1.5, 0.000002)] == [
        "1m30s", "500ms", "1h0m0s", "30s", "0s", "1.5s", "2µs"]
    assert parse_bytes("512m") == 512 << 20 and parse_bytes("1g") == 1 << 30 and parse_bytes("1.5GiB") == 3 << 29
    assert parse_bytes("100") == 100 and parse_bytes(64) == 64 and parse_bytes("2 kb") == 2048
    assert parse_bytes("-1") == -1
    for bad in ("1x", "m", "1.2.3g"):
        with pytest.raises(ValueError):
            parse_bytes(bad)
    for bad in ("5 minutes", "1d", ""):
        with pytest.raises(ValueError):
            parse_duration(bad)


FULL = """
        services:
          web:
            build:
              context: ./web
              args: [VERSION=1, FROM_ENV]
              target: prod
              labels: {team: shop}
            command: python -m app --name "my app"
            entrypoint: ""
            ports: ["8080:80", {target: 443, published: 8443, host_ip: 0.0.0.0, protocol: TCP}]
            expose: [3000, "4000/udp"]
            volumes:
              - ./static:/srv/static:ro
              - ~/cache:/cache
              - type: tmpfs
                target: /scratch
                tmpfs: {size: 64m, mode: "1777"}
              - type: volume
                source: data
                target: /data
                volume: {nocopy: true}
            tmpfs: /run
            networks:
              front:
                aliases: [www]
                ipv4_address: 172.20.0.10
              back:
            depends_on:
              db:
                condition: service_healthy
                restart: true
              cache:
                condition: service_started
                required: false
            healthcheck:
              test: curl -f http://localhost/
              interval: 30s
              timeout: 5s
              start_period: 1m
              retries: 3
            deploy:
              replicas: 3
              resources:
                limits: {cpus: "1.5", memory: 512M, pids: 100}
                reservations: {memory: 128m}
              restart_policy: {condition: on-failure, delay: 5s, max_attempts: 3}
            labels: [com.example.tier=web, flag]
            user: "1000:1000"
            working_dir: /srv
            init: true
            read_only: "false"
            cap_add: [NET_ADMIN]
            cap_drop: [ALL]
            hostname: web1
            stop_signal: SIGINT
            stop_grace_period: 1m30s
            dns: 8.8.8.8
            extra_hosts: ["db.local=10.0.0.2", "old.local:10.0.0.3", "v6.local=::1"]
            privileged: false
            security_opt: [no-new-privileges:true]
            ulimits:
              nproc: 65535
              nofile: {soft: 20000, hard: 40000}
            shm_size: 64m
            mem_limit: 1g
            pull_policy: if_not_present
            logging: {driver: json-file, options: {max-size: 10m}}
            sysctls: [net.core.somaxconn=1024]
            oom_kill_disable: true
            x-custom: {any: thing}
            develop:
              watch:
                - path: ./web/src
                  action: sync
                  target: /srv/src
                  ignore: [node_modules/]
                - path: ./web/requirements.txt
                  action: rebuild
          db: {image: postgres, healthcheck: {disable: true}}
          cache: {image: redis, profiles: [cache]}
        volumes: {data: {}}
        networks:
          front:
            driver: bridge
            ipam:
              config: [{subnet: 172.20.0.0/16, gateway: 172.20.0.1}]
          back: {internal: true, labels: [tier=back]}
    """
FULL_ENV = {"HOME": "/home/ann", "FROM_ENV": "e"}


def test_service_short_syntaxes_become_long():
    p = load(FULL, environ=FULL_ENV)
    web = p.services["web"]
    assert web.build.context == f"{WD}/web" and web.build.dockerfile == "Dockerfile"
    assert web.build.args == {"VERSION": "1", "FROM_ENV": "e"} and web.build.target == "prod"
    assert web.build.labels == {"team": "shop"}
    assert web.command == ["python", "-m", "app", "--name", "my app"] and web.entrypoint == []
    assert web.ports == [PortConfig(target=80, published="8080"),
                         PortConfig(target=443, published="8443", host_ip="0.0.0.0")]
    assert web.expose == ["3000", "4000/udp"]
    assert web.volumes == [
        VolumeMount(type="bind", source=f"{WD}/static", target="/srv/static", read_only=True,
                    bind=BindOptions(create_host_path=True)),
        VolumeMount(type="bind", source="/home/ann/cache", target="/cache", bind=BindOptions(create_host_path=True)),
        VolumeMount(type="tmpfs", target="/scratch", tmpfs=TmpfsOptions(size=64 << 20, mode=0o1777)),
        VolumeMount(type="volume", source="data", target="/data", volume=VolumeOptions(nocopy=True)),
    ]
    assert web.tmpfs == ["/run"]
    assert web.networks == {"front": ServiceNetwork(aliases=["www"], ipv4_address="172.20.0.10"),
                            "back": ServiceNetwork()}
    assert web.depends_on == {"db": Dependency(condition="service_healthy", restart=True)}  # cache: optional, off
    hc = web.healthcheck
    assert hc.test == ["CMD-SHELL", "curl -f http://localhost/"]
    assert (hc.interval, hc.timeout, hc.start_period, hc.retries, hc.disable) == (30, 5, 60, 3, False)
    assert p.services["db"].healthcheck.test == ["NONE"] and p.services["db"].healthcheck.disable
    d = web.deploy
    assert web.replicas == 3 and d.limits.cpus == 1.5 and d.limits.memory == 512 << 20 and d.limits.pids == 100
    assert d.reservations.memory == 128 << 20 and d.restart_policy.delay == 5 and d.restart_policy.max_attempts == 3
    assert web.labels == {"com.example.tier": "web", "flag": ""}
    assert (web.user, web.working_dir, web.init, web.read_only, web.privileged) == ("1000:1000", "/srv", True,
                                                                                     False, False)
    assert web.cap_add == ["NET_ADMIN"] and web.cap_drop == ["ALL"] and web.hostname == "web1"
    assert web.stop_signal == "SIGINT" and web.stop_grace_period == 90 and web.dns == ["8.8.8.8"]
    assert web.extra_hosts == ["db.local:10.0.0.2", "old.local:10.0.0.3", "v6.local:::1"]
    assert web.security_opt == ["no-new-privileges:true"]
    assert web.ulimits == {"nproc": Ulimit(soft=65535, hard=65535), "nofile": Ulimit(soft=20000, hard=40000)}
    assert web.shm_size == 64 << 20 and web.mem_limit == 1 << 30 and web.pull_policy == "missing"
    assert web.logging.driver == "json-file" and web.logging.options == {"max-size": "10m"}
    assert web.sysctls == {"net.core.somaxconn": "1024"}
    assert web.extras == {"oom_kill_disable": True} and web.extensions == {"x-custom": {"any": "thing"}}
    assert [(w.path, w.action, w.target, w.ignore) for w in web.watch] == [
        (f"{WD}/web/src", "sync", "/srv/src", ["node_modules/"]), (f"{WD}/web/requirements.txt", "rebuild", None, [])]
    front = p.networks["front"]
    assert front.name == "shop_front" and front.driver == "bridge"
    assert front.ipam.config[0].subnet == "172.20.0.0/16" and front.ipam.config[0].gateway == "172.20.0.1"
    assert p.networks["back"].internal and p.networks["back"].labels == {"tier": "back"}
    assert "default" in p.networks  # db is on it
    assert list(p.disabled_services) == ["cache"]


def test_implicit_dependencies_and_dependency_order():
    p = load("""
        services:
          proxy: {image: x, links: ["app:backend"]}
          app: {image: x, depends_on: [db], volumes_from: [data]}
          sidecar: {image: x, network_mode: "service:app"}
          db: {image: x}
          data: {image: x}
    """)
    assert p.services["proxy"].depends_on == {"app": Dependency(restart=True)}
    assert p.services["app"].depends_on == {"db": Dependency(), "data": Dependency()}
    assert p.services["sidecar"].networks == {} and p.services["sidecar"].depends_on == {"app": Dependency(restart=True)}
    order = p.dependency_order()
    assert order.index("db") < order.index("app") < order.index("proxy") and order.index("app") < order.index("sidecar")
    assert p.dependency_order(["proxy"]) == ["data", "db", "app", "proxy"]


def test_top_level_volumes_secrets_configs():
    p = load("""
        services:
          web:
            image: x
            volumes: [blobs:/blobs, local:/local]
            secrets: [token, {source: cert, target: /etc/cert.pem, mode: "0440"}]
            configs: [{source: conf, target: /etc/app.conf}]
        volumes:
          blobs:
            driver: azureblob
            driver_opts: {container: shop, account: "${ACCOUNT}"}
            labels: {backup: "true"}
          local:
            driver_opts: {type: none, o: bind, device: ./data}
        secrets:
          token: {environment: API_TOKEN}
          cert: {file: ./certs/cert.pem}
        configs:
          conf: {content: "debug = true"}
    """, environ={"ACCOUNT": "acct"})
    blobs = p.volumes["blobs"]
    assert (blobs.name, blobs.driver, blobs.driver_opts, blobs.labels) == (
        "shop_blobs", "azureblob", {"container": "shop", "account": "acct"}, {"backup": "true"})
    assert p.volumes["local"].driver_opts["device"] == f"{WD}/data"
    assert p.secrets["cert"].file == f"{WD}/certs/cert.pem" and p.secrets["token"].environment == "API_TOKEN"
    assert p.configs["conf"].content == "debug = true" and p.configs["conf"].name == "shop_conf"
    web = p.services["web"]
    assert [(s.source, s.target, s.mode) for s in web.secrets] == [("token", None, None), ("cert", "/etc/cert.pem", 0o440)]
    assert web.configs[0].target == "/etc/app.conf"


# -- several files ------------------------------------------------------------------------------------

BASE = """
services:
  web:
    image: shop/web:1
    build:
      context: ./web
      args: {A: "1", B: "1"}
    command: [python, app.py]
    environment: {A: "1", B: "1"}
    labels: [tier=web]
    ports: ["8080:80", "9000:9000"]
    expose: ["3000"]
    volumes: ["./src:/app", "data:/data"]
    networks:
      front: {aliases: [www]}
    depends_on:
      db: {condition: service_healthy}
    healthcheck: {test: [CMD, check], interval: 10s, retries: 3}
    cap_add: [NET_ADMIN]
    dns: [1.1.1.1]
    ulimits: {nofile: {soft: 10, hard: 20}}
  db:
    image: postgres:15
volumes: {data: {}}
networks: {front: {}}
"""

OVERRIDE = """
services:
  web:
    image: shop/web:dev
    build:
      args: {B: "2"}
    command: python -m debugpy app.py
    environment: [B=2, C=3]
    labels: {debug: "true"}
    ports: ["8080:80", "5678:5678"]
    expose: ["3000", "4000"]
    volumes: ["./other:/app:ro", "./logs:/logs"]
    networks:
      front: {aliases: [dev]}
    depends_on: [db]
    healthcheck: {test: [CMD, other]}
    cap_add: [SYS_PTRACE, NET_ADMIN]
    dns: 8.8.8.8
    ulimits: {nofile: {soft: 15, hard: 20}}
  db:
    environment: {POSTGRES_PASSWORD: x}
  debug:
    image: busybox
"""


def test_merge_of_two_files():
    p = load(BASE, OVERRIDE)
    web = p.services["web"]
    assert web.image == "shop/web:dev"
    assert web.build.context == f"{WD}/web" and web.build.args == {"A": "1", "B": "2"}
    assert web.command == ["python", "-m", "debugpy", "app.py"]  # replaced, not appended
    assert web.environment == {"A": "1", "B": "2", "C": "3"}
    assert web.labels == {"tier": "web", "debug": "true"}
    assert web.ports == [PortConfig(target=80, published="8080"), PortConfig(target=9000, published="9000"),
                         PortConfig(target=5678, published="5678")]
    assert web.expose == ["3000", "4000"]
    assert [(v.source, v.target, v.read_only) for v in web.volumes] == [
        (f"{WD}/other", "/app", True), ("data", "/data", False), (f"{WD}/logs", "/logs", False)]
    assert web.networks["front"].aliases == ["www", "dev"]
    assert web.depends_on == {"db": Dependency(condition="service_healthy")}  # the list syntax keeps the condition
    assert web.healthcheck.test == ["CMD", "other"] and web.healthcheck.interval == 10 and web.healthcheck.retries == 3
    assert web.cap_add == ["NET_ADMIN", "SYS_PTRACE"] and web.dns == ["1.1.1.1", "8.8.8.8"]
    assert web.ulimits == {"nofile": Ulimit(soft=15, hard=20)}
    assert p.services["db"].image == "postgres:15" and p.services["db"].environment == {"POSTGRES_PASSWORD": "x"}
    assert set(p.services) == {"web", "db", "debug"}
    assert p.files == ["compose.yaml", "compose.override.yaml"]


def test_reset_and_override_tags():
    p = load(BASE, """
        services:
          web:
            ports: !reset []
            build: !reset null
            environment: !override {ONLY: "this"}
            volumes: !override ["./x:/x"]
            healthcheck: !reset
            depends_on: !reset
            labels:
              tier: !reset
              new: label
            ulimits:
              nofile: !reset
          db: !reset
        volumes:
          data: !reset
    """, """
        volumes:
          data: {}
    """)
    web = p.services["web"]
    assert web.ports == [] and web.build is None and web.healthcheck is None
    assert web.environment == {"ONLY": "this"}
    assert [v.target for v in web.volumes] == ["/x"]
    assert web.labels == {"new": "label"} and web.ulimits == {}
    assert "db" not in p.services
    assert p.volumes["data"].name == "shop_data"
    # one entry of a mapping
    p = load(BASE, """
        services:
          web:
            environment:
              A: !reset
              NEW: "1"
              GONE: !reset
            depends_on:
              db: !reset
            networks:
              front: !reset
              default: {}
    """)
    web = p.services["web"]
    assert web.environment == {"B": "1", "NEW": "1"} and web.depends_on == {}
    assert list(web.networks) == ["default"]


def test_three_files_in_order():
    p = load(BASE, "services:\n  web:\n    image: two\n", "services:\n  web:\n    image: three\n")
    assert p.services["web"].image == "three"


# -- extends ------------------------------------------------------------------------------------------

def test_extends_in_the_same_file():
    p = load("""
        services:
          base:
            image: shop/base
            environment: {LEVEL: base, KEEP: "1"}
            ports: ["80"]
            command: [serve]
          middle:
            extends: base
            environment: {LEVEL: middle}
          web:
            extends:
              service: middle
            command: [serve, --debug]
            ports: ["8080:80"]
    """)
    web = p.services["web"]
    assert web.image == "shop/base" and web.command == ["serve", "--debug"]
    assert web.environment == {"LEVEL": "middle", "KEEP": "1"}
    assert web.ports == [PortConfig(target=80), PortConfig(target=80, published="8080")]
    assert p.services["base"].environment == {"LEVEL": "base", "KEEP": "1"}  # the base is not changed


def test_extends_another_file_rebases_its_relative_paths():
    files = {
        "/srv/common/services.yaml": textwrap.dedent("""
            services:
              app:
                build: ./app
                env_file: app.env
                volumes: ["./conf:/etc/app"]
                image: common/app:${TAG:-latest}
        """),
        "/srv/common/app.env": "FROM_FILE=yes\n",
    }
    p = load("""
        services:
          web:
            extends: {file: ../common/services.yaml, service: app}
            volumes: ["./local:/local"]
    """, files=files, environ={"TAG": "7"})
    web = p.services["web"]
    assert web.build.context == "/srv/common/app" and web.image == "common/app:7"
    assert web.environment == {"FROM_FILE": "yes"}
    assert [v.source for v in web.volumes] == ["/srv/common/conf", f"{WD}/local"]


def test_extends_errors():
    assert "Circular reference:\n  a in /srv/shop/compose.yaml\n  extends b in /srv/shop/compose.yaml\n" \
           "  extends a in /srv/shop/compose.yaml" == error_of("""
        services:
          a: {extends: b, image: x}
          b: {extends: a}
    """)
    assert error_of("services:\n  web:\n    extends: nope\n") == \
        'cannot extend service "web" in compose.yaml: service "nope" not found in compose.yaml'
    msg = error_of("services:\n  web:\n    extends: {file: other.yaml, service: app}\n")
    assert msg.startswith("compose.yaml: services.web.extends.file: extends file /srv/shop/other.yaml not found")
    bad = {f"{WD}/other.yaml": "services:\n  app:\n    imgae: x\n"}
    assert error_of("services:\n  web:\n    extends: {file: other.yaml, service: app}\n", files=bad) == \
        f"validating {WD}/other.yaml: services.app Additional property imgae is not allowed (line 3)"


# -- profiles -----------------------------------------------------------------------------------------

PROFILED = """
services:
  web: {image: x}
  debug: {image: x, profiles: [dev], env_file: never-read.env}
  tools: {image: x, profiles: [dev, ops]}
  metrics: {image: x, profiles: [monitoring]}
"""


def test_profiles_enable_services():
    assert set(load(PROFILED).services) == {"web"}
    assert set(load(PROFILED).disabled_services) == {"debug", "tools", "metrics"}
    assert set(load(PROFILED, profiles=["ops"]).services) == {"web", "tools"}
    assert set(load(PROFILED, environ={"COMPOSE_PROFILES": "ops, monitoring"}).services) == {"web", "tools", "metrics"}


def test_all_profiles_reads_env_files_of_enabled_services_only():
    with pytest.raises(NotFound, match="never-read.env"):
        load(PROFILED, profiles=["*"])
    p = load(PROFILED, profiles=["*"], files={f"{WD}/never-read.env": "A=1\n"})
    assert set(p.services) == {"web", "debug", "tools", "metrics"} and p.services["debug"].environment == {"A": "1"}
    assert load(PROFILED, profiles=["ops"]).profiles == ["ops"]


def test_dependency_on_a_disabled_service():
    text = """
        services:
          web: {image: x, depends_on: [db]}
          db: {image: x, profiles: [db]}
    """
    assert error_of(text) == ('Service "db" was pulled in as dependency of service "web" but is not enabled by the '
                              'active profiles. You may fix this by adding a common profile to "db" and "web".')
    assert set(load(text, profiles=["db"]).services) == {"web", "db"}
    optional = text.replace("depends_on: [db]", "depends_on: {db: {condition: service_started, required: false}}")
    p = load(optional)
    assert p.services["web"].depends_on == {} and 'optional dependency "db" is not enabled' in p.warnings[-1]
    undefined = optional.replace("  db: {image: x, profiles: [db]}\n", "")
    assert error_of(undefined) == 'service "web" depends on undefined service "db": invalid compose project'


# -- rendering and hashing ----------------------------------------------------------------------------

@pytest.mark.parametrize("texts,env", [((BASE, OVERRIDE), {}), ((FULL,), FULL_ENV)])
def test_render_config_round_trips(texts, env):
    p = load(*texts, environ=env)
    p.services["db"].environment["PRICE"] = "$5"  # a literal dollar must survive the round trip
    out = render_config(p)
    assert out.startswith("name: shop\nservices:\n") and "PRICE: $$5" in out
    again = load(out, working_dir="/elsewhere")
    assert again.name == p.name
    assert set(again.services) == set(p.services)
    for name, service in p.services.items():
        copy = again.services[name]
        copy.env_file = service.env_file  # folded into environment by the first load
        assert copy == service, name
    for kind in ("networks", "volumes", "secrets", "configs"):
        assert getattr(again, kind) == getattr(p, kind), kind


def test_render_config_looks_like_docker_compose_config():
    out = render_config(load(BASE, OVERRIDE))
    assert "interval: 10s" in out and "published: '8080'" in out and "      default: null\n" in out
    assert "    networks:\n      front:\n        aliases:\n        - www\n        - dev\n" in out
    assert "\nnetworks:\n  default:\n    name: shop_default\n  front:\n    name: shop_front\n" in out


def test_config_hash_is_stable_and_tracks_what_shapes_the_container():
    text = "services:\n  web:\n    image: x:1\n    environment: {A: '1', B: '2'}\n    deploy: {replicas: 1}\n"
    h = load(text).services["web"].config_hash()
    assert len(h) == 64 and h == load(text).services["web"].config_hash()
    reordered = "services:\n  web:\n    image: x:1\n    environment: {B: '2', A: '1'}\n    deploy: {replicas: 5}\n"
    assert load(reordered).services["web"].config_hash() == h  # key order and replicas do not matter
    assert load(text.replace("x:1", "x:2")).services["web"].config_hash() != h
    assert load(text.replace("'2'", "'3'")).services["web"].config_hash() != h
    with_deps = text + "    depends_on: [db]\n    profiles: [p]\n  db: {image: y}\n"
    assert load(with_deps, profiles=["p"]).services["web"].config_hash() == h
