"""A compose service as the engine's container options: what ``docker compose`` passes to the
Engine API's ContainerCreate, as :class:`~dockyard.engine.options.ContainerCreateOptions`.

Labels (docker compose's, so tools that read them work on dockyard's containers too)::

    com.docker.compose.project              the project name
    com.docker.compose.service              the service
    com.docker.compose.container-number     1, 2, ... (the replica)
    com.docker.compose.oneoff               "False" ("True" for `compose run` containers)
    com.docker.compose.config-hash          Service.config_hash(): a change means "recreate"
    com.docker.compose.image                the image id the container was made from
    com.docker.compose.project.working_dir  the project directory
    com.docker.compose.project.config_files the compose files, comma-separated
    com.docker.compose.depends_on           "svc:condition:restart,..."
    com.docker.compose.version              the compose implementation's version
    io.dockyard.restart-unhealthy           "true" with x-dockyard-restart-unhealthy: the health
                                            monitor restarts the container when it turns unhealthy

Networks get ``com.docker.compose.project``/``.network``, volumes ``.project``/``.volume``.

Pure: no I/O.  Where the engine's options cannot say what compose says, the closest equivalent is
used and documented here:

- ``entrypoint`` is one string in the engine's options (``--entrypoint``): a longer compose
  entrypoint passes its first word as the entrypoint and the rest before the command, which makes
  the same process arguments.
- an exec-form healthcheck (``["CMD", ...]``) runs as ``CMD-SHELL`` with the words shell-quoted:
  the same command, through /bin/sh.
"""

from __future__ import annotations

import shlex
from dataclasses import dataclass, field

from dockyard import __version__
from dockyard.compose.model import PortConfig, Project, Service, VolumeMount
from dockyard.containers.model import MountSpec, Resources, RestartPolicy, Ulimit
from dockyard.engine.options import ContainerCreateOptions
from dockyard.errors import InvalidArgument

PROJECT = "com.docker.compose.project"
SERVICE = "com.docker.compose.service"
NUMBER = "com.docker.compose.container-number"
ONEOFF = "com.docker.compose.oneoff"
CONFIG_HASH = "com.docker.compose.config-hash"
IMAGE = "com.docker.compose.image"
WORKING_DIR = "com.docker.compose.project.working_dir"
CONFIG_FILES = "com.docker.compose.project.config_files"
DEPENDS_ON = "com.docker.compose.depends_on"
VERSION = "com.docker.compose.version"
NETWORK = "com.docker.compose.network"
VOLUME = "com.docker.compose.volume"
RESTART_UNHEALTHY_LABEL = "io.dockyard.restart-unhealthy"
RESTART_UNHEALTHY_KEY = "x-dockyard-restart-unhealthy"
COMPOSE_VERSION = f"dockyard-{__version__}"


def image_name(project: Project, service: Service) -> str:
    """The image a service runs: ``image:``, else ``<project>-<service>`` (what compose v2 tags a
    build-only service's image as)."""
    return service.image or f"{project.name}-{service.name}"


def container_name(project: Project, service: Service, number: int) -> str:
    return service.container_name or f"{project.name}-{service.name}-{number}"


def restart_unhealthy(service: Service) -> bool:
    value = service.extensions.get(RESTART_UNHEALTHY_KEY)
    return value is True or str(value).lower() in ("true", "1", "yes")


def project_labels(project: Project) -> dict[str, str]:
    return {PROJECT: project.name, WORKING_DIR: project.working_dir,
            CONFIG_FILES: ",".join(project.files), VERSION: COMPOSE_VERSION}


def container_labels(project: Project, service: Service, number: int, *, image_id: str = "",
                     oneoff: bool = False) -> dict[str, str]:
    labels = dict(service.labels)
    if restart_unhealthy(service):
        labels[RESTART_UNHEALTHY_LABEL] = "true"
    labels.update(project_labels(project))
    labels.update({SERVICE: service.name, NUMBER: str(number), ONEOFF: "True" if oneoff else "False",
                   CONFIG_HASH: service.config_hash()})
    if image_id:
        labels[IMAGE] = image_id
    if service.depends_on:
        labels[DEPENDS_ON] = ",".join(f"{n}:{d.condition}:{str(d.restart).lower()}"
                                      for n, d in sorted(service.depends_on.items()))
    return labels


def restart_policy(service: Service) -> RestartPolicy:
    """``restart:`` (Docker's policies), else ``deploy.restart_policy`` (swarm's words)."""
    if service.restart:
        name, _, count = service.restart.partition(":")
        return RestartPolicy(name, int(count) if count else 0)
    rp = service.deploy.restart_policy if service.deploy else None
    if rp is not None and rp.condition:
        name = {"none": "no", "on-failure": "on-failure", "any": "always"}.get(rp.condition, "no")
        return RestartPolicy(name, rp.max_attempts or 0 if name == "on-failure" else 0)
    return RestartPolicy("no", 0)


def resources(service: Service) -> Resources:
    lim = service.deploy.limits if service.deploy else None
    res = service.deploy.reservations if service.deploy else None
    cpus = (lim.cpus if lim and lim.cpus else None) or service.cpus
    memory = (lim.memory if lim and lim.memory else None) or service.mem_limit
    pids = (lim.pids if lim and lim.pids else None) or service.pids_limit
    return Resources(
        memory=memory, memory_swap=service.memswap_limit,
        memory_reservation=(res.memory if res and res.memory else None) or service.mem_reservation,
        nano_cpus=int(cpus * 1e9) if cpus else None, cpu_shares=service.cpu_shares,
        cpuset_cpus=service.cpuset, pids_limit=pids,
    )


