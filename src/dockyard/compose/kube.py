"""Kubernetes manifests from a compose project (``dockyard kube generate -f compose.yaml``) or from
running containers (``dockyard kube generate CONTAINER...``): the way from one machine to a cluster.

What each compose piece becomes (one multi-document YAML, in this order)::

    named volume  (top-level, not external)  -> PersistentVolumeClaim <volume>   1Gi, ReadWriteOnce
                                                (ReadWriteMany when several pods mount it; the size
                                                from the volume's label io.dockyard.kube.size)
    env_file      (per service and file)     -> ConfigMap <service>-<file stem>, used by envFrom
    secret-looking variables                 -> Secret <service>-secrets (values base64), used by
                                                envFrom (env files) and secretKeyRef (environment)
    service                                  -> Deployment <service>: replicas (scale /
                                                deploy.replicas), image (rewritten to --registry),
                                                entrypoint/command, env, ports, resources (limits
                                                from deploy.resources.limits / mem_limit / cpus,
                                                requests from reservations), probes from the
                                                healthcheck, volume mounts, securityContext
    service with ports                       -> Service <service>: ClusterIP on every exposed and
                                                published port; ``service_type`` (NodePort or
                                                LoadBalancer) for services that publish ports

The rule for Secrets: a variable is secret when its name contains PASSWORD, PASSWD, SECRET, TOKEN,
API_KEY/APIKEY, PRIVATE_KEY, ACCESS_KEY, CREDENTIAL or AUTH (any case); everything else from an
env file goes to the ConfigMap and everything else from ``environment`` stays a plain ``value``.

Probes: the healthcheck becomes a readinessProbe (Docker's health status gates traffic and
``depends_on``, it restarts nothing); with ``x-dockyard-restart-unhealthy: true`` it also becomes a
livenessProbe (the kubelet restarts the container, as dockyard's health monitor does).

Bind mounts become hostPath volumes (the path must exist on the node: a warning says so);
anonymous volumes and tmpfs become emptyDir (tmpfs: medium Memory).

Pure: files (env files) are read through the ``read_file`` callback; warnings are returned.
"""

from __future__ import annotations

import base64
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

import yaml

from dockyard.compose.model import Project, Service, VolumeMount
from dockyard.errors import InvalidArgument

SERVICE_TYPES = ("ClusterIP", "NodePort", "LoadBalancer")
SECRET_NAME = re.compile(r"PASSWORD|PASSWD|SECRET|TOKEN|API_?KEY|PRIVATE_?KEY|ACCESS_?KEY|CREDENTIAL|AUTH",
                         re.IGNORECASE)
DEFAULT_SIZE = "1Gi"
SIZE_LABEL = "io.dockyard.kube.size"
RESTART_UNHEALTHY = "x-dockyard-restart-unhealthy"


def is_secret_name(name: str) -> bool:
    return SECRET_NAME.search(name) is not None


@dataclass
class KubeOptions:
    registry: str = ""                     # "HOST:PORT": image references rewritten to it
    service_type: str = "ClusterIP"        # for services that publish ports
    read_file: Callable[[str], str] | None = None   # for env files (absolute paths)
    image_ports: Callable[[str], list[str]] | None = None   # an image's EXPOSE ("8000/tcp"), if known


@dataclass
class KubeResult:
    documents: list[dict[str, Any]] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    images: dict[str, str] = field(default_factory=dict)   # local reference -> reference in the manifests

    def yaml(self) -> str:
        head = "".join(f"# {w}\n" for w in self.warnings)
        if self.images and any(k != v for k, v in self.images.items()):
            head += "# Push the images first:\n" + "".join(
                f"#   dockyard tag {k} {v} && dockyard push {v}\n" for k, v in self.images.items() if k != v)
        return head + yaml.dump_all(self.documents, Dumper=_Dumper, sort_keys=False, default_flow_style=False)


class _Dumper(yaml.SafeDumper):
    def ignore_aliases(self, data: Any) -> bool:  # no &id001 anchors: every document stands alone
        return True


# --- names -----------------------------------------------------------------------------------------

def dns_label(name: str) -> str:
    """A DNS-1035 label (Services) that is also a valid DNS-1123 subdomain (everything else)."""
    s = re.sub(r"[^a-z0-9-]+", "-", name.lower()).strip("-")
    if not s or not s[0].isalpha():
        s = "x-" + s
    return s[:63].rstrip("-")


