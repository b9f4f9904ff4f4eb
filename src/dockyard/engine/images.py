"""Image operations with Docker's semantics: list, inspect, tag, remove, prune, history, import,
load, save and bootstrap.  The CLI and the Engine API server both call these; nothing here renders."""

from __future__ import annotations

import json
import re
import time
from collections.abc import Callable
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, BinaryIO

from dockyard.errors import Conflict, DataLoss, InvalidArgument, NotFound
from dockyard.images.archive import ArchiveLoader, ArchiveWriter, LoadReport, select_for_save
from dockyard.images.changes import apply_changes
from dockyard.images.store import ImageStore, NewImage
from dockyard.metadata.db import ImageRow
from dockyard.oci.digest import Digester, short_id
from dockyard.oci.reference import parse_normalized
from dockyard.snapshots.compression import open_layer_reader
from dockyard.engine.image_options import (
    HistoryEntry,
    ImageDeleteItem,
    ImageListOptions,
    ImagePruneOptions,
    ImagePruneReport,
    ImageRemoveOptions,
    ImageSummary,
    ImportOptions,
    SaveOptions,
)

CHUNK = 1 << 20


def parse_time(value: str | None) -> float:
    """RFC 3339 (as in image configs) to epoch seconds; 0 for empty."""
    if not value:
        return 0.0
    v = value.strip()
    m = re.match(r"^(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d)(\.\d+)?(Z|[+-]\d\d:\d\d)?$", v)
    if not m:
        raise InvalidArgument(f"invalid time {value!r}")
    base = datetime.fromisoformat(m.group(1) + (m.group(3) or "Z").replace("Z", "+00:00"))
    frac = float(m.group(2)) if m.group(2) else 0.0
    return base.timestamp() + frac


def rfc3339(ts: float) -> str:
    dt = datetime.fromtimestamp(ts, timezone.utc)
    s = dt.strftime("%Y-%m-%dT%H:%M:%S")
    frac = f"{ts % 1:.9f}"[2:].rstrip("0")
    return s + ("." + frac if frac else "") + "Z"


def go_path_match(pattern: str, name: str) -> bool:
    """Go's path.Match: '*' and '?' never match '/'."""
    regex = ""
    i = 0
    while i < len(pattern):
        c = pattern[i]
        if c == "*":
            regex += "[^/]*"
        elif c == "?":
            regex += "[^/]"
        elif c == "[":
            j = pattern.find("]", i)
            if j < 0:
                raise InvalidArgument("syntax error in pattern")
            regex += "[" + pattern[i + 1:j].replace("^", "\\^").replace("!", "^", 1) + "]"
            i = j
        else:
            regex += re.escape(c)
        i += 1
    return re.fullmatch(regex, name) is not None


