"""kube generate: every manifest validates against Kubernetes' own schemas (kubernetes-validate,
strict: no unknown fields), and says what the compose file says."""

from __future__ import annotations

import base64
from pathlib import Path

import pytest
import yaml

from dockyard.compose.kube import KubeOptions, dns_label, generate, image_reference, is_secret_name
from dockyard.compose.kube_containers import services_from_containers
from dockyard.compose.loader import load_project
from dockyard.containers.model import ContainerSpec, HealthSpec, MountSpec, Resources
from dockyard.errors import InvalidArgument

kubernetes_validate = pytest.importorskip("kubernetes_validate")
K8S_VERSION = "1.30.0"
EXAMPLES = Path(__file__).resolve().parents[2] / "examples"


def validate_all(docs: list[dict]) -> None:
    assert docs
    for doc in docs:
        kubernetes_validate.validate(doc, K8S_VERSION, strict=True)


def load(text: str, files: dict[str, str] | None = None, workdir: str = "/srv/app"):
    files = files or {}
    return load_project([("compose.yaml", text)], project_name="app", working_dir=workdir, environ={},
                        read_file=lambda p: files[p])


def by_kind(result, kind: str) -> dict[str, dict]:
    return {d["metadata"]["name"]: d for d in result.documents if d["kind"] == kind}


RICH = """
services:
  web:
    image: nginx:1.25
    ports: ["8080:80", "8443:443"]
    environment:
      LOG_LEVEL: debug
      DB_PASSWORD: hunter2
    env_file: [web.env]
    volumes: ["static:/usr/share/nginx/html:ro", "/etc/app:/etc/app", "/tmp/cache"]
    tmpfs: [/run]
    healthcheck:
      test: ["CMD-SHELL", "curl -fsS http://localhost/ || exit 1"]
      interval: 15s
      timeout: 3s
      retries: 4
      start_period: 30s
    deploy:
      replicas: 3
      resources:
        limits: {cpus: "0.5", memory: 256m}
        reservations: {cpus: "0.25", memory: 128m}
    read_only: true
    cap_drop: [ALL]
    cap_add: [NET_BIND_SERVICE]
    user: "101:101"
    labels: {com.example.team: web}
    x-dockyard-restart-unhealthy: true
  worker:
    build: ./worker
    command: ["python", "worker.py"]
    entrypoint: ["/usr/bin/tini", "--"]
    expose: ["9000"]
    volumes: ["static:/data"]
  db_main:
    image: postgres:16
    environment: {POSTGRES_PASSWORD: example}
    volumes: ["pgdata:/var/lib/postgresql/data"]
    expose: ["5432"]
volumes:
  static: {labels: {io.dockyard.kube.size: 5Gi}}
  pgdata: {}
"""
ENV = {"/srv/app/web.env": "GREETING=hello\nAPI_KEY=abc123\n# comment\nFEATURE=on\n"}