def publish_spec(p: PortConfig) -> str:
    """A long-syntax port as ``-p`` text: ``[IP:][HOST[-HOST]:]TARGET/PROTO``."""
    ip = f"[{p.host_ip}]" if ":" in p.host_ip else p.host_ip
    if p.published:
        return f"{ip + ':' if ip else ''}{p.published}:{p.target}/{p.protocol}"
    return f"{ip}::{p.target}/{p.protocol}" if ip else f"{p.target}/{p.protocol}"


def mount_spec(project: Project, m: VolumeMount) -> MountSpec:
    if m.type == "volume":
        if not m.source:
            return MountSpec(type="volume", target=m.target, anonymous=True,
                             nocopy=bool(m.volume and m.volume.nocopy))
        vol = project.volumes.get(m.source)
        name = vol.name if vol is not None else m.source
        return MountSpec(type="volume", target=m.target, source=name, name=name, readonly=m.read_only,
                         nocopy=bool(m.volume and m.volume.nocopy),
                         driver=(vol.driver or "") if vol is not None else "",
                         driver_opts=dict(vol.driver_opts) if vol is not None else {})
    if m.type == "bind":
        options = [m.bind.propagation] if m.bind and m.bind.propagation else []
        return MountSpec(type="bind", target=m.target, source=m.source, readonly=m.read_only, options=options,
                         create_source=bool(m.bind and m.bind.create_host_path))
    if m.type == "tmpfs":
        from dockyard.volumes.mountspec import tmpfs_options

        size = m.tmpfs.size if m.tmpfs and m.tmpfs.size else 0
        mode = m.tmpfs.mode if m.tmpfs else None
        return MountSpec(type="tmpfs", target=m.target, readonly=m.read_only, options=tmpfs_options(size, mode))
    raise InvalidArgument(f"unsupported mount type {m.type!r} at {m.target}")


@dataclass
class NetworkAttachment:
    """A network the container joins after create (``network connect`` with aliases)."""

    network: str
    aliases: list[str] = field(default_factory=list)
    ip: str = ""


def networks(project: Project, service: Service) -> list[NetworkAttachment]:
    """The service's networks, by priority (then name): the first is the create-time network.
    Aliases: the service name (so every replica answers under it) and the declared ones."""
    keys = sorted(service.networks, key=lambda k: (-(service.networks[k].priority or 0), k))
    out = []
    for key in keys:
        sn = service.networks[key]
        net = project.networks.get(key)
        name = net.name if net is not None else key
        out.append(NetworkAttachment(name, [service.name, *(a for a in sn.aliases if a != service.name)],
                                     sn.ipv4_address or ""))
    return out


def create_options(project: Project, service: Service, number: int, *, image_id: str = "",
                   oneoff: bool = False, name: str = "", network_mode: str | None = None,
                   publish: bool = True) -> tuple[ContainerCreateOptions, list[NetworkAttachment]]:
    """ContainerCreateOptions for replica ``number`` (or a one-off ``compose run`` container), and
    the further networks to connect.  ``network_mode`` is the service's ``network_mode`` already
    resolved (``service:x`` -> ``container:<id>``)."""
    s = service
    entrypoint: str | None = None
    command = list(s.command or [])
    if s.entrypoint is not None:
        entrypoint = s.entrypoint[0] if s.entrypoint else ""
        command = [*s.entrypoint[1:], *command]
    opts = ContainerCreateOptions(
        image=image_name(project, s), command=command, entrypoint=entrypoint,
        name=name or container_name(project, s, number),
        env=[f"{k}={v}" for k, v in s.environment.items() if v is not None],
        workdir=s.working_dir or "", user=s.user, hostname=s.hostname or "", domainname=s.domainname or "",
        labels=container_labels(project, s, number, image_id=image_id, oneoff=oneoff),
        tty=s.tty, interactive=s.stdin_open, init=bool(s.init), read_only=s.read_only, privileged=s.privileged,
        cap_add=list(s.cap_add), cap_drop=list(s.cap_drop), security_opt=list(s.security_opt),
        tmpfs={t.split(":", 1)[0]: (t.split(":", 1)[1] if ":" in t else "") for t in s.tmpfs},
        shm_size=s.shm_size, ulimits=[Ulimit(k, u.soft, u.hard) for k, u in sorted(s.ulimits.items())],
        resources=resources(s), restart_policy=restart_policy(s) if not oneoff else RestartPolicy(),
        stop_signal=s.stop_signal or "",
        stop_timeout=int(s.stop_grace_period) if s.stop_grace_period is not None else None,
        add_hosts=list(s.extra_hosts), dns=list(s.dns), dns_search=list(s.dns_search),
        dns_options=list(s.dns_opt), mac_address=s.mac_address or "",
        publish=[publish_spec(p) for p in s.ports] if publish else [],
        expose=list(s.expose), mounts=[mount_spec(project, m) for m in s.volumes],
    )
    hc = s.healthcheck
    if hc is not None:
        if hc.disable or hc.test == ["NONE"]:
            opts.no_healthcheck = True
        else:
            if hc.test:
                opts.health_cmd = hc.test[1] if hc.test[0] == "CMD-SHELL" else shlex.join(hc.test[1:])
            opts.health_interval = hc.interval
            opts.health_timeout = hc.timeout
            opts.health_start_period = hc.start_period
            opts.health_start_interval = hc.start_interval
            opts.health_retries = hc.retries
    extra: list[NetworkAttachment] = []
    mode = network_mode if network_mode is not None else s.network_mode
    if mode:
        opts.network = mode
    else:
        attachments = networks(project, s)
        if attachments:
            first, extra = attachments[0], attachments[1:]
            opts.network = first.network
            opts.network_aliases = first.aliases if not oneoff else []
            opts.ip = first.ip
            if oneoff:
                extra = [NetworkAttachment(a.network, [], "") for a in extra]
    return opts, extra
