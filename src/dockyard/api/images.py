"""/images/..., /commit, /auth, /distribution/{name}/json and /build over the engine facade.

Streams.  Pull, push, load, import and build answer Docker's JSON message stream: one JSON object
per line, ``{"status": ..., "id": ..., "progressDetail": {...}}`` for progress, ``{"stream": "..."}``
for text, ``{"aux": {...}}`` for results, ``{"errorDetail": {"message": m}, "error": m}`` for a
failure.  As in dockerd, the response starts with the stream's first message (:class:`JsonStream`):
a failure before that (no such image, a missing manifest, a Dockerfile that does not parse) is a
plain HTTP error with Docker's status code; a failure after it is the stream's last message.

Bodies.  Image archives and build contexts (load, import, build) are read from the request as they
arrive, and saved archives are written to the response as they are produced: the engine's
blocking calls run on threads of their own with the file objects of api/streams.py, so nothing is
held in memory and a client that goes away stops the work.

Registry credentials come from the ``X-Registry-Auth`` header only (base64url JSON: username and
password, or an identity token), never from the server's own ``~/.docker/config.json``: no header
means anonymous, as with dockerd.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import io
import json
import logging
import re
from typing import Any

from aiohttp import web

from dockyard.api.app import _vtuple, call, engine_of, json_body, query_bool, query_filters, route
from dockyard.api.streams import ThreadReader, ThreadWriter, dumps, iterate, run_in_thread
from dockyard.build.events import BuildFinished, BuildWarning, StepDone, StepOutput, StepStarted
from dockyard.engine.build import BuildOptions
from dockyard.engine.image_options import (
    ImageListOptions,
    ImagePruneOptions,
    ImageRemoveOptions,
    ImportOptions,
    SaveOptions,
)
from dockyard.engine.remote import PullOptions, PushOptions
from dockyard.errors import DockyardError, InvalidArgument, NotFound, Unauthenticated, Unavailable
from dockyard.oci.digest import short_id
from dockyard.oci.reference import parse_normalized
from dockyard.registry.auth.challenge import Credentials
from dockyard.remotes.pull import Progress

log = logging.getLogger("dockyard.api")
CHUNK = 1 << 20
_DIGEST = re.compile(r"^[a-z0-9]+(?:[.+_-][a-z0-9]+)*:[a-fA-F0-9]{32,}$")
_PUSHED = re.compile(r"^(?P<tag>\S+): digest: (?P<digest>\S+) size: (?P<size>\d+)$")


# -- request helpers ------------------------------------------------------------------------------

def registry_auth(request: web.Request) -> Credentials:
    """Credentials from ``X-Registry-Auth`` (base64url JSON); anonymous when absent or empty."""
    header = request.headers.get("X-Registry-Auth", "").strip()
    if not header:
        return Credentials()
    try:
        doc = json.loads(base64.urlsafe_b64decode(header + "=" * (-len(header) % 4)))
    except (binascii.Error, ValueError):
        try:  # some clients send standard base64
            doc = json.loads(base64.b64decode(header + "=" * (-len(header) % 4)))
        except (binascii.Error, ValueError):
            raise InvalidArgument("invalid X-Registry-Auth header: not base64-encoded JSON") from None
    if not isinstance(doc, dict):
        return Credentials()
    return _credentials(doc)


def _credentials(doc: dict[str, Any]) -> Credentials:
    username, password = doc.get("username") or "", doc.get("password") or ""
    if not username and doc.get("auth"):  # the "auth" field of config.json: base64 user:password
        try:
            username, _, password = base64.b64decode(doc["auth"]).decode().partition(":")
        except (binascii.Error, UnicodeDecodeError):
            raise InvalidArgument("invalid auth configuration: bad \"auth\" field") from None
    return Credentials(username, password, doc.get("identitytoken") or "")


# -- stream helpers ------------------------------------------------------------------------------

class JsonStream:
    """Docker's JSON message stream, started with its first message (see the module docstring)."""

    def __init__(self, request: web.Request) -> None:
        self.request = request
        self.response: web.StreamResponse | None = None

    @property
    def started(self) -> bool:
        return self.response is not None

    async def send(self, message: dict[str, Any]) -> None:
        if self.response is None:
            self.response = web.StreamResponse(headers={"Content-Type": "application/json"})
            await self.response.prepare(self.request)
        await self.response.write(dumps(message))

    async def fail(self, exc: BaseException) -> web.StreamResponse:
        """Answer ``exc``: re-raised (an HTTP error) before the stream started, its last message after."""
        if self.response is None:
            raise exc
        text = str(exc) or type(exc).__name__
        await self.send({"errorDetail": {"message": text}, "error": text})
        return await self.finish()

    async def finish(self) -> web.StreamResponse:
        if self.response is None:
            self.response = web.StreamResponse(headers={"Content-Type": "application/json"})
            await self.response.prepare(self.request)
        await self.response.write_eof()
        return self.response


