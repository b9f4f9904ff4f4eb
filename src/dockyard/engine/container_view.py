"""A container as ``docker inspect`` shows it (Engine API 1.43 ContainerInspectResponse shape)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from dockyard.containers.store import ContainerRecord

if TYPE_CHECKING:
    from dockyard.engine.containers import ContainerEngine

ZERO_TIME = "0001-01-01T00:00:00Z"


def _t(ts: float) -> str:
    if not ts:
        return ZERO_TIME
    from dockyard.engine.images import rfc3339  # a big module: not on the `run` path

    return rfc3339(ts)


def status_text(rec: ContainerRecord, now: float | None = None) -> str:
    """The STATUS column of ``docker ps`` and the ``Status`` of the API's container list."""
    import time

    from dockyard.cli.units import human_duration  # pure go-units formatting, shared by the faces

    now = now or time.time()
    if rec.state == "created":
        return "Created"
    if rec.state in ("running", "paused"):
        s = f"Up {human_duration(now - rec.started_at)}"
        if rec.state == "paused":
            return s + " (Paused)"
        if rec.spec.healthcheck and rec.health:
            st = rec.health.get("Status", "starting")
            s += " (health: starting)" if st == "starting" else f" ({st})"
        return s
    if rec.state == "restarting":
        return f"Restarting ({rec.exit_code}) {human_duration(now - rec.finished_at)} ago"
    if rec.state == "exited":
        return f"Exited ({rec.exit_code}) {human_duration(now - rec.finished_at)} ago"
    if rec.state == "removing":
        return "Removal In Progress"
    return "Dead"


def state_view(rec: ContainerRecord) -> dict[str, Any]:
    state: dict[str, Any] = {
        "Status": rec.state,
        "Running": rec.state in ("running", "paused", "restarting"),
        "Paused": rec.state == "paused",
        "Restarting": rec.state == "restarting",
        "OOMKilled": rec.oom_killed,
        "Dead": rec.state == "dead",
        "Pid": rec.pid if rec.state in ("running", "paused") else 0,
        "ExitCode": rec.exit_code,
        "Error": rec.error,
        "StartedAt": _t(rec.started_at),
        "FinishedAt": _t(rec.finished_at),
    }
    if rec.spec.healthcheck:
        h = rec.health or {"Status": "starting", "FailingStreak": 0, "Log": []}
        state["Health"] = {"Status": h.get("Status", "starting"), "FailingStreak": h.get("FailingStreak", 0),
                           "Log": h.get("Log", [])}
    return state


def inspect_container(engine: ContainerEngine, rec: ContainerRecord) -> dict[str, Any]:
    spec = rec.spec
    lc = engine.lifecycle
    d = engine.store.dir(rec.id)
    r = spec.resources
    hc = spec.healthcheck
    healthcheck = None
    if hc:
        healthcheck = {"Test": hc.test, "Interval": int(hc.interval * 1e9), "Timeout": int(hc.timeout * 1e9),
                       "StartPeriod": int(hc.start_period * 1e9), "StartInterval": int(hc.start_interval * 1e9),
                       "Retries": hc.retries}
    from dockyard.engine.volumes import host_config_mounts, mounts_view

    binds, mounts = host_config_mounts(spec)
    has_volumes = any(m.type == "volume" for m in spec.mounts)
    graph: dict[str, Any] = {"Name": "overlay2", "Data": None}
    try:
        lowers = engine.engine.snapshotter.lower_dirs(engine.engine.image_store.top_snapshot(rec.image_id) or "")
        graph["Data"] = {
            "LowerDir": ":".join(str(p) for p in lowers),
            "MergedDir": str(lc.rootfs(rec.id)),
            "UpperDir": "", "WorkDir": "",
        }
    except Exception:  # noqa: BLE001 - image gone: no graph data, as Docker shows then
        pass
    return {
        "Id": rec.id,
        "Created": _t(rec.created),
        "Path": spec.args[0] if spec.args else "",
        "Args": spec.args[1:],
        "State": state_view(rec),
        "Image": rec.image_id,
        "ResolvConfPath": str(d / "resolv.conf"),
        "HostnamePath": str(d / "hostname"),
        "HostsPath": str(d / "hosts"),
        "LogPath": str(lc.log_path(rec.id)),
        "Name": "/" + rec.name,
        "RestartCount": rec.restart_count,
        "Driver": "overlay2",
        "Platform": "linux",
        "MountLabel": "",
        "ProcessLabel": "",
        "AppArmorProfile": "",
        "ExecIDs": None,
        "HostConfig": {
            "Binds": binds,
            "ContainerIDFile": spec.cidfile,
            "LogConfig": {"Type": "k8s-file", "Config": {}},
            "NetworkMode": spec.network_mode,
            "PortBindings": spec.port_bindings or {},
            "PublishAllPorts": spec.publish_all,
            "RestartPolicy": {"Name": spec.restart_policy.name,
                              "MaximumRetryCount": spec.restart_policy.maximum_retry_count},
            "AutoRemove": spec.auto_remove,
            "CapAdd": spec.cap_add or None,
            "CapDrop": spec.cap_drop or None,
            "Dns": spec.dns,
            "DnsOptions": spec.dns_options,
            "DnsSearch": spec.dns_search,
            "ExtraHosts": spec.extra_hosts or None,
            "Privileged": spec.privileged,
            "ReadonlyRootfs": spec.read_only,
            "SecurityOpt": spec.security_opt or None,
            "Tmpfs": spec.tmpfs or None,
            "ShmSize": spec.shm_size,
            "Runtime": spec.runtime,
            "Init": spec.init or None,
            "Memory": r.memory or 0,
            "MemorySwap": r.memory_swap or 0,
            "MemoryReservation": r.memory_reservation or 0,
            "NanoCpus": r.nano_cpus or 0,
            "CpuShares": r.cpu_shares or 0,
            "CpuPeriod": r.cpu_period or 0,
            "CpuQuota": r.cpu_quota or 0,
            "CpusetCpus": r.cpuset_cpus or "",
            "CpusetMems": r.cpuset_mems or "",
            "PidsLimit": r.pids_limit,
            "OomKillDisable": r.oom_kill_disable,
            "Ulimits": [{"Name": u.name, "Soft": u.soft, "Hard": u.hard} for u in spec.ulimits] or None,
            "Mounts": mounts,
        },
        "GraphDriver": graph,
        "Mounts": mounts_view(spec, engine.engine.volumes.host_path if has_volumes else None),
        "Config": {
            "Hostname": spec.hostname,
            **({"MacAddress": spec.mac_address} if spec.mac_address else {}),
            "Domainname": spec.domainname,
            "User": spec.user,
            "AttachStdin": spec.attach_stdin,
            "AttachStdout": spec.attach_stdout,
            "AttachStderr": spec.attach_stderr,
            "ExposedPorts": spec.exposed_ports or None,
            "Tty": spec.tty,
            "OpenStdin": spec.open_stdin,
            "StdinOnce": spec.stdin_once,
            "Env": spec.env,
            "Cmd": spec.cmd,
            "Healthcheck": healthcheck,
            "Image": spec.image_name,
            "Volumes": spec.volumes or None,
            "WorkingDir": spec.working_dir,
            "Entrypoint": spec.entrypoint,
            "OnBuild": None,
            "Labels": spec.labels,
            "StopSignal": spec.stop_signal,
            **({"StopTimeout": spec.stop_timeout} if spec.stop_timeout is not None else {}),
        },
        "NetworkSettings": engine.engine.networks.settings(rec),
    }
