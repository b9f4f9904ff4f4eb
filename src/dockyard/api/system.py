"""System endpoints: ``/_ping``, ``/version``, ``/info``, ``/system/df`` and ``/events``.

``/_ping`` is how clients negotiate: they read ``API-Version`` and use the lower of it and their
own (the docker CLI 28 speaks 1.50 and settles on our 1.43).  ``Builder-Version: 1`` tells the CLI
that the classic builder is this server's default (dockyard has no BuildKit).

Events: :class:`EventHub` follows the data root's event log (engine/events.py) for every
subscriber of this server -- ``/events`` streams and the container waits of api/containers.py --
with one reader: it polls the file (events of other dockyard processes, e.g. the exit records of
conmon's exit command) and is woken at once by events this process emits itself.
"""

from __future__ import annotations

import asyncio
import contextlib
import platform
import time
from collections.abc import AsyncIterator
from typing import Any

from aiohttp import web

from dockyard.api.app import API_VERSION, MIN_API_VERSION, call, engine_of, query_filters, route
from dockyard.api.streams import dumps
from dockyard.engine.events import POLL_INTERVAL, Event, check_filters, event_view, matches, parse_time_nano
from dockyard.engine.options import Filters
from dockyard.errors import InvalidArgument

EVENT_HUB = web.AppKey("event_hub", object)
PING_HEADERS = {
    "API-Version": API_VERSION, "Builder-Version": "1", "Docker-Experimental": "false", "Ostype": "linux",
    "Swarm": "inactive", "Cache-Control": "no-cache, no-store, must-revalidate", "Pragma": "no-cache",
}


# -- events ------------------------------------------------------------------------------------
class Subscription:
    """Events the hub read after :meth:`EventHub.subscribe`; iterate, or :meth:`get` with a timeout."""

    def __init__(self, hub: EventHub) -> None:
        self.hub = hub
        self.queue: asyncio.Queue[Event] = asyncio.Queue()
        self.since_ns = time.time_ns()

    async def get(self, timeout: float | None = None) -> Event | None:
        try:
            return await asyncio.wait_for(self.queue.get(), timeout)
        except TimeoutError:
            return None

    def close(self) -> None:
        self.hub.unsubscribe(self)

    def __enter__(self) -> Subscription:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class EventHub:
    """One follower of the event log per application, fanning out to subscriptions."""

    def __init__(self, events) -> None:
        self.events = events          # dockyard.engine.events.EventLog
        self.subs: set[Subscription] = set()
        self._task: asyncio.Task | None = None
        self._wake: asyncio.Event | None = None
        self._loop: asyncio.AbstractEventLoop | None = None

    def _on_emit(self, _ev: Event) -> None:
        loop, wake = self._loop, self._wake
        if loop is not None and wake is not None:
            with contextlib.suppress(RuntimeError):
                loop.call_soon_threadsafe(wake.set)

    def subscribe(self) -> Subscription:
        """Must be called on the loop; every event read from now on is queued for the subscriber."""
        sub = Subscription(self)
        self.subs.add(sub)
        if self._task is None or self._task.done():
            self._loop = asyncio.get_running_loop()
            self._wake = asyncio.Event()
            cursor = self.events.cursor()  # at the end: from now on
            self.events.add_listener(self._on_emit)
            self._task = self._loop.create_task(self._run(cursor))
        return sub

    def unsubscribe(self, sub: Subscription) -> None:
        self.subs.discard(sub)

    async def _run(self, cursor) -> None:
        assert self._wake is not None
        try:
            while self.subs:
                for ev in cursor.poll():
                    for sub in list(self.subs):
                        sub.queue.put_nowait(ev)
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._wake.wait(), POLL_INTERVAL)
                self._wake.clear()
        finally:
            self.events.remove_listener(self._on_emit)
            cursor.close()

    async def close(self) -> None:
        self.subs.clear()
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._task


def event_hub(request: web.Request) -> EventHub:
    return request.app[EVENT_HUB]


