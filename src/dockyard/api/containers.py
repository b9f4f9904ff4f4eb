"""``/containers/...``: create, list, inspect, the lifecycle, logs, stats, top, changes, files.

Every handler is Docker JSON -> facade call -> Docker JSON; the request body of create becomes a
ContainerCreateOptions here (:func:`create_options`) and nowhere else.  Attach, start and wait --
the flow of ``docker run`` -- are in api/attach.py.
"""

from __future__ import annotations

import asyncio
import base64
import csv
import io
import json
import logging
import shlex
import tempfile
from datetime import datetime, timezone
from typing import Any

from aiohttp import web

from dockyard.api.app import (
    call,
    engine_of,
    json_body,
    query_bool,
    query_filters,
    query_int,
    route,
)
from dockyard.api.streams import (
    STDERR,
    STDOUT,
    ThreadReader,
    ThreadWriter,
    dumps,
    encoder,
    iterate,
    run_in_thread,
    stream_type,
)
from dockyard.containers.store import ACTIVE
from dockyard.engine.options import ContainerCreateOptions
from dockyard.errors import DockyardError, InvalidArgument, NotFound

log = logging.getLogger("dockyard.api")
ZERO_TIME = "0001-01-01T00:00:00Z"


def _get(request: web.Request):
    return call(engine_of(request).containers.get, request.match_info["id"])


# -- create --------------------------------------------------------------------------------------
def _strs(value: Any) -> list[str]:
    if value is None:
        return []
    if isinstance(value, str):
        return [value]
    return [str(v) for v in value]


def _publish(bindings: dict[str, Any] | None) -> list[str]:
    """HostConfig.PortBindings as the ``-p`` values the engine takes ("[ip]:host:port/proto")."""
    out = []
    for key, hosts in (bindings or {}).items():
        port = key if "/" in key else key + "/tcp"
        for h in hosts or [{}]:
            ip = (h or {}).get("HostIp") or ""
            if ":" in ip:
                ip = f"[{ip}]"
            out.append(f"{ip}:{(h or {}).get('HostPort') or ''}:{port}")
    return out


def _mount_value(m: dict[str, Any]) -> str:
    """A HostConfig.Mounts object as the ``--mount`` CSV the engine parses (one validation path)."""
    fields = [f"type={(m.get('Type') or 'volume').lower()}"]
    if m.get("Source"):
        fields.append(f"source={m['Source']}")
    fields.append(f"target={m.get('Target') or ''}")
    if m.get("ReadOnly"):
        fields.append("readonly=true")
    bo = m.get("BindOptions") or {}
    if bo.get("Propagation"):
        fields.append(f"bind-propagation={bo['Propagation']}")
    if bo.get("NonRecursive"):
        fields.append("bind-nonrecursive=true")
    vo = m.get("VolumeOptions") or {}
    if vo.get("NoCopy"):
        fields.append("volume-nocopy=true")
    for k, v in (vo.get("Labels") or {}).items():
        fields.append(f"volume-label={k}={v}")
    dc = vo.get("DriverConfig") or {}
    if dc.get("Name"):
        fields.append(f"volume-driver={dc['Name']}")
    for k, v in (dc.get("Options") or {}).items():
        fields.append(f"volume-opt={k}={v}")
    to = m.get("TmpfsOptions") or {}
    if to.get("SizeBytes"):
        fields.append(f"tmpfs-size={int(to['SizeBytes'])}")
    if to.get("Mode"):
        fields.append(f"tmpfs-mode={int(to['Mode']):o}")
    buf = io.StringIO()
    csv.writer(buf, lineterminator="").writerow(fields)
    return buf.getvalue()


def _resources(hc: dict[str, Any]):
    from dockyard.containers.model import Resources

    def pos(key: str) -> int | None:
        v = hc.get(key)
        return int(v) if v else None

    pids = hc.get("PidsLimit")
    return Resources(memory=pos("Memory"), memory_swap=pos("MemorySwap"), memory_reservation=pos("MemoryReservation"),
                     nano_cpus=pos("NanoCpus"), cpu_shares=pos("CpuShares"), cpu_period=pos("CpuPeriod"),
                     cpu_quota=pos("CpuQuota"), cpuset_cpus=hc.get("CpusetCpus") or None,
                     cpuset_mems=hc.get("CpusetMems") or None, pids_limit=int(pids) if pids else None,
                     oom_kill_disable=bool(hc.get("OomKillDisable")))