class ImageEngine:
    def __init__(self, store: ImageStore, events=None) -> None:
        self.store = store
        self.events = events  # the engine's EventLog (tag, untag, delete events); None in bare tests

    # -- queries -------------------------------------------------------------------------------
    def _summary(self, row: ImageRow, tags: list[str], digests: list[str]) -> ImageSummary:
        cfg = self.store.config(row.id)
        labels = (cfg.to_dict().get("config") or {}).get("Labels") or {}
        return ImageSummary(
            id=row.id,
            repo_tags=tags,
            repo_digests=digests,
            created=parse_time(row.created) if row.created else row.added,
            size=row.size,
            labels=labels,
            parent=row.parent,
            containers=len(self.store.containers_using(row.id)),
        )

    def _names(self) -> tuple[dict[str, list[str]], dict[str, list[str]]]:
        tags: dict[str, list[str]] = {}
        for name, image_id, _ in self.store.db.tags():
            tags.setdefault(image_id, []).append(parse_normalized(name).familiar_string())
        digests: dict[str, list[str]] = {}
        for name, digest, image_id in self.store.db.repo_digests():
            digests.setdefault(image_id, []).append(f"{parse_normalized(name).familiar_name}@{digest}")
        return tags, digests

    def list(self, opts: ImageListOptions) -> list[ImageSummary]:
        f = opts.filters
        f.check({"dangling", "reference", "label", "before", "since", "until"})
        tags, digests = self._names()
        rows = self.store.db.images()
        # Intermediate images (parents of others, and what the build cache holds) show with -a only.
        from dockyard.build.cache import cached_image_ids

        parents = {r.parent for r in rows if r.parent} | cached_image_ids(self.store.db)
        before = [self.store.resolve(v) for v in f.get("before")]
        since = [self.store.resolve(v) for v in f.get("since")]
        out = []
        for row in rows:
            s = self._summary(row, sorted(tags.get(row.id, [])), sorted(digests.get(row.id, [])))
            dangling = not s.repo_tags
            if not opts.all and dangling and row.id in parents and "dangling" not in f:
                continue  # an intermediate image, shown with -a only
            if f.get("dangling"):
                want = f.get("dangling")[0].lower()
                if want not in ("true", "false", "1", "0"):
                    raise InvalidArgument(f"Invalid filter 'dangling={want}'")
                if (want in ("true", "1")) != dangling:
                    continue
            if f.get("reference"):
                if not s.repo_tags:
                    continue
                matched = []
                for t in s.repo_tags:
                    repo = t.rsplit(":", 1)[0]
                    if any(go_path_match(p, t) or go_path_match(p, repo) for p in f.get("reference")):
                        matched.append(t)
                if not matched:
                    continue
                s.repo_tags = matched
            if not _labels_match(s.labels, f.get("label")):
                continue
            if any(s.created >= self._created(b) for b in before):
                continue
            if any(s.created <= self._created(b) for b in since):
                continue
            out.append(s)
        out.sort(key=lambda s: s.created, reverse=True)
        return out

    def _created(self, row: ImageRow) -> float:
        return parse_time(row.created) if row.created else row.added

    def inspect(self, name: str) -> dict[str, Any]:
        """The image as ``docker image inspect`` shows it (API 1.43 shape)."""
        row = self.store.resolve(name)
        cfg = self.store.config(row.id).to_dict()
        tags, digests = self._names()
        inner = cfg.get("config") or {}
        config = {
            "Hostname": "", "Domainname": "", "User": inner.get("User", ""), "AttachStdin": False,
            "AttachStdout": False, "AttachStderr": False, "ExposedPorts": inner.get("ExposedPorts"),
            "Tty": False, "OpenStdin": False, "StdinOnce": False, "Env": inner.get("Env"),
            "Cmd": inner.get("Cmd"), "Healthcheck": inner.get("Healthcheck"),
            "ArgsEscaped": inner.get("ArgsEscaped"), "Image": "", "Volumes": inner.get("Volumes"),
            "WorkingDir": inner.get("WorkingDir", ""), "Entrypoint": inner.get("Entrypoint"),
            "OnBuild": inner.get("OnBuild"), "Labels": inner.get("Labels"),
            "StopSignal": inner.get("StopSignal"), "Shell": inner.get("Shell"),
        }
        config = {k: v for k, v in config.items() if v is not None or k in
                  ("Env", "Cmd", "Volumes", "Entrypoint", "OnBuild", "Labels")}
        chains = self.store.top_snapshot(row.id)
        graph: dict[str, str] = {}
        if chains:
            lower = self.store.snapshots.lower_dirs(chains)
            if lower:
                graph["LowerDir"] = ":".join(str(p) for p in lower[1:]) if len(lower) > 1 else ""
                graph["UpperDir"] = str(lower[0])
                if not graph["LowerDir"]:
                    del graph["LowerDir"]
        last_tag = max((t[2] for t in self.store.db.tags(row.id)), default=None)
        return {
            "Id": row.id,
            "RepoTags": sorted(tags.get(row.id, [])),
            "RepoDigests": sorted(digests.get(row.id, [])),
            "Parent": row.parent,
            "Comment": row.comment or cfg.get("comment", ""),
            "Created": cfg.get("created") or rfc3339(row.added),
            "Container": "",
            "ContainerConfig": {k: ("" if isinstance(v, str) else False if isinstance(v, bool) else None)
                                for k, v in config.items()},
            "DockerVersion": cfg.get("docker_version", ""),
            "Author": cfg.get("author", ""),
            "Config": config,
            "Architecture": cfg.get("architecture", ""),
            **({"Variant": cfg["variant"]} if cfg.get("variant") else {}),
            "Os": cfg.get("os", ""),
            "Size": row.size,
            "VirtualSize": row.size,
            "GraphDriver": {"Data": graph or None, "Name": "overlay2"},
            "RootFS": {"Type": "layers", "Layers": list((cfg.get("rootfs") or {}).get("diff_ids") or [])},
            "Metadata": {"LastTagTime": rfc3339(last_tag) if last_tag else "0001-01-01T00:00:00Z"},
        }

    def history(self, name: str) -> list[HistoryEntry]:
        row = self.store.resolve(name)
        cfg = self.store.config(row.id).to_dict()
        sizes = self.store.layer_sizes(row.id)
        entries: list[HistoryEntry] = []
        layer = 0
        for h in cfg.get("history") or []:
            size = 0
            if not h.get("empty_layer"):
                size = sizes[layer] if layer < len(sizes) else 0
                layer += 1
            entries.append(HistoryEntry("<missing>", parse_time(h.get("created")), h.get("created_by", ""),
                                        size, h.get("comment", ""), []))
        if not entries:  # an image without history: one line per layer, as Docker shows it
            entries = [HistoryEntry("<missing>", parse_time(cfg.get("created")), "", s, "", []) for s in sizes]
        entries.reverse()
        if entries:
            tags, _ = self._names()
            entries[0].id = row.id
            entries[0].tags = sorted(tags.get(row.id, []))
        return entries

    # -- naming --------------------------------------------------------------------------------
    def tag(self, source: str, target: str) -> None:
        row = self.store.resolve(source)
        ref = parse_normalized(target)
        if ref.digest is not None:
            raise InvalidArgument("refusing to create a tag with a digest reference")
        self.store.tag(row.id, ref.with_default_tag())
        if self.events is not None:
            self.events.emit("image", "tag", row.id, {"name": ref.with_default_tag().familiar_string()})

    def remove(self, name: str, opts: ImageRemoveOptions) -> list[ImageDeleteItem]:
        """``docker rmi``: untag a reference; delete the image when nothing names it any more."""
        image_id = self.store.resolve(name).id
        items = self._remove(name, opts)
        if self.events is not None:
            for it in items:
                if it.untagged:
                    self.events.emit("image", "untag", image_id, {"name": it.untagged})
                if it.deleted:
                    self.events.emit("image", "delete", it.deleted, {"name": it.deleted})
        return items

    def _remove(self, name: str, opts: ImageRemoveOptions) -> list[ImageDeleteItem]:
        row = self.store.resolve(name)
        sid = short_id(row.id)
        by_id = name.startswith("sha256:") or row.id.removeprefix("sha256:").startswith(name)
        if by_id and self.store.db.tag_target(_tag_name(name)):
            by_id = False  # a tag that looks like an ID prefix names the tag
        tags = [t[0] for t in self.store.db.tags(row.id)]
        users = self.store.containers_using(row.id)
        items: list[ImageDeleteItem] = []
        if not by_id:
            ref = parse_normalized(name)
            if ref.digest is not None:
                with self.store.db.write() as conn:
                    conn.execute("DELETE FROM repo_digests WHERE name=? AND digest=?", (ref.name, ref.digest))
                items.append(ImageDeleteItem(untagged=f"{ref.familiar_name}@{ref.digest}"))
                remaining = tags
            else:
                tag_name = str(ref.with_default_tag())
                if len(tags) <= 1 and users and not opts.force:
                    cid, _ = users[0]
                    raise Conflict(
                        f'conflict: unable to remove repository reference "{name}" (must force) - '
                        f"container {cid[:12]} is using its referenced image {sid}"
                    )
                self.store.untag(tag_name)
                items.append(ImageDeleteItem(untagged=ref.with_default_tag().familiar_string()))
                remaining = [t for t in tags if t != tag_name]
                if not any(parse_normalized(t).name == ref.name for t in remaining):
                    # Docker: the last tag of a repository takes that repository's digest references along
                    for rname, digest, _ in self.store.db.repo_digests(row.id):
                        if rname == ref.name:
                            with self.store.db.write() as conn:
                                conn.execute("DELETE FROM repo_digests WHERE name=? AND digest=?", (rname, digest))
                            items.append(ImageDeleteItem(untagged=f"{ref.familiar_name}@{digest}"))
            if remaining or self.store.db.repo_digests(row.id) and ref.digest is None:
                return items
        else:
            if len(tags) > 1 and not opts.force:
                raise Conflict(
                    f"conflict: unable to delete {sid} (must be forced) - image is referenced in multiple repositories"
                )
            running = [c for c, state in users if state == "running"]
            if running:
                raise Conflict(
                    f"conflict: unable to delete {sid} (cannot be forced) - image is being used by running "
                    f"container {running[0][:12]}"
                )
            if users and not opts.force:
                raise Conflict(
                    f"conflict: unable to delete {sid} (must be forced) - image is being used by stopped "
                    f"container {users[0][0][:12]}"
                )
            for t in tags:
                self.store.untag(t)
                items.append(ImageDeleteItem(untagged=parse_normalized(t).familiar_string()))
            for rname, digest, _ in self.store.db.repo_digests(row.id):
                items.append(ImageDeleteItem(untagged=f"{parse_normalized(rname).familiar_name}@{digest}"))
        if self._children(row.id):
            if by_id:
                raise Conflict(f"conflict: unable to delete {sid} (cannot be forced) - image has dependent child images")
            return items  # untagged parent stays as an intermediate image
        if users and not opts.force:
            return items
        removed = self.store.delete_image(row.id)
        items.append(ImageDeleteItem(deleted=row.id))
        items.extend(ImageDeleteItem(deleted=c) for c in removed)
        return items

    def _children(self, image_id: str) -> list[str]:
        rows = self.store.db.read().execute("SELECT id FROM images WHERE parent=?", (image_id,)).fetchall()
        return [r["id"] for r in rows]

    def prune(self, opts: ImagePruneOptions) -> ImagePruneReport:
        f = opts.filters
        f.check({"dangling", "until", "label", "label!"})
        dangling_only = not opts.all
        if f.get("dangling"):
            dangling_only = f.get("dangling")[0].lower() in ("true", "1")
        until = [_until(v) for v in f.get("until")]
        items: list[ImageDeleteItem] = []
        reclaimed = 0
        before = _du(self.store)
        for s in self.list(ImageListOptions(all=True)):
            if dangling_only and s.repo_tags:
                continue
            if s.containers:
                continue
            if until and not all(s.created < u for u in until):
                continue
            if not _labels_match(s.labels, f.get("label")):
                continue
            if f.get("label!") and _labels_match(s.labels, f.get("label!")):
                continue
            if self._children(s.id):
                continue
            try:
                if s.repo_tags:
                    for t in s.repo_tags:
                        items.extend(self.remove(t, ImageRemoveOptions(force=False)))
                else:
                    items.extend(self.remove(s.id, ImageRemoveOptions(force=True)))
            except (Conflict, NotFound):
                continue
        reclaimed = max(0, before - _du(self.store))
        return ImagePruneReport(items, reclaimed)

    # -- creating ------------------------------------------------------------------------------
    def import_(self, stream: BinaryIO, opts: ImportOptions) -> str:
        """``docker import``: a root filesystem tarball (plain, gzip or zstd) becomes a one-layer image."""
        ref = parse_normalized(opts.reference).with_default_tag() if opts.reference else None
        os_name, arch = _platform(opts.platform)
        now = time.time()
        with self.store.db.lease() as lease:
            created: list[str] = []
            try:
                reader, _ = open_layer_reader(stream)

                def produce(out: BinaryIO) -> str:
                    d = Digester()
                    while chunk := reader.read(CHUNK):
                        d.update(chunk)
                        out.write(chunk)
                    if d.size == 0:
                        raise DataLoss("invalid archive: the input is empty")
                    return d.digest

                layer = self.store.write_layer(produce, lease)
                container_config = apply_changes({}, opts.changes)
                config = {
                    "architecture": arch,
                    "os": os_name,
                    "created": rfc3339(now),
                    "config": container_config,
                    "rootfs": {"type": "layers", "diff_ids": [layer.diff_id]},
                    "history": [{"created": rfc3339(now), "comment": opts.message or f"Imported from {opts.source_name}"}],
                }
                if opts.message:
                    config["comment"] = opts.message
                raw = json.dumps(config, separators=(",", ":")).encode()
                image_id, _ = self.store.add_image(
                    NewImage(config=raw, layers=[layer], tags=[ref] if ref else [], comment=opts.message),
                    lease, created,
                )
                return image_id
            except BaseException:
                self.store.rollback(created, lease)
                raise

    def load(self, source: BinaryIO | Path) -> LoadReport:
        return ArchiveLoader(self.store).load(source)

    def save(self, opts: SaveOptions, out: BinaryIO | Path) -> None:
        if not opts.names:
            raise InvalidArgument('"docker save" requires at least 1 argument.')
        items = select_for_save(self.store, opts.names)
        writer = ArchiveWriter(self.store)
        if opts.format == "oci-dir":
            if not isinstance(out, Path):
                raise InvalidArgument("the oci-dir format needs an output directory (-o DIR)")
            writer.write_dir(items, out)
        else:
            if isinstance(out, Path):
                raise InvalidArgument(f"the {opts.format} format writes a file, not a directory")
            writer.write_tar(items, out, opts.format)

    def bootstrap(self, name: str, log: Callable[[str], None] = lambda s: None) -> str:
        from dockyard.images.bootstrapper import Bootstrapper

        return Bootstrapper(self.store).bootstrap(name, log)


def _tag_name(name: str) -> str:
    try:
        return str(parse_normalized(name).with_default_tag())
    except InvalidArgument:
        return ""


def _labels_match(labels: dict[str, str], wanted: list[str]) -> bool:
    for w in wanted:
        k, eq, v = w.partition("=")
        if k not in labels or (eq and labels[k] != v):
            return False
    return True


def _until(value: str) -> float:
    if re.fullmatch(r"\d+(\.\d+)?", value):
        return float(value)
    m = re.fullmatch(r"(\d+)(h|m|s)", value)
    if m:
        return time.time() - int(m.group(1)) * {"h": 3600, "m": 60, "s": 1}[m.group(2)]
    return parse_time(value)


def _platform(value: str | None) -> tuple[str, str]:
    if not value:
        return "linux", "amd64"
    parts = value.split("/")
    if len(parts) < 2 or not all(parts):
        raise InvalidArgument(f'"{value}": unknown operating system or architecture: invalid argument')
    return parts[0], parts[1]


def _du(store: ImageStore) -> int:
    total = sum(b.size for b in store.content.walk())
    total += sum(int(r["size"]) for r in store.db.read().execute("SELECT size FROM unpacked"))
    return total