async def follow_events(hub: EventHub, since: int | None, until: int | None, f: Filters) -> AsyncIterator[Event]:
    """Stored events from ``since`` (none without it), then live ones, until ``until`` (ns)."""
    with hub.subscribe() as sub:
        seen: set = set()
        if since is not None:
            for ev in await call(hub.events.read, since, until, f):
                seen.add(ev.key)
                yield ev
        while True:
            timeout = None
            if until is not None:
                timeout = (until - time.time_ns()) / 1e9
                if timeout <= 0:
                    return
            ev = await sub.get(timeout)
            if ev is None:
                continue
            if ev.key in seen or not matches(ev, f):
                continue
            if until is not None and ev.time_nano > until:
                return
            yield ev


async def events(request: web.Request) -> web.StreamResponse:
    f = query_filters(request)
    check_filters(f)
    now = time.time()
    since = parse_time_nano(request.query.get("since"), now)
    until = parse_time_nano(request.query.get("until"), now)
    if since is not None and until is not None and since > until:
        raise InvalidArgument("`since` time is after `until` time")
    resp = web.StreamResponse(headers={"Content-Type": "application/json"})
    await resp.prepare(request)  # the client knows at once that it is subscribed
    try:
        async for ev in follow_events(event_hub(request), since, until, f):
            await resp.write(dumps(event_view(ev)))
    except (ConnectionError, asyncio.CancelledError):
        return resp
    await resp.write_eof()
    return resp


# -- ping, version, info ---------------------------------------------------------------------------
async def ping(request: web.Request) -> web.Response:
    return web.Response(body=b"" if request.method == "HEAD" else b"OK", headers=PING_HEADERS,
                        content_type="text/plain", charset="utf-8")


def version_view(engine) -> dict[str, Any]:
    s = engine.system.version()["Server"]
    engine_details = {"ApiVersion": API_VERSION, "MinAPIVersion": MIN_API_VERSION, "GitCommit": "",
                      "GoVersion": "python" + platform.python_version(), "Os": s["Os"], "Arch": s["Arch"],
                      "KernelVersion": s["KernelVersion"], "Experimental": "false", "BuildTime": ""}
    return {
        "Platform": {"Name": "dockyard"},
        "Components": [{"Name": c["Name"], "Version": c["Version"] or "",
                        "Details": engine_details if c["Name"] == "Engine" else {"GitCommit": ""}}
                       for c in s["Components"]],
        "Version": s["Version"], "ApiVersion": API_VERSION, "MinAPIVersion": MIN_API_VERSION,
        "GitCommit": "", "GoVersion": engine_details["GoVersion"], "Os": s["Os"], "Arch": s["Arch"],
        "KernelVersion": s["KernelVersion"], "Experimental": False, "BuildTime": "",
    }


async def version(request: web.Request) -> web.Response:
    return web.json_response(await call(version_view, engine_of(request)))


