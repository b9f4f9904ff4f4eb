"""Running containers as compose services, for ``dockyard kube generate CONTAINER...``.

Containers a compose project made (labels ``com.docker.compose.project``/``.service``) are grouped
back into their service, its replicas counted; any other container becomes a service of its own,
named after the container.  What the image already says (its Env, Entrypoint, Cmd, WorkingDir) is
left out, so the manifests carry only what the user chose.

Pure: the caller passes the container specs and their images' config (``config`` of the image
config JSON).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from dockyard.compose.kube import RESTART_UNHEALTHY
from dockyard.compose.model import Healthcheck, PortConfig, Service, TmpfsOptions, Volume, VolumeMount
from dockyard.containers.model import ContainerSpec

PROJECT_LABEL = "com.docker.compose.project"
SERVICE_LABEL = "com.docker.compose.service"
RESTART_UNHEALTHY_LABEL = "io.dockyard.restart-unhealthy"


def services_from_containers(items: Sequence[tuple[ContainerSpec, dict[str, Any]]]
                             ) -> tuple[str, list[Service], dict[str, Volume]]:
    """(project name, services, named volumes) of ``(spec, image config)`` pairs."""
    groups: dict[str, list[tuple[ContainerSpec, dict[str, Any]]]] = {}
    projects = []
    for spec, cfg in items:
        key = spec.labels.get(SERVICE_LABEL) or spec.name
        groups.setdefault(key, []).append((spec, cfg))
        if spec.labels.get(PROJECT_LABEL):
            projects.append(spec.labels[PROJECT_LABEL])
    name = projects[0] if projects and len(set(projects)) == 1 else "dockyard"
    volumes: dict[str, Volume] = {}
    services = []
    for key, members in sorted(groups.items()):
        spec, cfg = members[0]
        s = service_from_container(key, spec, cfg)
        s.scale = len(members)
        for m in spec.mounts:
            if m.type == "volume" and not m.anonymous and m.name:
                volumes[m.name] = Volume(name=m.name, labels=dict(m.labels))
        services.append(s)
    return name, services, volumes


def service_from_container(name: str, spec: ContainerSpec, cfg: dict[str, Any]) -> Service:
    image_env = set(cfg.get("Env") or [])
    s = Service(name=name, image=spec.image_name)
    if spec.entrypoint is not None and spec.entrypoint != cfg.get("Entrypoint"):
        s.entrypoint = list(spec.entrypoint)
    if spec.cmd is not None and (spec.cmd != cfg.get("Cmd") or s.entrypoint is not None):
        s.command = list(spec.cmd)
    for e in spec.env:
        if e in image_env:
            continue
        k, _, v = e.partition("=")
        s.environment[k] = v
    if spec.working_dir and spec.working_dir != (cfg.get("WorkingDir") or ""):
        s.working_dir = spec.working_dir
    if spec.user and spec.user != (cfg.get("User") or ""):
        s.user = spec.user
    published = set()
    for key, bindings in sorted(spec.port_bindings.items()):
        port, _, proto = key.partition("/")
        for b in bindings or [{}]:
            s.ports.append(PortConfig(target=int(port), published=str(b.get("HostPort") or ""),
                                      host_ip=b.get("HostIp") or "", protocol=proto or "tcp"))
        published.add(key)
    s.expose = [k for k in sorted(spec.exposed_ports) if k not in published]
    for m in spec.mounts:
        if m.from_image:
            continue
        if m.type == "volume":
            s.volumes.append(VolumeMount(type="volume", target=m.target, source="" if m.anonymous else m.name,
                                         read_only=m.readonly))
        elif m.type == "bind":
            s.volumes.append(VolumeMount(type="bind", target=m.target, source=m.source, read_only=m.readonly))
        elif m.type == "tmpfs":
            s.volumes.append(VolumeMount(type="tmpfs", target=m.target, tmpfs=TmpfsOptions()))
    s.tmpfs = sorted(spec.tmpfs)
    hc = spec.healthcheck
    if hc is not None and hc.test and hc.test[0] != "NONE":
        s.healthcheck = Healthcheck(test=list(hc.test), interval=hc.interval, timeout=hc.timeout,
                                    start_period=hc.start_period, start_interval=hc.start_interval,
                                    retries=hc.retries)
    r = spec.resources
    if r.memory and r.memory > 0:
        s.mem_limit = r.memory
    if r.memory_reservation:
        s.mem_reservation = r.memory_reservation
    if r.nano_cpus:
        s.cpus = r.nano_cpus / 1e9
    s.read_only = spec.read_only
    s.privileged = spec.privileged
    s.cap_add = list(spec.cap_add)
    s.cap_drop = list(spec.cap_drop)
    s.extra_hosts = list(spec.extra_hosts)
    image_labels = cfg.get("Labels") or {}
    s.labels = {k: v for k, v in spec.labels.items()
                if not k.startswith("com.docker.compose.") and image_labels.get(k) != v}
    if spec.labels.get(RESTART_UNHEALTHY_LABEL) == "true":
        s.extensions[RESTART_UNHEALTHY] = True
    return s