def progress_message(e: Progress) -> dict[str, Any]:
    """A pull/push progress event as dockerd's JSON message: summary lines (``Digest: ...``) are a
    bare status; a layer's line has its id and progressDetail (byte counts while moving)."""
    msg: dict[str, Any] = {"status": e.status}
    if e.id:
        if e.total:
            msg["progressDetail"] = {"current": e.current, "total": e.total}
            msg["progress"] = _bar(e.current, e.total)
        elif not e.status.startswith("Pulling from "):
            msg["progressDetail"] = {}
        msg["id"] = e.id
    return msg


def _bar(current: int, total: int, width: int = 50) -> str:
    """dockerd's progress text: ``[=====>      ]  1.2MB/3.4MB``."""
    done = min(width, int(width * current / total)) if total else 0
    bar = "=" * done + (">" if done < width else "") + " " * max(0, width - done - 1)
    return f"[{bar}] {_human(current):>8}/{_human(total)}"


def _human(n: float) -> str:
    for unit in ("B", "kB", "MB", "GB", "TB"):
        if n < 1000 or unit == "TB":
            return f"{n:.4g}{unit}"
        n /= 1000
    return f"{n}B"


# -- listing and inspecting ------------------------------------------------------------------------

def _summary_view(s, legacy_placeholders: bool) -> dict[str, Any]:
    tags, digests = list(s.repo_tags), list(s.repo_digests)
    if legacy_placeholders:  # before API 1.43 an untagged image showed <none> placeholders
        tags = tags or ["<none>:<none>"]
        digests = digests or ["<none>@<none>"]
    return {
        "Containers": -1, "Created": int(s.created), "Id": s.id, "Labels": s.labels or {},
        "ParentId": s.parent or "", "RepoDigests": digests, "RepoTags": tags, "SharedSize": -1,
        "Size": s.size, "VirtualSize": s.size,
    }


async def list_images(request: web.Request) -> web.Response:
    opts = ImageListOptions(all=query_bool(request, "all"), filters=query_filters(request))
    summaries = await call(engine_of(request).images.list, opts)
    legacy = _vtuple(request["api_version"]) < (1, 43)
    return web.json_response([_summary_view(s, legacy) for s in summaries])


async def inspect_image(request: web.Request) -> web.Response:
    return web.json_response(await call(engine_of(request).images.inspect, request.match_info["name"]))


async def image_history(request: web.Request) -> web.Response:
    entries = await call(engine_of(request).images.history, request.match_info["name"])
    return web.json_response([
        {"Id": e.id, "Created": int(e.created), "CreatedBy": e.created_by, "Tags": e.tags or None,
         "Size": e.size, "Comment": e.comment}
        for e in entries
    ])


# -- naming and removing ---------------------------------------------------------------------------

async def tag_image(request: web.Request) -> web.Response:
    repo, tag = request.query.get("repo", ""), request.query.get("tag", "")
    if not repo:
        raise InvalidArgument("repository name must have at least one component")
    target = f"{repo}:{tag}" if tag else repo
    await call(engine_of(request).images.tag, request.match_info["name"], target)
    return web.Response(status=201)