def _restart_policy(rp: dict[str, Any] | None):
    from dockyard.containers.model import RestartPolicy

    name = (rp or {}).get("Name") or "no"
    if name not in ("no", "always", "unless-stopped", "on-failure"):
        raise InvalidArgument(f"invalid restart policy '{name}'")
    count = int((rp or {}).get("MaximumRetryCount") or 0)
    if count and name != "on-failure":
        raise InvalidArgument("invalid restart policy: maximum retry count can only be used with 'on-failure'")
    return RestartPolicy(name, count)


# HostConfig fields dockyard has no equivalent for: a request that sets one is refused rather than
# run without it ("" / [] / null, what clients send for "not set", pass; so do the defaults).
UNSUPPORTED = {"Links": (), "VolumesFrom": (), "Devices": (), "DeviceRequests": (), "DeviceCgroupRules": (),
               "Sysctls": (), "GroupAdd": (), "PidMode": (), "UTSMode": (), "UsernsMode": (),
               "IpcMode": ("private", "shareable"), "CgroupParent": (), "Runtime": ("runc",),
               "Isolation": ("default",), "CgroupnsMode": ("private", "host")}


def create_options(body: dict[str, Any], name: str) -> ContainerCreateOptions:
    """The body of ``POST /containers/create`` (Config + HostConfig + NetworkingConfig) as options.
    InvalidArgument for what the engine cannot do (UNSUPPORTED) or Docker itself refuses."""
    from dockyard.containers.model import Ulimit
    from dockyard.volumes.mountspec import parse_mount, parse_volume

    hc = body.get("HostConfig") or {}
    for key, fine in UNSUPPORTED.items():
        value = hc.get(key)
        if value and value not in fine:
            raise InvalidArgument(f"HostConfig.{key} is not supported by dockyard ({json.dumps(value)})")
    image = body.get("Image") or ""
    if not image:
        raise InvalidArgument("Config cannot be empty in order to create a container")
    entrypoint: str | list[str] | None = None
    if body.get("Entrypoint") is not None:
        ep = _strs(body["Entrypoint"])
        entrypoint = "" if ep in ([], [""]) else (ep[0] if len(ep) == 1 else ep)
    network = hc.get("NetworkMode") or ""
    if network == "default":
        network = "bridge"
    endpoints = (body.get("NetworkingConfig") or {}).get("EndpointsConfig") or {}
    ep_cfg: dict[str, Any] = {}
    if endpoints:
        key = network if network in endpoints else next(iter(endpoints))
        ep_cfg = endpoints[key] or {}
        if not network:
            network = key
    ipam = ep_cfg.get("IPAMConfig") or {}
    hc_test = (body.get("Healthcheck") or {})
    test = hc_test.get("Test") or []
    health_cmd, no_health = "", False
    if test:
        if test[0] == "NONE":
            no_health = True
        elif test[0] == "CMD-SHELL":
            health_cmd = " ".join(test[1:])
        elif test[0] == "CMD":
            health_cmd = shlex.join(test[1:])
        elif test[0] != "INHERIT":
            raise InvalidArgument(f"unknown health check type {test[0]!r}")

    def ns(key: str) -> float | None:
        v = hc_test.get(key)
        return v / 1e9 if v else None

    volume_driver = hc.get("VolumeDriver") or ""
    mounts = [parse_volume(b, volume_driver) for b in hc.get("Binds") or []]
    mounts += [parse_mount(_mount_value(m)) for m in hc.get("Mounts") or []]
    taken = {m.target.rstrip("/") or "/" for m in mounts}
    mounts += [parse_volume(v, volume_driver) for v in (body.get("Volumes") or {})
               if (v.rstrip("/") or "/") not in taken]
    stdin = bool(body.get("OpenStdin"))
    attach = bool(body.get("AttachStdin") or body.get("AttachStdout") or body.get("AttachStderr"))
    opts = ContainerCreateOptions(
        image=image, command=_strs(body.get("Cmd")), entrypoint=entrypoint,  # type: ignore[arg-type]
        name=name, env=[e for e in _strs(body.get("Env")) if "=" in e],  # "KEY" alone: the client's to resolve
        workdir=body.get("WorkingDir") or "", user=body.get("User") or None,
        hostname=body.get("Hostname") or "", domainname=body.get("Domainname") or "",
        labels={str(k): str(v) for k, v in (body.get("Labels") or {}).items()},
        tty=bool(body.get("Tty")), interactive=stdin, attach=attach,
        init=bool(hc.get("Init")), read_only=bool(hc.get("ReadonlyRootfs")), privileged=bool(hc.get("Privileged")),
        cap_add=_strs(hc.get("CapAdd")), cap_drop=_strs(hc.get("CapDrop")), security_opt=_strs(hc.get("SecurityOpt")),
        tmpfs=dict(hc.get("Tmpfs") or {}), shm_size=int(hc["ShmSize"]) if hc.get("ShmSize") else None,
        ulimits=[Ulimit(u["Name"], int(u.get("Soft", 0)), int(u.get("Hard", 0))) for u in hc.get("Ulimits") or []],
        resources=_resources(hc), restart_policy=_restart_policy(hc.get("RestartPolicy")),
        stop_signal=body.get("StopSignal") or "",
        stop_timeout=int(body["StopTimeout"]) if body.get("StopTimeout") is not None else None,
        health_cmd=health_cmd, no_healthcheck=no_health, health_interval=ns("Interval"),
        health_timeout=ns("Timeout"), health_start_period=ns("StartPeriod"),
        health_start_interval=ns("StartInterval"),
        health_retries=int(hc_test["Retries"]) if hc_test.get("Retries") else None,
        auto_remove=bool(hc.get("AutoRemove")), add_hosts=_strs(hc.get("ExtraHosts")), dns=_strs(hc.get("Dns")),
        dns_search=_strs(hc.get("DnsSearch")), dns_options=_strs(hc.get("DnsOptions")), network=network,
        network_aliases=_strs(ep_cfg.get("Aliases")), ip=ipam.get("IPv4Address") or "",
        mac_address=body.get("MacAddress") or ep_cfg.get("MacAddress") or "",
        publish=_publish(hc.get("PortBindings")), publish_all=bool(hc.get("PublishAllPorts")),
        expose=list(body.get("ExposedPorts") or {}), mounts=mounts, volume_driver=volume_driver,
    )
    return opts