def test_rich_project_validates_and_maps_everything():
    result = generate(load(RICH, ENV), KubeOptions(read_file=lambda p: ENV[p]))
    validate_all(result.documents)
    kinds = [d["kind"] for d in result.documents]
    assert kinds.count("PersistentVolumeClaim") == 2 and kinds.count("Deployment") == 3
    pvcs = by_kind(result, "PersistentVolumeClaim")
    assert pvcs["static"]["spec"]["resources"]["requests"]["storage"] == "5Gi"
    assert pvcs["static"]["spec"]["accessModes"] == ["ReadWriteMany"]  # 3 web replicas + worker
    assert pvcs["pgdata"]["spec"]["accessModes"] == ["ReadWriteOnce"]

    web = by_kind(result, "Deployment")["web"]
    assert web["spec"]["replicas"] == 3
    pod = web["spec"]["template"]["spec"]
    c = pod["containers"][0]
    assert c["image"] == "nginx:1.25"
    assert {"name": "LOG_LEVEL", "value": "debug"} in c["env"]
    assert {"name": "DB_PASSWORD", "valueFrom": {"secretKeyRef": {"name": "web-secrets", "key": "DB_PASSWORD"}}} \
        in c["env"]
    assert not any(e["name"] in ("GREETING", "FEATURE", "API_KEY") for e in c["env"])  # via envFrom
    assert {"configMapRef": {"name": "web-web"}} in c["envFrom"] and {"secretRef": {"name": "web-secrets"}} in c[
        "envFrom"]
    assert c["resources"] == {"limits": {"cpu": "500m", "memory": "256Mi"},
                              "requests": {"cpu": "250m", "memory": "128Mi"}}
    assert c["readinessProbe"]["exec"]["command"] == ["/bin/sh", "-c", "curl -fsS http://localhost/ || exit 1"]
    assert c["readinessProbe"]["periodSeconds"] == 15 and c["readinessProbe"]["failureThreshold"] == 4
    assert c["livenessProbe"] == c["readinessProbe"]  # x-dockyard-restart-unhealthy
    assert c["startupProbe"]["failureThreshold"] >= 2
    assert c["securityContext"] == {"readOnlyRootFilesystem": True, "capabilities": {"add": ["NET_BIND_SERVICE"],
                                                                                    "drop": ["ALL"]},
                                    "runAsUser": 101, "runAsGroup": 101}
    mounts = {m["mountPath"]: m for m in c["volumeMounts"]}
    assert mounts["/usr/share/nginx/html"]["readOnly"] is True
    volumes = {v["name"]: v for v in pod["volumes"]}
    assert volumes["static"]["persistentVolumeClaim"] == {"claimName": "static", "readOnly": True}
    assert any("hostPath" in v for v in volumes.values()) and any("emptyDir" in v for v in volumes.values())
    assert web["spec"]["template"]["metadata"]["annotations"] == {"com.example.team": "web"}
    assert any("hostPath" in w for w in result.warnings)

    cm = by_kind(result, "ConfigMap")["web-web"]
    assert cm["data"] == {"GREETING": "hello", "FEATURE": "on"}
    secret = by_kind(result, "Secret")["web-secrets"]
    assert {k: base64.b64decode(v).decode() for k, v in secret["data"].items()} == {
        "API_KEY": "abc123", "DB_PASSWORD": "hunter2"}

    svc = by_kind(result, "Service")
    assert svc["web"]["spec"]["type"] == "ClusterIP"
    assert [(p["port"], p["targetPort"]) for p in svc["web"]["spec"]["ports"]] == [(80, 80), (443, 443)]
    assert svc["db-main"]["spec"]["ports"][0]["port"] == 5432  # a DNS-1035 name
    assert svc["worker"]["spec"]["ports"][0]["port"] == 9000

    worker = by_kind(result, "Deployment")["worker"]["spec"]["template"]["spec"]["containers"][0]
    assert worker["command"] == ["/usr/bin/tini", "--"] and worker["args"] == ["python", "worker.py"]
    assert worker["image"] == "app-worker"
    assert any("app-worker" in w for w in result.warnings)


def test_registry_rewrite_and_service_types():
    result = generate(load(RICH, ENV), KubeOptions(registry="registry.example:5000", service_type="NodePort",
                                                   read_file=lambda p: ENV[p]))
    validate_all(result.documents)
    images = {d["metadata"]["name"]: d["spec"]["template"]["spec"]["containers"][0]["image"]
              for d in result.documents if d["kind"] == "Deployment"}
    assert images == {"web": "registry.example:5000/nginx:1.25", "worker": "registry.example:5000/app-worker:latest",
                      "db-main": "registry.example:5000/postgres:16"}
    svc = by_kind(result, "Service")
    assert svc["web"]["spec"]["type"] == "NodePort" and svc["db-main"]["spec"]["type"] == "ClusterIP"
    text = result.yaml()
    assert "dockyard push registry.example:5000/app-worker:latest" in text
    assert list(yaml.safe_load_all(text)) == result.documents and "&id" not in text

    lb = generate(load("services:\n  web:\n    image: nginx\n    ports: ['31000:80', '8080:8080']\n"),
                  KubeOptions(service_type="LoadBalancer"))
    validate_all(lb.documents)
    ports = by_kind(lb, "Service")["web"]["spec"]["ports"]
    assert [(p["port"], p["targetPort"]) for p in ports] == [(80, 80), (31000, 80), (8080, 8080)]
    np = generate(load("services:\n  web:\n    image: nginx\n    ports: ['31000:80']\n"),
                  KubeOptions(service_type="NodePort"))
    assert by_kind(np, "Service")["web"]["spec"]["ports"][0]["nodePort"] == 31000
    with pytest.raises(InvalidArgument):
        generate(load("services:\n  web: {image: nginx}\n"), KubeOptions(service_type="Ingress"))