async def remove_image(request: web.Request) -> web.Response:
    opts = ImageRemoveOptions(force=query_bool(request, "force"), prune=not query_bool(request, "noprune"))
    items = await call(engine_of(request).images.remove, request.match_info["name"], opts)
    return web.json_response([_delete_item(i) for i in items])


def _delete_item(item) -> dict[str, str]:
    return {"Untagged": item.untagged} if item.untagged else {"Deleted": item.deleted}


async def prune_images(request: web.Request) -> web.Response:
    report = await call(engine_of(request).images.prune, ImagePruneOptions(filters=query_filters(request)))
    return web.json_response({"ImagesDeleted": [_delete_item(i) for i in report.items] or None,
                              "SpaceReclaimed": report.reclaimed})


async def search_images(request: web.Request) -> web.Response:
    if not request.query.get("term"):
        raise InvalidArgument("term is required")
    raise Unavailable("search is not available: dockyard has no Docker Hub index to search; "
                      "list a registry's tags with GET /v2/<name>/tags/list instead")


# -- pull and import (POST /images/create) -------------------------------------------------------

async def create_image(request: web.Request) -> web.StreamResponse:
    if request.query.get("fromImage"):
        return await _pull(request)
    if request.query.get("fromSrc"):
        return await _import(request)
    raise InvalidArgument("either fromImage or fromSrc is required")


def _pull_name(from_image: str, tag: str) -> tuple[str, bool]:
    """(reference, all tags) from dockerd's fromImage and tag: a tag that is a digest pins it; no
    tag on a bare name pulls every tag."""
    ref = parse_normalized(from_image)
    if tag:
        return (f"{ref.name}@{tag}" if _DIGEST.match(tag) else f"{ref.name}:{tag}"), False
    return from_image, ref.is_name_only


async def _pull(request: web.Request) -> web.StreamResponse:
    name, all_tags = _pull_name(request.query["fromImage"], request.query.get("tag", ""))
    opts = PullOptions(name, all_tags=all_tags, platform=request.query.get("platform") or None,
                       credentials=registry_auth(request))
    events = engine_of(request).remote.pull(opts)
    stream = JsonStream(request)
    held: Progress | None = None  # "Pulling from ..." waits for the manifest, so a 404 stays a 404
    try:
        async for e in iterate(lambda stopped: events):
            if held is None and not stream.started and e.status.startswith("Pulling from "):
                held = e
                continue
            if held is not None:
                await stream.send(progress_message(held))
                held = None
            await stream.send(progress_message(e))
    except Unauthenticated as exc:
        # dockerd answers 404 here, not 401: a 401 makes the docker CLI prompt for a login
        return await stream.fail(NotFound(f"pull access denied for {parse_normalized(name).familiar_name}, "
                                          f"repository does not exist or may require 'docker login': {exc}"))
    except (DockyardError, OSError) as exc:
        return await stream.fail(exc)
    if held is not None:
        await stream.send(progress_message(held))
    return await stream.finish()


async def _import(request: web.Request) -> web.StreamResponse:
    src = request.query["fromSrc"]
    repo, tag = request.query.get("repo", ""), request.query.get("tag", "")
    reference = (f"{repo}@{tag}" if _DIGEST.match(tag) else f"{repo}:{tag}") if repo and tag else repo or None
    opts = ImportOptions(reference=reference, changes=request.query.getall("changes", []),
                         message=request.query.get("message", ""),
                         platform=request.query.get("platform") or None, source_name=src)
    images = engine_of(request).images
    stream = JsonStream(request)
    if src == "-":
        source = _body(request)
    else:
        if not src.startswith(("http://", "https://")):
            src = "http://" + src
        import urllib.request

        try:
            source = await call(urllib.request.urlopen, src, timeout=60)  # noqa: S310 - as dockerd's fromSrc
        except OSError as exc:
            raise InvalidArgument(f"error downloading {src}: {exc}") from None
    try:
        image_id = await run_in_thread(lambda: images.import_(source, opts), "dockyard-api-import")
    except (DockyardError, OSError) as exc:
        return await stream.fail(exc)
    finally:
        source.close()
    await stream.send({"status": image_id})
    return await stream.finish()