def info_view(engine) -> dict[str, Any]:
    """``/info`` in Docker's SystemInfo shape, from the facade's facts."""
    from datetime import datetime, timezone

    i = engine.system.info()
    cg2 = i["CgroupVersion"] == "2"
    return {
        "ID": i["ID"], "Containers": i["Containers"], "ContainersRunning": i["ContainersRunning"],
        "ContainersPaused": i["ContainersPaused"], "ContainersStopped": i["ContainersStopped"],
        "Images": i["Images"], "Driver": i["Driver"], "DriverStatus": i["DriverStatus"],
        "Plugins": {"Volume": ["local"], "Network": ["bridge", "host", "null"], "Authorization": None,
                    "Log": ["json-file", "k8s-file"]},
        "MemoryLimit": True, "SwapLimit": True, "CpuCfsPeriod": True, "CpuCfsQuota": True, "CPUShares": True,
        "CPUSet": True, "PidsLimit": True, "OomKillDisable": not cg2, "IPv4Forwarding": True,
        "BridgeNfIptables": True, "BridgeNfIp6tables": True, "Debug": False, "NFd": 0, "NGoroutines": 0,
        "SystemTime": datetime.now(timezone.utc).astimezone().isoformat(), "LoggingDriver": "json-file",
        "CgroupDriver": i["CgroupDriver"], "CgroupVersion": i["CgroupVersion"], "NEventsListener": 0,
        "KernelVersion": i["KernelVersion"], "OperatingSystem": i["OperatingSystem"], "OSVersion": "",
        "OSType": i["OSType"], "Architecture": i["Architecture"], "IndexServerAddress": "https://index.docker.io/v1/",
        "RegistryConfig": {"AllowNondistributableArtifactsCIDRs": [], "AllowNondistributableArtifactsHostnames": [],
                           "InsecureRegistryCIDRs": ["127.0.0.0/8"],
                           "IndexConfigs": {"docker.io": {"Name": "docker.io", "Mirrors": [], "Secure": True,
                                                          "Official": True}},
                           "Mirrors": []},
        "NCPU": i["NCPU"], "MemTotal": i["MemTotal"], "GenericResources": None, "DockerRootDir": i["DockerRootDir"],
        "HttpProxy": "", "HttpsProxy": "", "NoProxy": "", "Name": i["Name"], "Labels": [], "ExperimentalBuild": False,
        "ServerVersion": i["ServerVersion"], "Runtimes": i["Runtimes"], "DefaultRuntime": i["DefaultRuntime"],
        "Swarm": {"NodeID": "", "NodeAddr": "", "LocalNodeState": "inactive", "ControlAvailable": False,
                  "Error": "", "RemoteManagers": None},
        "LiveRestoreEnabled": True, "Isolation": "", "InitBinary": "catatonit",
        "ContainerdCommit": {"ID": "", "Expected": ""},
        "RuncCommit": {"ID": i.get("RuncVersion", ""), "Expected": i.get("RuncVersion", "")},
        "InitCommit": {"ID": "", "Expected": ""},
        "SecurityOptions": ["name=seccomp,profile=builtin", *(["name=cgroupns"] if cg2 else [])],
        "Warnings": [],
    }


async def info(request: web.Request) -> web.Response:
    return web.json_response(await call(info_view, engine_of(request)))


# -- disk usage ------------------------------------------------------------------------------------
def df_view(engine, types: set[str]) -> dict[str, Any]:
    """``/system/df``: images (with their container counts), containers with sizes, volumes with
    usage; dockyard has no build cache to report."""
    from dockyard.api.containers import container_summary
    from dockyard.engine.image_options import ImageListOptions
    from dockyard.engine.volumes import volume_view

    out: dict[str, Any] = {}
    if not types or "image" in types:
        images = engine.images.list(ImageListOptions())
        out["LayersSize"] = sum(s.size for s in images)
        out["Images"] = [{"Id": s.id, "ParentId": s.parent or "", "RepoTags": list(s.repo_tags),
                          "RepoDigests": list(s.repo_digests), "Created": int(s.created), "Size": s.size,
                          "SharedSize": 0, "VirtualSize": s.size, "Labels": s.labels or {},
                          "Containers": s.containers} for s in images]
    if not types or "container" in types:
        out["Containers"] = [container_summary(engine, r, size=True) for r in engine.containers.list(all_=True)]
    if not types or "volume" in types:
        out["Volumes"] = [{**volume_view(u.volume), "UsageData": {"Size": u.size, "RefCount": u.links}}
                          for u in engine.volumes.usage()]
    if not types or "build-cache" in types:
        out["BuildCache"] = []
    return out


async def system_df(request: web.Request) -> web.Response:
    types = set(request.query.getall("type", []))
    bad = types - {"container", "image", "volume", "build-cache"}
    if bad:
        raise InvalidArgument(f"unknown object type: {sorted(bad)[0]}")
    return web.json_response(await call(df_view, engine_of(request), types))


def setup_app(app: web.Application) -> None:
    from dockyard.api.app import ENGINE

    hub = EventHub(app[ENGINE].events)
    app[EVENT_HUB] = hub

    async def close(_app: web.Application) -> None:
        await hub.close()

    app.on_shutdown.append(close)


def setup_routes(router: web.UrlDispatcher) -> None:
    for method in ("GET", "HEAD"):
        route(router, method, "/_ping", ping)
    route(router, "GET", "/version", version)
    route(router, "GET", "/info", info)
    route(router, "GET", "/system/df", system_df)
    route(router, "GET", "/events", events)