@pytest.mark.parametrize("example", ["shop-monolith", "shop-microservices"])
def test_examples_validate(example):
    d = EXAMPLES / example
    project = load_project([("compose.yaml", (d / "compose.yaml").read_text())], working_dir=str(d), environ={})
    result = generate(project, KubeOptions(registry="registry.local:5000", service_type="LoadBalancer"))
    validate_all(result.documents)
    services = by_kind(result, "Service")
    if example == "shop-microservices":
        # every service the gateway calls by name has a Service of that name on the port it calls
        assert {p["port"] for p in services["catalogue"]["spec"]["ports"]} == {8000}
        assert {p["port"] for p in services["orders"]["spec"]["ports"]} == {8000}
        assert services["gateway"]["spec"]["type"] == "LoadBalancer"
        assert "orders-data" in by_kind(result, "PersistentVolumeClaim")


def test_image_ports_add_services_for_exposed_images():
    project = load("services:\n  api:\n    image: myapi\n")
    assert generate(project).documents[-1]["kind"] == "Deployment"
    result = generate(project, KubeOptions(image_ports=lambda name: ["8000/tcp"] if name == "myapi" else []))
    validate_all(result.documents)
    assert by_kind(result, "Service")["api"]["spec"]["ports"][0]["port"] == 8000


def test_from_containers_groups_replicas_and_drops_image_defaults():
    image_cfg = {"Env": ["PATH=/usr/bin"], "Cmd": ["httpd", "-f"], "Labels": {"org.opencontainers.image.title": "x"}}

    def spec(n: int) -> ContainerSpec:
        return ContainerSpec(
            id=f"{n:064x}", name=f"shop-web-{n}", image_id="sha256:1", image_name="busybox",
            args=["httpd", "-f"], cmd=["httpd", "-f"], env=["PATH=/usr/bin", "MODE=prod", "SESSION_SECRET=x"],
            labels={"com.docker.compose.project": "shop", "com.docker.compose.service": "web",
                    "org.opencontainers.image.title": "x", "tier": "front"},
            port_bindings={"80/tcp": [{"HostIp": "", "HostPort": ""}]}, exposed_ports={"80/tcp": {}, "81/tcp": {}},
            mounts=[MountSpec(type="volume", target="/data", name="shop_data"),
                    MountSpec(type="volume", target="/scratch", name="f" * 64, anonymous=True)],
            healthcheck=HealthSpec(test=["CMD", "true"], interval=5, timeout=2, retries=2),
            resources=Resources(memory=64 << 20, nano_cpus=250_000_000))

    loner = ContainerSpec(id="e" * 64, name="tool", image_id="sha256:2", image_name="debian:bookworm-slim",
                          args=["sleep", "1"], cmd=["sleep", "1"])
    name, services, volumes = services_from_containers([(spec(1), image_cfg), (spec(2), image_cfg), (loner, {})])
    assert name == "shop"  # the one project among the containers
    by_name = {s.name: s for s in services}
    web = by_name["web"]
    assert web.replicas == 2 and web.command is None  # the image's own CMD
    assert web.environment == {"MODE": "prod", "SESSION_SECRET": "x"}
    assert web.labels == {"tier": "front"} and web.expose == ["81/tcp"]
    assert by_name["tool"].command == ["sleep", "1"]
    from dockyard.compose.kube import project_from_services

    result = generate(project_from_services(name, services, volumes), KubeOptions(registry="reg:5000"))
    validate_all(result.documents)
    dep = by_kind(result, "Deployment")["web"]
    c = dep["spec"]["template"]["spec"]["containers"][0]
    assert dep["spec"]["replicas"] == 2 and c["image"] == "reg:5000/busybox:latest"
    assert {"name": "SESSION_SECRET", "valueFrom": {"secretKeyRef": {"name": "web-secrets",
                                                                     "key": "SESSION_SECRET"}}} in c["env"]
    assert c["resources"]["limits"] == {"cpu": "250m", "memory": "64Mi"}
    assert "shop-data" in by_kind(result, "PersistentVolumeClaim")


def test_names_and_rules():
    assert dns_label("db_main") == "db-main" and dns_label("9lives") == "x-9lives" and dns_label("A.B") == "a-b"
    assert image_reference("busybox", "r:5000") == "r:5000/busybox:latest"
    assert image_reference("ghcr.io/o/app:2", "r:5000") == "r:5000/o/app:2"
    assert image_reference("busybox", "") == "busybox"
    for secret in ("DB_PASSWORD", "api_key", "GITHUB_TOKEN", "AWS_SECRET_ACCESS_KEY", "BASIC_AUTH"):
        assert is_secret_name(secret)
    for plain in ("LOG_LEVEL", "PORT", "DATABASE_HOST"):
        assert not is_secret_name(plain)