# -- push ----------------------------------------------------------------------------------------

async def push_image(request: web.Request) -> web.StreamResponse:
    name, tag = request.match_info["name"], request.query.get("tag", "")
    ref = parse_normalized(name)
    if tag:
        name = f"{ref.name}:{tag}"
    opts = PushOptions(name, all_tags=ref.is_name_only and not tag, credentials=registry_auth(request))
    remote = engine_of(request).remote
    events = await call(remote.push, opts)  # checks the local names first: a 404 before the stream
    stream = JsonStream(request)
    await stream.send({"status": f"The push refers to repository [{ref.name}]"})
    try:
        async for e in iterate(lambda stopped: events):
            await stream.send(progress_message(e))
            m = _PUSHED.match(e.status)
            if m and not e.id:
                await stream.send({"progressDetail": {}, "aux": {
                    "Tag": m["tag"], "Digest": m["digest"], "Size": int(m["size"])}})
    except (DockyardError, OSError) as exc:
        return await stream.fail(exc)
    return await stream.finish()


# -- save and load -------------------------------------------------------------------------------

def _body(request: web.Request) -> io.BufferedReader:
    """The request body as a blocking file object, for a facade call on another thread."""
    return io.BufferedReader(ThreadReader(asyncio.get_running_loop(), request.content), CHUNK)


async def _save(request: web.Request, names: list[str]) -> web.StreamResponse:
    """The archive goes out as the engine writes it; the response starts with its first bytes, so
    a name that does not resolve is still a 404."""
    images = engine_of(request).images
    response = web.StreamResponse(headers={"Content-Type": "application/x-tar"})

    async def send(data: bytes) -> None:
        if not response.prepared:
            await response.prepare(request)
        await response.write(data)

    writer = ThreadWriter(asyncio.get_running_loop(), send, CHUNK)

    def produce() -> None:
        images.save(SaveOptions(names=names), writer)  # type: ignore[arg-type]
        writer.flush()

    try:
        await run_in_thread(produce, "dockyard-api-save")
    except BaseException:
        if not response.prepared:
            raise  # nothing sent yet: an HTTP error
        # half an archive went out: cut the connection so that the client sees a truncated stream
        log.exception("save of %s failed after the response started", names)
        if request.transport is not None:
            request.transport.close()
        return response
    if not response.prepared:
        await response.prepare(request)
    await response.write_eof()
    return response


async def save_images(request: web.Request) -> web.StreamResponse:
    return await _save(request, request.query.getall("names", []))


async def save_image(request: web.Request) -> web.StreamResponse:
    return await _save(request, [request.match_info["name"]])


async def load_images(request: web.Request) -> web.StreamResponse:
    quiet = query_bool(request, "quiet")
    stream = JsonStream(request)
    images = engine_of(request).images
    source = _body(request)
    try:
        report = await run_in_thread(lambda: images.load(source), "dockyard-api-load")
    except (DockyardError, OSError) as exc:
        return await stream.fail(exc)
    if not quiet:
        for change in report.moved:
            await stream.send({"stream": f"The image {parse_normalized(change.name).familiar_string()} already "
                                         f"exists, renaming the old one with ID {change.old_image} to empty string\n"})
    for image_id, tags in report.images:
        for line in ([f"Loaded image: {t}" for t in tags] or [f"Loaded image ID: {image_id}"]):
            await stream.send({"stream": line + "\n"})
    return await stream.finish()


# -- commit --------------------------------------------------------------------------------------