def image_reference(image: str, registry: str) -> str:
    """``busybox`` -> ``HOST:PORT/library/busybox:latest`` with a registry; unchanged without one."""
    if not registry:
        return image
    from dockyard.oci.reference import parse_normalized

    ref = parse_normalized(image)
    path = ref.path.removeprefix("library/") if ref.domain == "docker.io" else ref.path
    if ref.digest:
        return f"{registry}/{path}@{ref.digest}"
    return f"{registry}/{path}:{ref.tag or 'latest'}"


def _quantity_bytes(n: int) -> str:
    for unit, size in (("Gi", 1 << 30), ("Mi", 1 << 20), ("Ki", 1 << 10)):
        if n % size == 0:
            return f"{n // size}{unit}"
    return str(n)


def _quantity_cpu(cpus: float) -> str:
    milli = round(cpus * 1000)
    return str(milli // 1000) if milli % 1000 == 0 else f"{milli}m"


# --- the generator ---------------------------------------------------------------------------------

class _Generator:
    def __init__(self, project: Project, opts: KubeOptions) -> None:
        if opts.service_type not in SERVICE_TYPES:
            raise InvalidArgument(f"invalid service type {opts.service_type!r} (one of {', '.join(SERVICE_TYPES)})")
        self.p = project
        self.o = opts
        self.result = KubeResult()
        self.part_of = dns_label(project.name)

    def labels(self, service: str) -> dict[str, str]:
        return {"app.kubernetes.io/name": dns_label(service), "app.kubernetes.io/part-of": self.part_of}

    def run(self) -> KubeResult:
        out = self.result.documents
        out += self.claims()
        for s in self.p.iter_services():
            env, env_from, docs = self.environment(s)
            out += docs
            out.append(self.deployment(s, env, env_from))
            svc = self.service(s)
            if svc is not None:
                out.append(svc)
        return self.result

    # -- volumes ---------------------------------------------------------------------------------
    def claims(self) -> list[dict[str, Any]]:
        users: dict[str, int] = {}
        for s in self.p.iter_services():
            for m in s.volumes:
                if m.type == "volume" and m.source:
                    users[m.source] = users.get(m.source, 0) + s.replicas
        docs = []
        for key, vol in sorted(self.p.volumes.items()):
            if key not in users:
                continue
            if vol.external:
                self.result.warnings.append(f"volume {vol.name} is external: a PersistentVolumeClaim named "
                                            f"{dns_label(vol.name)} must exist in the cluster")
                continue
            docs.append({
                "apiVersion": "v1", "kind": "PersistentVolumeClaim",
                "metadata": {"name": self.claim_name(key), "labels": {"app.kubernetes.io/part-of": self.part_of}},
                "spec": {"accessModes": ["ReadWriteMany" if users[key] > 1 else "ReadWriteOnce"],
                         "resources": {"requests": {"storage": vol.labels.get(SIZE_LABEL, DEFAULT_SIZE)}}},
            })
        return docs

    def claim_name(self, key: str) -> str:
        vol = self.p.volumes.get(key)
        if vol is not None and vol.external:
            return dns_label(vol.name)
        return dns_label(key)

    def pod_volumes(self, s: Service) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
        volumes: list[dict[str, Any]] = []
        mounts: list[dict[str, Any]] = []
        for i, m in enumerate(s.volumes):
            name, source = self.pod_volume(s, i, m)
            volumes.append({"name": name, **source})
            mount: dict[str, Any] = {"name": name, "mountPath": m.target}
            if m.read_only:
                mount["readOnly"] = True
            if m.volume is not None and m.volume.subpath:
                mount["subPath"] = m.volume.subpath
            mounts.append(mount)
        for i, target in enumerate(s.tmpfs):
            name = f"tmpfs-{i}"
            volumes.append({"name": name, "emptyDir": {"medium": "Memory"}})
            mounts.append({"name": name, "mountPath": target.split(":")[0]})
        return volumes, mounts

    def pod_volume(self, s: Service, i: int, m: VolumeMount) -> tuple[str, dict[str, Any]]:
        if m.type == "volume" and m.source:
            claim = self.claim_name(m.source)
            return claim, {"persistentVolumeClaim": {"claimName": claim, **({"readOnly": True} if m.read_only else {})}}
        if m.type == "bind":
            self.result.warnings.append(f"service {s.name}: the bind mount {m.source} becomes a hostPath volume; "
                                        "the path must exist on every node")
            return f"host-{i}", {"hostPath": {"path": m.source}}
        if m.type == "tmpfs":
            size = m.tmpfs.size if m.tmpfs is not None else None
            return f"tmpfs-v{i}", {"emptyDir": {"medium": "Memory",
                                                **({"sizeLimit": _quantity_bytes(size)} if size else {})}}
        return f"scratch-{i}", {"emptyDir": {}}

    # -- environment ---------------------------------------------------------------------------
    def environment(self, s: Service) -> tuple[list[dict[str, Any]], list[dict[str, Any]], list[dict[str, Any]]]:
        """(env, envFrom, ConfigMap/Secret documents) of one service."""
        from dockyard.compose.dotenv import parse_dotenv

        docs: list[dict[str, Any]] = []
        env_from: list[dict[str, Any]] = []
        from_files: dict[str, str] = {}
        secret: dict[str, str] = {}
        secret_name = dns_label(f"{s.name}-secrets")
        for ef in s.env_file:
            if self.o.read_file is None:
                break
            try:
                text = self.o.read_file(ef.path)
            except OSError:
                if ef.required:
                    raise InvalidArgument(f"env file {ef.path} not found") from None
                continue
            values = parse_dotenv(text, self.p.environment, source=ef.path)
            from_files.update(values)
            plain = {k: v for k, v in values.items() if not is_secret_name(k)}
            secret.update({k: v for k, v in values.items() if is_secret_name(k)})
            if plain:
                stem = ef.path.rsplit("/", 1)[-1].lstrip(".").rsplit(".", 1)[0] or "env"
                name = dns_label(f"{s.name}-{stem}")
                docs.append({"apiVersion": "v1", "kind": "ConfigMap",
                             "metadata": {"name": name, "labels": self.labels(s.name)},
                             "data": plain})
                env_from.append({"configMapRef": {"name": name}})
        if secret:
            env_from.append({"secretRef": {"name": secret_name}})
        env: list[dict[str, Any]] = []
        for key, value in s.environment.items():
            if value is None or (key in from_files and from_files[key] == value):
                continue  # unset, or comes through envFrom
            if is_secret_name(key):
                secret[key] = value
                env.append({"name": key, "valueFrom": {"secretKeyRef": {"name": secret_name, "key": key}}})
            else:
                env.append({"name": key, "value": value})
        if secret:
            docs.append({"apiVersion": "v1", "kind": "Secret", "type": "Opaque",
                         "metadata": {"name": secret_name, "labels": self.labels(s.name)},
                         "data": {k: base64.b64encode(v.encode()).decode() for k, v in secret.items()}})
        return env, env_from, docs

    # -- workloads -----------------------------------------------------------------------------
    def exposed(self, s: Service) -> list[str]:
        """``expose`` and the image's EXPOSE: other services reach these ports by the service's name,
        which in a cluster needs a Service."""
        out = [str(e) for e in s.expose]
        if self.o.image_ports is not None:
            out += [e for e in self.o.image_ports(s.image or f"{self.p.name}-{s.name}") if e not in out]
        return out

    def image(self, s: Service) -> str:
        local = s.image or f"{self.p.name}-{s.name}"
        if not self.o.registry and not s.image:
            self.result.warnings.append(f"service {s.name} is built locally as {local}: push it to a registry "
                                        "the cluster can pull from (--registry)")
        ref = image_reference(local, self.o.registry)
        self.result.images[local] = ref
        return ref

    def deployment(self, s: Service, env: list[dict[str, Any]], env_from: list[dict[str, Any]]) -> dict[str, Any]:
        if s.network_mode and s.network_mode not in ("bridge", "default"):
            self.result.warnings.append(f"service {s.name}: network_mode {s.network_mode} has no Kubernetes "
                                        "equivalent and is ignored")
        c: dict[str, Any] = {"name": dns_label(s.name), "image": self.image(s)}
        if s.entrypoint is not None:
            c["command"] = list(s.entrypoint)
        if s.command is not None:
            c["args"] = list(s.command)
        if s.working_dir:
            c["workingDir"] = s.working_dir
        if env:
            c["env"] = env
        if env_from:
            c["envFrom"] = env_from
        ports = _container_ports(s, self.exposed(s))
        if ports:
            c["ports"] = ports
        resources = _resources(s)
        if resources:
            c["resources"] = resources
        probe, startup = _probes(s)
        if probe is not None:
            c["readinessProbe"] = probe
            if s.extensions.get(RESTART_UNHEALTHY) in (True, "true", "True", 1):
                c["livenessProbe"] = dict(probe)
            if startup is not None:
                c["startupProbe"] = startup
        volumes, mounts = self.pod_volumes(s)
        if mounts:
            c["volumeMounts"] = mounts
        sc = _security_context(s)
        if sc:
            c["securityContext"] = sc
        if s.tty:
            c["tty"] = True
        if s.stdin_open:
            c["stdin"] = True
        pod: dict[str, Any] = {"containers": [c]}
        if volumes:
            pod["volumes"] = volumes
        if s.hostname:
            pod["hostname"] = dns_label(s.hostname)
        if s.stop_grace_period is not None:
            pod["terminationGracePeriodSeconds"] = int(s.stop_grace_period)
        if s.extra_hosts:
            by_ip: dict[str, list[str]] = {}
            for entry in s.extra_hosts:
                host, _, ip = entry.partition(":")
                by_ip.setdefault(ip, []).append(host)
            pod["hostAliases"] = [{"ip": ip, "hostnames": names} for ip, names in by_ip.items()
                                  if ip != "host-gateway"]
            if not pod["hostAliases"]:
                del pod["hostAliases"]
        labels = self.labels(s.name)
        meta: dict[str, Any] = {"name": dns_label(s.name), "labels": labels}
        annotations = {k: str(v) for k, v in {**s.labels, **s.annotations}.items() if _annotation_key(k)}
        template_meta: dict[str, Any] = {"labels": labels}
        if annotations:
            template_meta["annotations"] = annotations
        return {
            "apiVersion": "apps/v1", "kind": "Deployment", "metadata": meta,
            "spec": {"replicas": s.replicas, "selector": {"matchLabels": labels},
                     "template": {"metadata": template_meta, "spec": pod}},
        }

    def service(self, s: Service) -> dict[str, Any] | None:
        """In the project network a service answers on its container ports by name: the Service
        does too (port = the container port).  Published ports are what the outside reaches: with
        NodePort a published port in 30000-32767 becomes the nodePort; with LoadBalancer a published
        port unlike the container port is added as a port of its own."""
        ports: list[dict[str, Any]] = []
        seen: set[tuple[int, str]] = set()
        published = bool(s.ports)
        wanted_type = self.o.service_type if published else "ClusterIP"

        def add(port: int, target: int, proto: str) -> dict[str, Any] | None:
            if (port, proto) in seen:
                return None
            seen.add((port, proto))
            entry = {"name": f"{proto}-{port}", "port": port, "targetPort": target, "protocol": proto.upper()}
            ports.append(entry)
            return entry

        for p in s.ports:
            entry = add(p.target, p.target, p.protocol)
            fixed = int(p.published) if p.published.isdigit() else None
            if fixed is None:
                continue
            if wanted_type == "NodePort" and entry is not None and 30000 <= fixed <= 32767:
                entry["nodePort"] = fixed
            elif wanted_type == "LoadBalancer" and fixed != p.target:
                add(fixed, p.target, p.protocol)
        for e in self.exposed(s):
            num, _, proto = str(e).partition("/")
            lo, _, hi = num.partition("-")
            for port in range(int(lo), int(hi or lo) + 1):
                add(port, port, proto or "tcp")
        if not ports:
            return None
        spec: dict[str, Any] = {"type": wanted_type, "selector": self.labels(s.name), "ports": ports}
        return {"apiVersion": "v1", "kind": "Service",
                "metadata": {"name": dns_label(s.name), "labels": self.labels(s.name)}, "spec": spec}


def _container_ports(s: Service, exposed: list[str]) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    seen: set[tuple[int, str]] = set()
    targets = [(p.target, p.protocol) for p in s.ports]
    for e in exposed:
        num, _, proto = str(e).partition("/")
        lo, _, hi = num.partition("-")
        targets += [(port, proto or "tcp") for port in range(int(lo), int(hi or lo) + 1)]
    for target, proto in targets:
        if (target, proto) in seen:
            continue
        seen.add((target, proto))
        out.append({"containerPort": target, "protocol": proto.upper()})
    return out


def _resources(s: Service) -> dict[str, Any]:
    limits: dict[str, str] = {}
    requests: dict[str, str] = {}
    lim = s.deploy.limits if s.deploy else None
    res = s.deploy.reservations if s.deploy else None
    cpus = (lim.cpus if lim and lim.cpus else None) or s.cpus
    memory = (lim.memory if lim and lim.memory else None) or s.mem_limit
    if cpus:
        limits["cpu"] = _quantity_cpu(cpus)
    if memory and memory > 0:
        limits["memory"] = _quantity_bytes(memory)
    if res and res.cpus:
        requests["cpu"] = _quantity_cpu(res.cpus)
    mem_req = (res.memory if res and res.memory else None) or s.mem_reservation
    if mem_req:
        requests["memory"] = _quantity_bytes(mem_req)
    return {k: v for k, v in (("limits", limits), ("requests", requests)) if v}


def _probes(s: Service) -> tuple[dict[str, Any] | None, dict[str, Any] | None]:
    """(the probe, a startupProbe for the start period) of the healthcheck, or (None, None).

    Docker's start period is a grace time in which failures do not count but a success counts at
    once: a startupProbe (every start_interval, failing only after the whole period) is its shape."""
    hc = s.healthcheck
    if hc is None or hc.disable or not hc.test or hc.test[0] == "NONE":
        return None, None
    if hc.test[0] == "CMD-SHELL":
        command = ["/bin/sh", "-c", " ".join(hc.test[1:])]
    elif hc.test[0] == "CMD":
        command = list(hc.test[1:])
    else:
        command = ["/bin/sh", "-c", " ".join(hc.test)]
    timeout = max(1, round(hc.timeout if hc.timeout is not None else 30))
    probe: dict[str, Any] = {"exec": {"command": command},
                             "periodSeconds": max(1, round(hc.interval if hc.interval is not None else 30)),
                             "timeoutSeconds": timeout,
                             "failureThreshold": hc.retries if hc.retries is not None else 3}
    if not hc.start_period:
        return probe, None
    period = max(1, round(hc.start_interval or (hc.interval if hc.interval is not None else 30)))
    startup = {"exec": {"command": list(command)}, "periodSeconds": period, "timeoutSeconds": timeout,
               "failureThreshold": max(1, -(-round(hc.start_period) // period)) + probe["failureThreshold"]}
    return probe, startup


def _security_context(s: Service) -> dict[str, Any]:
    sc: dict[str, Any] = {}
    if s.read_only:
        sc["readOnlyRootFilesystem"] = True
    if s.privileged:
        sc["privileged"] = True
    caps: dict[str, list[str]] = {}
    if s.cap_add:
        caps["add"] = [c.upper().removeprefix("CAP_") for c in s.cap_add]
    if s.cap_drop:
        caps["drop"] = [c.upper().removeprefix("CAP_") for c in s.cap_drop]
    if caps:
        sc["capabilities"] = caps
    if s.user:
        uid, _, gid = s.user.partition(":")
        if uid.isdigit():
            sc["runAsUser"] = int(uid)
        if gid.isdigit():
            sc["runAsGroup"] = int(gid)
    return sc


_QUALIFIED = re.compile(r"([a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*/)?"
                        r"[A-Za-z0-9]([-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?")


def _annotation_key(key: str) -> bool:
    return _QUALIFIED.fullmatch(key) is not None and key.split("/")[0] != "com.docker.compose"


def generate(project: Project, opts: KubeOptions | None = None) -> KubeResult:
    """The manifests of a project: PVCs, then per service ConfigMaps/Secret, Deployment, Service.

    Raises :class:`InvalidArgument` for a bad ``service_type`` or a missing required env file."""
    return _Generator(project, opts or KubeOptions()).run()


def project_from_services(name: str, services: Iterable[Service], volumes: dict | None = None) -> Project:
    """A project holding ``services`` (what ``kube generate CONTAINER...`` builds from containers)."""
    return Project(name=name, working_dir="/", services={s.name: s for s in services}, volumes=volumes or {})