async def create(request: web.Request) -> web.Response:
    body = await json_body(request)
    opts = create_options(body, request.query.get("name", ""))
    try:
        rec = await call(engine_of(request).containers.create, opts)
    except NotFound as exc:
        # dockerd's words, which make the docker CLI pull the image and try again
        raise NotFound(str(exc).splitlines()[-1].removeprefix("Error: ")) from None
    return web.json_response({"Id": rec.id, "Warnings": []}, status=201)


# -- list and inspect ------------------------------------------------------------------------------
def container_summary(engine, rec, *, size: bool = False) -> dict[str, Any]:
    """A container as ``GET /containers/json`` lists it (ContainerSummary)."""
    from dockyard.engine.container_view import status_text
    from dockyard.engine.volumes import mounts_view
    from dockyard.networks.model import port_key

    running = rec.state in ("running", "paused")
    ports: list[dict[str, Any]] = []
    published = set()
    for m in engine.networks.ports(rec.id) if running else []:
        published.add(m.key)
        ports.append({"IP": m.host_ip or "0.0.0.0", "PrivatePort": m.container_port, "PublicPort": m.host_port,
                      "Type": m.protocol})
    for key in sorted(rec.spec.exposed_ports, key=port_key):
        if key not in published:
            port, proto = port_key(key)
            ports.append({"PrivatePort": port, "Type": proto})
    has_volumes = any(m.type == "volume" for m in rec.spec.mounts)
    out = {
        "Id": rec.id, "Names": ["/" + rec.name], "Image": rec.spec.image_name, "ImageID": rec.image_id,
        "Command": " ".join(rec.spec.args), "Created": int(rec.created), "Ports": ports,
        "Labels": rec.spec.labels or {}, "State": rec.state, "Status": status_text(rec),
        "HostConfig": {"NetworkMode": rec.spec.network_mode},
        "NetworkSettings": {"Networks": engine.networks.settings(rec)["Networks"]},
        "Mounts": mounts_view(rec.spec, engine.volumes.host_path if has_volumes else None),
    }
    if size:
        rw = engine.containers.lifecycle.rw_size(rec)
        image = engine.image_store.db.image(rec.image_id)
        out["SizeRw"] = rw
        out["SizeRootFs"] = rw + (image.size if image else 0)
    return out


async def list_containers(request: web.Request) -> web.Response:
    engine = engine_of(request)
    limit = query_int(request, "limit", -1) or -1
    size = query_bool(request, "size")

    def work() -> list[dict[str, Any]]:
        recs = engine.containers.list(all_=query_bool(request, "all"), filters=query_filters(request), last=limit)
        return [container_summary(engine, r, size=size) for r in recs]

    return web.json_response(await call(work))