async def commit(request: web.Request) -> web.Response:
    q = request.query
    container = q.get("container", "")
    if not container:
        raise InvalidArgument("container is required")
    await json_body(request)  # a ContainerConfig may come along: the container's own config is kept
    repo, tag = q.get("repo", ""), q.get("tag", "")
    reference = f"{repo}:{tag}" if repo and tag else repo or None
    image_id = await call(engine_of(request).containers.io.commit, container, reference,
                          message=q.get("comment", ""), author=q.get("author", ""),
                          changes=q.getall("changes", []), pause=query_bool(request, "pause", True))
    return web.json_response({"Id": image_id}, status=201)


# -- build (the classic builder's wire form) --------------------------------------------------------

_RUN_FAILED = re.compile(r'^process "(?P<cmd>.*)" did not complete successfully: exit code: (?P<code>\d+)$', re.S)


class ClassicBuildStream:
    """The builder's events as the classic builder's JSON stream, which the docker CLI prints when
    it has no buildx: ``Step N/M : INSTRUCTION``, a RUN's output, `` ---> Using cache``,
    `` ---> <id>`` after each step, then ``{"aux": {"ID": ...}}``, ``Successfully built <id>`` and
    ``Successfully tagged <name>``; with ``q`` only the aux message and the image ID.

    The builder reports BuildKit's steps: FROM and the instructions that make a layer (metadata
    instructions commit silently), numbered per stage, and BuildKit's internal steps (context,
    export), which the classic builder never showed and are left out here."""

    def __init__(self, quiet: bool) -> None:
        self.quiet = quiet
        self.kinds: dict[int, str] = {}       # step -> "run" (its output is shown) | "step" | "hidden"

    def encode(self, event: object) -> list[dict[str, Any]]:
        if isinstance(event, BuildFinished):
            out: list[dict[str, Any]] = [{"aux": {"ID": event.image_id}}]
            if self.quiet:
                return [*out, {"stream": event.image_id + "\n"}]
            out.append({"stream": f"Successfully built {short_id(event.image_id)}\n"})
            return out + [{"stream": f"Successfully tagged {t}\n"} for t in event.tags]
        if self.quiet:
            return []
        if isinstance(event, StepStarted):
            if event.stage == "internal" or event.index == 0:
                self.kinds[event.step] = "hidden"
                return []
            self.kinds[event.step] = "run" if event.text.removeprefix("ONBUILD ").startswith("RUN ") else "step"
            return [{"stream": f"Step {event.index}/{event.total} : {event.text}\n"}]
        if isinstance(event, StepOutput):
            return [{"stream": event.line + "\n"}] if self.kinds.get(event.step) == "run" else []
        if isinstance(event, StepDone):
            if self.kinds.get(event.step, "hidden") == "hidden":
                return []
            out = [{"stream": " ---> Using cache\n"}] if event.cached else []
            return out + ([{"stream": f" ---> {short_id(event.image_id)}\n"}] if event.image_id else [])
        if isinstance(event, BuildWarning):
            return [{"stream": event.message + "\n"}]
        return []


def _classic_error(exc: BaseException) -> BaseException:
    """A failed RUN in the classic builder's words (and its errorDetail code)."""
    m = _RUN_FAILED.match(str(exc))
    if m is None:
        return exc
    err = DockyardError(f"The command '{m['cmd']}' returned a non-zero code: {m['code']}")
    err.build_code = int(m["code"])  # type: ignore[attr-defined]
    return err


def _json_map(request: web.Request, name: str) -> dict[str, str]:
    raw = request.query.get(name, "")
    if not raw:
        return {}
    try:
        doc = json.loads(raw)
    except ValueError:
        raise InvalidArgument(f"invalid {name} JSON: {raw!r}") from None
    if not isinstance(doc, dict):
        raise InvalidArgument(f"invalid {name}: expected a JSON object")
    # a null build arg is declared without a value (the CLI's --build-arg NAME with NAME unset)
    return {str(k): str(v) for k, v in doc.items() if v is not None}


async def build(request: web.Request) -> web.StreamResponse:
    q = request.query
    if q.get("version", "1") != "1":
        raise InvalidArgument("BuildKit (version=2) is not supported by dockyard: use the classic builder API "
                              "(version=1; the docker CLI does without buildx)")
    remote = q.get("remote", "")
    network = q.get("networkmode", "")
    opts = BuildOptions(
        context=remote or "-",
        dockerfile=q.get("dockerfile", ""),
        tags=q.getall("t", []),
        build_args=_json_map(request, "buildargs"),
        labels=_json_map(request, "labels"),
        target=q.get("target", ""),
        no_cache=query_bool(request, "nocache"),
        quiet=query_bool(request, "q"),
        network="" if network == "default" else network,
        add_hosts=[h for v in q.getall("extrahosts", []) for h in v.split(",") if h],
        pull=query_bool(request, "pull"),
        platform=q.get("platform", ""),
        stdin=None if remote else _body(request),
    )
    # rm, forcerm, cachefrom, memory, cpu*, shmsize, squash: accepted; build containers always go
    events = engine_of(request).build.build(opts)
    encoder = ClassicBuildStream(opts.quiet)
    stream = JsonStream(request)
    try:
        async for event in iterate(lambda stopped: events):
            for message in encoder.encode(event):
                await stream.send(message)
    except DockyardError as exc:
        err = _classic_error(exc)
        if not stream.started:
            raise err from None
        text = str(err)
        detail: dict[str, Any] = {"message": text}
        if hasattr(err, "build_code"):
            detail = {"code": err.build_code, "message": text}
        await stream.send({"errorDetail": detail, "error": text})
    return await stream.finish()


async def prune_build_cache(request: web.Request) -> web.Response:
    from dockyard.engine.build import BuilderPruneOptions

    filters = query_filters(request)
    filters.check({"until", "unused-for"})
    until = (filters.get("until") or filters.get("unused-for") or [""])[0]
    report = await call(engine_of(request).build.prune,
                        BuilderPruneOptions(all=query_bool(request, "all"), until=until))
    return web.json_response({"CachesDeleted": report.deleted or None, "SpaceReclaimed": report.reclaimed})


# -- registries ----------------------------------------------------------------------------------

async def auth(request: web.Request) -> web.Response:
    body = await json_body(request)
    creds = _credentials(body)
    server = body.get("serveraddress") or None
    try:
        await call(engine_of(request).remote.check_login, server, creds)
    except Unauthenticated as exc:
        raise Unauthenticated(str(exc).removeprefix("Error response from daemon: ")) from None
    return web.json_response({"Status": "Login Succeeded", "IdentityToken": ""})


async def distribution(request: web.Request) -> web.Response:
    info = await call(engine_of(request).remote.distribution, request.match_info["name"], registry_auth(request))
    return web.json_response({
        "Descriptor": {"mediaType": info.media_type, "digest": info.digest, "size": info.size},
        "Platforms": [{k: v for k, v in p.to_dict().items() if v not in (None, "", [])} for p in info.platforms],
    })


def setup_routes(router: web.UrlDispatcher) -> None:
    route(router, "GET", "/images/json", list_images)
    route(router, "POST", "/images/create", create_image)
    route(router, "GET", "/images/get", save_images)
    route(router, "POST", "/images/load", load_images)
    route(router, "POST", "/images/prune", prune_images)
    route(router, "GET", "/images/search", search_images)
    route(router, "POST", "/commit", commit)
    route(router, "POST", "/auth", auth)
    # names may hold slashes (127.0.0.1:5000/team/app:1): the fixed suffix ends them
    route(router, "GET", "/images/{name:.+}/json", inspect_image)
    route(router, "GET", "/images/{name:.+}/history", image_history)
    route(router, "POST", "/images/{name:.+}/push", push_image)
    route(router, "POST", "/images/{name:.+}/tag", tag_image)
    route(router, "GET", "/images/{name:.+}/get", save_image)
    route(router, "DELETE", "/images/{name:.+}", remove_image)
    route(router, "GET", "/distribution/{name:.+}/json", distribution)
    route(router, "POST", "/build", build)
    route(router, "POST", "/build/prune", prune_build_cache)