async def inspect(request: web.Request) -> web.Response:
    from dockyard.engine.container_view import inspect_container

    engine = engine_of(request)
    size = query_bool(request, "size")

    def work() -> dict[str, Any]:
        rec = engine.containers.get(request.match_info["id"])
        out = inspect_container(engine.containers, rec)
        log_config = out["HostConfig"].get("LogConfig") or {}
        if log_config.get("Type") == "k8s-file":
            # What podman's compat API does too: clients (docker-py's run, compose's log
            # following) only read the logs of drivers they know, and ours reads like json-file.
            out["HostConfig"]["LogConfig"] = {**log_config, "Type": "json-file"}
        if size:
            rw = engine.containers.lifecycle.rw_size(rec)
            image = engine.image_store.db.image(rec.image_id)
            out["SizeRw"], out["SizeRootFs"] = rw, rw + (image.size if image else 0)
        return out

    return web.json_response(await call(work))


# -- lifecycle -----------------------------------------------------------------------------------
async def stop(request: web.Request) -> web.Response:
    engine = engine_of(request)
    rec = await _get(request)
    if rec.state not in ACTIVE:
        return web.Response(status=304)
    t = query_int(request, "t")
    await call(engine.containers.stop, rec.id, t, request.query.get("signal") or None)
    return web.Response(status=204)


async def restart(request: web.Request) -> web.Response:
    engine = engine_of(request)
    await call(engine.containers.restart, request.match_info["id"], query_int(request, "t"))
    return web.Response(status=204)


async def kill(request: web.Request) -> web.Response:
    engine = engine_of(request)
    await call(engine.containers.kill, request.match_info["id"], request.query.get("signal") or "SIGKILL")
    return web.Response(status=204)


async def remove(request: web.Request) -> web.Response:
    engine = engine_of(request)
    if query_bool(request, "link"):
        raise InvalidArgument("links are not supported")
    await call(engine.containers.remove, request.match_info["id"], force=query_bool(request, "force"),
               volumes=query_bool(request, "v"))
    return web.Response(status=204)


async def rename(request: web.Request) -> web.Response:
    name = request.query.get("name", "")
    if not name:
        raise InvalidArgument("Neither old nor new names may be empty")
    await call(engine_of(request).containers.rename, request.match_info["id"], name)
    return web.Response(status=204)


async def pause(request: web.Request) -> web.Response:
    await call(engine_of(request).containers.pause, request.match_info["id"])
    return web.Response(status=204)


async def unpause(request: web.Request) -> web.Response:
    await call(engine_of(request).containers.unpause, request.match_info["id"])
    return web.Response(status=204)


async def update(request: web.Request) -> web.Response:
    body = await json_body(request)
    policy = _restart_policy(body["RestartPolicy"]) if body.get("RestartPolicy") else None
    await call(engine_of(request).containers.io.update, request.match_info["id"], _resources(body), policy)
    return web.json_response({"Warnings": []})


async def prune(request: web.Request) -> web.Response:
    removed, space = await call(engine_of(request).containers.prune, query_filters(request))
    return web.json_response({"ContainersDeleted": removed or None, "SpaceReclaimed": space})


# -- logs ------------------------------------------------------------------------------------------
async def logs(request: web.Request) -> web.StreamResponse:
    engine = engine_of(request)
    stdout, stderr = query_bool(request, "stdout"), query_bool(request, "stderr")
    if not (stdout or stderr):
        raise InvalidArgument("Bad parameters: you must choose at least one stream")
    rec = await _get(request)
    tail_s = request.query.get("tail", "all")
    try:
        tail = None if tail_s in ("all", "", "-1") else int(tail_s)
    except ValueError:
        raise InvalidArgument(f"invalid value for tail: {tail_s!r}") from None
    since = request.query.get("since") or None
    until = request.query.get("until") or None
    if since in ("0", "0.000000000"):
        since = None
    if until in ("0", "0.000000000"):
        until = None
    follow, timestamps = query_bool(request, "follow"), query_bool(request, "timestamps")
    encode = encoder(rec.spec.tty)
    frames = iterate(lambda stopped: engine.containers.io.logs(rec.id, follow=follow, tail=tail, since=since,
                                                               until=until, stop=stopped))
    resp = web.StreamResponse(headers={"Content-Type": stream_type(request, rec.spec.tty)})
    await resp.prepare(request)
    try:
        async for f in frames:
            if (f.stream == "stderr" and not stderr) or (f.stream == "stdout" and not stdout):
                continue
            data = (f.timestamp.encode() + b" " + f.data) if timestamps else f.data
            await resp.write(encode(STDERR if f.stream == "stderr" else STDOUT, data))
    except (ConnectionError, asyncio.CancelledError):
        return resp
    finally:
        await frames.aclose()
    await resp.write_eof()
    return resp


# -- processes and resources ----------------------------------------------------------------------
async def top(request: web.Request) -> web.Response:
    titles, rows = await call(engine_of(request).containers.io.top, request.match_info["id"],
                              request.query.get("ps_args") or None)
    return web.json_response({"Titles": titles, "Processes": rows})


def _rfc3339(ts: float) -> str:
    if not ts:
        return ZERO_TIME
    return datetime.fromtimestamp(ts, timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%f") + "000Z"


def stats_view(rec, cur, prev) -> dict[str, Any]:
    """Docker's container stats JSON from two readings (``prev`` None: no precpu yet)."""
    def cpu(s) -> dict[str, Any]:
        if s is None:
            return {"cpu_usage": {"total_usage": 0, "usage_in_kernelmode": 0, "usage_in_usermode": 0},
                    "throttling_data": {"periods": 0, "throttled_periods": 0, "throttled_time": 0}}
        usage: dict[str, Any] = {"total_usage": s.cpu_total_ns, "usage_in_kernelmode": 0, "usage_in_usermode": 0}
        if s.cpu_percpu_ns:
            usage["percpu_usage"] = list(s.cpu_percpu_ns)
        return {"cpu_usage": usage, "system_cpu_usage": s.system_cpu_ns, "online_cpus": s.online_cpus,
                "throttling_data": {"periods": 0, "throttled_periods": 0, "throttled_time": 0}}

    out: dict[str, Any] = {
        "name": "/" + rec.name, "id": rec.id,
        "read": _rfc3339(cur.read_at) if cur else ZERO_TIME,
        "preread": _rfc3339(prev.read_at) if prev else ZERO_TIME,
        "pids_stats": {"current": cur.pids_current} if cur else {},
        "blkio_stats": {"io_service_bytes_recursive": [
            {"major": 0, "minor": 0, "op": "read", "value": cur.blkio_read},
            {"major": 0, "minor": 0, "op": "write", "value": cur.blkio_write}] if cur else None,
            "io_serviced_recursive": None, "io_queue_recursive": None, "io_service_time_recursive": None,
            "io_wait_time_recursive": None, "io_merged_recursive": None, "io_time_recursive": None,
            "sectors_recursive": None},
        "num_procs": 0, "storage_stats": {},
        "cpu_stats": cpu(cur), "precpu_stats": cpu(prev),
        "memory_stats": {"usage": cur.memory_usage, "stats": dict(cur.memory_stat), "limit": cur.memory_limit}
        if cur else {},
    }
    if cur and cur.networks:
        out["networks"] = {name: {"rx_bytes": n.rx_bytes, "rx_packets": n.rx_packets, "rx_errors": n.rx_errors,
                                  "rx_dropped": n.rx_dropped, "tx_bytes": n.tx_bytes, "tx_packets": n.tx_packets,
                                  "tx_errors": n.tx_errors, "tx_dropped": n.tx_dropped}
                           for name, n in cur.networks.items()}
    return out


async def stats(request: web.Request) -> web.StreamResponse:
    engine = engine_of(request)
    rec = await _get(request)
    stream = query_bool(request, "stream", True)
    one_shot = query_bool(request, "one-shot")
    if one_shot and stream:
        raise InvalidArgument("cannot have stream=true and one-shot=true")

    def sample():
        r = engine.containers.get(rec.id, reconcile=False)
        if r.state != "running":
            return r, None
        try:
            return r, engine.containers.io.stats(r)
        except (DockyardError, OSError):
            return r, None

    if not stream:
        r, cur = await call(sample)
        prev = None
        if cur is not None and not one_shot:
            await asyncio.sleep(0.5)  # a second reading, so that the CPU percentage has a base
            prev, (r, cur) = cur, await call(sample)
        return web.json_response(stats_view(r, cur, prev))
    resp = web.StreamResponse(headers={"Content-Type": "application/json"})
    await resp.prepare(request)
    prev = None
    try:
        while True:
            r, cur = await call(sample)
            await resp.write(dumps(stats_view(r, cur, prev)))
            prev = cur
            await asyncio.sleep(1.0)
    except (ConnectionError, asyncio.CancelledError, NotFound):
        return resp


async def changes(request: web.Request) -> web.Response:
    items = await call(engine_of(request).containers.io.changes, request.match_info["id"])
    return web.json_response([{"Path": p, "Kind": k} for p, k in items] or None)


# -- files -----------------------------------------------------------------------------------------
async def _stream_writer(request: web.Request, headers: dict[str, str], produce) -> web.StreamResponse:
    """Stream what ``produce(file)`` writes (in a thread) as the response body."""
    resp = web.StreamResponse(headers=headers)
    await resp.prepare(request)
    writer = ThreadWriter(asyncio.get_running_loop(), resp.write)

    def work() -> None:
        produce(writer)
        writer.flush()

    try:
        await run_in_thread(work, "dockyard-api-export")
    except (ConnectionError, BrokenPipeError):
        return resp
    await resp.write_eof()
    return resp


async def export(request: web.Request) -> web.StreamResponse:
    engine = engine_of(request)
    rec = await _get(request)
    return await _stream_writer(request, {"Content-Type": "application/x-tar"},
                                lambda out: engine.containers.io.export(rec.id, out))


def _stat_header(stat) -> str:
    return base64.b64encode(json.dumps(stat.to_docker()).encode()).decode()


async def archive_head(request: web.Request) -> web.Response:
    path = request.query.get("path", "")
    if not path:
        raise InvalidArgument("path is required")
    stat = await call(engine_of(request).containers.io.stat_path, request.match_info["id"], path)
    return web.Response(status=200, headers={"X-Docker-Container-Path-Stat": _stat_header(stat),
                                             "Content-Type": "application/x-tar"})


async def archive_get(request: web.Request) -> web.StreamResponse:
    """The tar of a path; spooled first, since the stat header goes before the body and a missing
    path must still be a 404."""
    engine = engine_of(request)
    path = request.query.get("path", "")
    if not path:
        raise InvalidArgument("path is required")
    spool = tempfile.TemporaryFile(dir=engine.root)  # noqa: SIM115 - closed below
    try:
        stat = await call(engine.containers.io.copy_from, request.match_info["id"], path, spool)
        size = spool.tell()
        spool.seek(0)
        resp = web.StreamResponse(headers={"X-Docker-Container-Path-Stat": _stat_header(stat),
                                           "Content-Type": "application/x-tar"})
        resp.content_length = size
        await resp.prepare(request)
        while chunk := await call(spool.read, 1 << 20):
            await resp.write(chunk)
        await resp.write_eof()
        return resp
    finally:
        spool.close()


async def archive_put(request: web.Request) -> web.Response:
    engine = engine_of(request)
    path = request.query.get("path", "")
    if not path:
        raise InvalidArgument("path is required")
    reader = io.BufferedReader(ThreadReader(asyncio.get_running_loop(), request.content), 1 << 16)
    cid = request.match_info["id"]
    await run_in_thread(lambda: engine.containers.io.copy_to(
        cid, path, reader, copy_uidgid=query_bool(request, "copyUIDGID"), as_is=True), "dockyard-api-archive")
    return web.Response(status=200)


def setup_routes(router: web.UrlDispatcher) -> None:
    route(router, "GET", "/containers/json", list_containers)
    route(router, "POST", "/containers/create", create)
    route(router, "POST", "/containers/prune", prune)
    route(router, "GET", "/containers/{id}/json", inspect)
    route(router, "GET", "/containers/{id}/top", top)
    route(router, "GET", "/containers/{id}/logs", logs)
    route(router, "GET", "/containers/{id}/changes", changes)
    route(router, "GET", "/containers/{id}/export", export)
    route(router, "GET", "/containers/{id}/stats", stats)
    route(router, "POST", "/containers/{id}/stop", stop)
    route(router, "POST", "/containers/{id}/restart", restart)
    route(router, "POST", "/containers/{id}/kill", kill)
    route(router, "POST", "/containers/{id}/update", update)
    route(router, "POST", "/containers/{id}/rename", rename)
    route(router, "POST", "/containers/{id}/pause", pause)
    route(router, "POST", "/containers/{id}/unpause", unpause)
    route(router, "DELETE", "/containers/{id}", remove)
    route(router, "HEAD", "/containers/{id}/archive", archive_head)
    route(router, "GET", "/containers/{id}/archive", archive_get)
    route(router, "PUT", "/containers/{id}/archive", archive_put)
