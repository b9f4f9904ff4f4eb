"""Image archives: ``save`` and ``load`` in the docker-archive and OCI image layout formats.

What ``dockyard save`` writes is the combined layout that ``docker save`` writes since Docker 25,
readable both as a docker-archive (``manifest.json``) and as an OCI image layout (``index.json``)::

    blobs/sha256/<hex>     manifests, configs and layer tars, named by digest
    oci-layout             {"imageLayoutVersion": "1.0.0"}
    index.json             one descriptor per tag, named by io.containerd.image.name and
                           org.opencontainers.image.ref.name annotations (one without names if untagged)
    manifest.json          [{"Config": "blobs/sha256/<hex>", "RepoTags": [...], "Layers": [...]}]
    repositories           {"busybox": {"latest": "<hex of the top layer's diff ID>"}} (legacy readers)

``load`` reads that, a classic docker-archive (``<id>/layer.tar`` + ``<hex>.json``), an OCI image
layout as a tar or as a directory, each optionally gzip/zstd-compressed.  Every member is hashed while
it is copied into the content store's ingest area; nothing becomes visible until all images of the
archive are verified and unpacked, and a failure anywhere leaves the store as it was.
"""

from __future__ import annotations

import io
import json
import os
import posixpath
import shutil
import tarfile
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import BinaryIO

from dockyard.errors import DataLoss, DockyardError, InvalidArgument, NotFound
from dockyard.metadata.db import ImageRow, Lease
from dockyard.oci import mediatypes as mt
from dockyard.oci.digest import Digester, validate_digest
from dockyard.oci.models import Descriptor, ImageConfig, Index, Manifest, canonical_json
from dockyard.oci.reference import Reference, parse_normalized
from dockyard.snapshots.compression import open_layer_reader
from dockyard.images.store import ImageStore, LayerBlob, NewImage, TagChange

CHUNK = 1 << 20
HOST_PLATFORM = ("linux", "amd64")


@dataclass
class _Entry:
    path: Path
    digest: str
    size: int
    owned: bool  # a temp file we may move into the store (else copy)


@dataclass
class LoadReport:
    """What was loaded: Docker prints "Loaded image: NAME" per tag, "Loaded image ID: ID" otherwise."""

    images: list[tuple[str, list[str]]] = field(default_factory=list)  # (image id, familiar tags)
    moved: list[TagChange] = field(default_factory=list)


class _Members:
    """The files of an archive, by normalised path, hashed on the way in."""

    def __init__(self) -> None:
        self.files: dict[str, _Entry] = {}
        self.links: dict[str, str] = {}

    def get(self, name: str) -> _Entry:
        name = _norm(name)
        for _ in range(16):
            if name in self.files:
                return self.files[name]
            if name not in self.links:
                break
            name = self.links[name]
        raise DataLoss(f"invalid archive: {name} is referenced but missing")

    def has(self, name: str) -> bool:
        try:
            self.get(name)
            return True
        except DataLoss:
            return False

    def json(self, name: str):
        try:
            with open(self.get(name).path, "rb") as f:
                return json.load(f)
        except (ValueError, UnicodeDecodeError) as exc:
            raise DataLoss(f"invalid archive: {name} is not valid JSON: {exc}") from exc

    def bytes(self, name: str) -> bytes:
        return self.get(name).path.read_bytes()


def _norm(name: str) -> str:
    n = posixpath.normpath("/" + name.lstrip("./") if not name.startswith("/") else name).lstrip("/")
    return n


def _hash_copy(src: BinaryIO, dst: BinaryIO, limit: int | None = None) -> tuple[str, int]:
    d = Digester()
    n = 0
    while limit is None or n < limit:
        chunk = src.read(CHUNK if limit is None else min(CHUNK, limit - n))
        if not chunk:
            break
        dst.write(chunk)
        d.update(chunk)
        n += len(chunk)
    return d.digest, n


def read_tar_members(stream: BinaryIO, scratch: Path) -> _Members:
    """Spool every regular file of a (possibly compressed) tar stream into ``scratch``, hashed."""
    members = _Members()
    reader, _ = open_layer_reader(stream)
    try:
        with tarfile.open(fileobj=reader, mode="r|") as tf:
            for i, m in enumerate(tf):
                name = _norm(m.name)
                if m.isreg():
                    tmp = scratch / f"m{i}"
                    src = tf.extractfile(m)
                    assert src is not None
                    with open(tmp, "wb") as out:
                        digest, size = _hash_copy(src, out)
                    if size != m.size:
                        raise DataLoss(f"invalid archive: unexpected EOF in {m.name}")
                    members.files[name] = _Entry(tmp, digest, size, owned=True)
                elif m.issym():
                    members.links[name] = _norm(posixpath.join(posixpath.dirname(name), m.linkname))
                elif m.islnk():
                    members.links[name] = _norm(m.linkname)
    except tarfile.ReadError as exc:
        msg = str(exc)
        if "empty file" in msg:
            raise DataLoss("invalid archive: the file is empty") from exc
        if "unexpected end" in msg or "truncated" in msg:
            raise DataLoss("invalid archive: unexpected EOF") from exc
        raise DataLoss(f"invalid archive: invalid tar header ({msg})") from exc
    except (EOFError, OSError) as exc:
        raise DataLoss(f"invalid archive: unexpected EOF ({exc})") from exc
    return members


def read_dir_members(root: Path) -> _Members:
    """An OCI layout directory: files are hashed in place and copied when committed."""
    members = _Members()
    for dirpath, _dirs, files in os.walk(root):
        for fn in files:
            p = Path(dirpath) / fn
            rel = p.relative_to(root).as_posix()
            if p.is_symlink():
                continue
            with open(p, "rb") as f:
                d = Digester()
                while chunk := f.read(CHUNK):
                    d.update(chunk)
            members.files[rel] = _Entry(p, d.digest, d.size, owned=False)
    return members


class ArchiveLoader:
    def __init__(self, store: ImageStore) -> None:
        self.store = store

    def load(self, source: BinaryIO | Path) -> LoadReport:
        scratch = self.store.content.temp_dir()
        created: list[str] = []
        try:
            with self.store.db.lease() as lease:
                try:
                    if isinstance(source, Path) and source.is_dir():
                        members = read_dir_members(source)
                    else:
                        members = read_tar_members(source, scratch)  # type: ignore[arg-type]
                    plans = self._plan(members)
                    for new in plans:
                        _attach_diff_ids(new)
                    if not plans:
                        raise InvalidArgument("invalid archive: it contains no images")
                    report = LoadReport()
                    for new in plans:
                        self._commit_blobs(members, new, lease)
                    # Unpack everything before anything is named, so a bad layer names nothing.
                    for new in plans:
                        self.store.unpack(new.layers, lease, created)
                    for new in plans:
                        image_id, moved = self.store.add_image(new, lease, created)
                        report.images.append((image_id, [t.familiar_string() for t in new.tags]))
                        report.moved.extend(moved)
                    return report
                except BaseException:
                    self.store.rollback(created, lease)
                    raise
        finally:
            shutil.rmtree(scratch, ignore_errors=True)

    # -- planning ------------------------------------------------------------------------------
    def _plan(self, members: _Members) -> list[NewImage]:
        if members.has("index.json"):
            plans = self._plan_oci(members)
            if plans:
                return plans
        if members.has("manifest.json"):
            return self._plan_docker(members)
        raise InvalidArgument(
            "invalid archive: neither manifest.json (docker-archive) nor index.json (OCI layout) found"
        )

    def _plan_docker(self, members: _Members) -> list[NewImage]:
        doc = members.json("manifest.json")
        if not isinstance(doc, list):
            raise DataLoss("invalid archive: manifest.json is not a list")
        plans = []
        for item in doc:
            try:
                cfg_entry = members.get(item["Config"])
                layer_names = list(item.get("Layers") or [])
                tags = [parse_normalized(t).with_default_tag() for t in item.get("RepoTags") or []]
            except (KeyError, TypeError) as exc:
                raise DataLoss(f"invalid archive: malformed manifest.json entry: {exc}") from exc
            config = cfg_entry.path.read_bytes()
            layers = []
            for name in layer_names:
                e = members.get(name)
                layers.append(LayerBlob(e.digest, "", _layer_media_type(e.path), e.size))
            plans.append(NewImage(config=config, layers=layers, tags=tags))
        return plans

    def _plan_oci(self, members: _Members) -> list[NewImage]:
        if members.has("oci-layout"):
            layout = members.json("oci-layout")
            if layout.get("imageLayoutVersion") != "1.0.0":
                raise DataLoss("invalid archive: unsupported imageLayoutVersion")
        index = Index.from_dict(members.json("index.json"))
        docker_names = self._docker_names(members)
        by_manifest: dict[str, NewImage] = {}
        order: list[str] = []
        for desc in index.manifests:
            names = _names_from_annotations(desc.annotations or {})
            mdesc = self._pick_manifest(members, desc)
            if mdesc is None:
                continue
            if mdesc.digest not in by_manifest:
                raw = self._blob(members, mdesc.digest).path.read_bytes()
                manifest = Manifest.from_dict(json.loads(raw))
                config = self._blob(members, manifest.config.digest).path.read_bytes()
                layers = [LayerBlob(l.digest, "", l.media_type, l.size) for l in manifest.layers]
                for l in layers:
                    self._blob(members, l.digest)
                by_manifest[mdesc.digest] = NewImage(
                    config=config, layers=layers, manifest=raw,
                    manifest_media_type=manifest.media_type or mt.OCI_MANIFEST,
                )
                order.append(mdesc.digest)
                cfg_digest = manifest.config.digest
                names = names or docker_names.get(cfg_digest, [])
            new = by_manifest[mdesc.digest]
            for n in names:
                if n not in new.tags:
                    new.tags.append(n)
        return [by_manifest[d] for d in order]

    def _docker_names(self, members: _Members) -> dict[str, list[Reference]]:
        out: dict[str, list[Reference]] = {}
        if not members.has("manifest.json"):
            return out
        try:
            for item in members.json("manifest.json"):
                digest = members.get(item["Config"]).digest
                out[digest] = [parse_normalized(t).with_default_tag() for t in item.get("RepoTags") or []]
        except (KeyError, TypeError, DataLoss):
            return {}
        return out

    def _pick_manifest(self, members: _Members, desc: Descriptor) -> Descriptor | None:
        if mt.is_manifest(desc.media_type):
            return desc
        if mt.is_index(desc.media_type):
            nested = Index.from_dict(json.loads(self._blob(members, desc.digest).path.read_bytes()))
            candidates = [
                d for d in nested.manifests
                if mt.is_manifest(d.media_type) and members.has(_blob_path(d.digest))
            ]
            for d in candidates:
                if d.platform and (d.platform.os, d.platform.architecture) == HOST_PLATFORM:
                    return d
            return candidates[0] if len(candidates) == 1 else None
        return None  # artifacts and unknown media types are not images

    def _blob(self, members: _Members, digest: str) -> _Entry:
        validate_digest(digest)
        e = members.get(_blob_path(digest))
        if e.digest != digest:
            raise DataLoss(f"invalid archive: blob {digest} has digest {e.digest}")
        return e

    def _commit_blobs(self, members: _Members, new: NewImage, lease: Lease) -> None:
        for layer in new.layers:
            e = self._entry_for(members, layer.digest)
            lease.add("content", e.digest)
            if self.store.content.exists(e.digest):
                continue
            if e.owned:
                self.store.content.adopt(e.path, e.digest, e.size)
                e.owned = False
                e.path = self.store.content.blob_path(e.digest)
            else:
                with open(e.path, "rb") as src, self.store.content.writer() as w:
                    w.copy_from(src)
                    w.commit(e.digest, e.size)

    @staticmethod
    def _entry_for(members: _Members, digest: str) -> _Entry:
        for e in members.files.values():
            if e.digest == digest:
                return e
        raise DataLoss(f"invalid archive: blob {digest} missing")


def _attach_diff_ids(new: NewImage) -> None:
    """Give each layer the diff ID the config lists for it (checked again when it is unpacked)."""
    try:
        config = ImageConfig.from_dict(json.loads(new.config))
    except ValueError as exc:
        raise DataLoss(f"invalid archive: image config is not valid JSON: {exc}") from exc
    if len(config.rootfs.diff_ids) != len(new.layers):
        raise DataLoss(
            f"invalid archive: the image config lists {len(config.rootfs.diff_ids)} layers, "
            f"the manifest {len(new.layers)}"
        )
    for layer, diff_id in zip(new.layers, config.rootfs.diff_ids):
        layer.diff_id = diff_id


def _blob_path(digest: str) -> str:
    algo, hexpart = digest.split(":", 1)
    return f"blobs/{algo}/{hexpart}"


def _names_from_annotations(ann: dict[str, str]) -> list[Reference]:
    name = ann.get("io.containerd.image.name")
    if not name:
        ref_name = ann.get("org.opencontainers.image.ref.name", "")
        # A bare tag ("latest") names nothing; "busybox:latest" or "a/b" is a whole reference.
        if ":" in ref_name or "/" in ref_name:
            name = ref_name
    if not name:
        return []
    try:
        return [parse_normalized(name).with_default_tag()]
    except InvalidArgument:
        return []


def _layer_media_type(path: Path) -> str:
    with open(path, "rb") as f:
        magic = f.read(4)
    if magic[:2] == b"\x1f\x8b":
        return mt.OCI_LAYER_GZIP
    if magic == b"\x28\xb5\x2f\xfd":
        return mt.OCI_LAYER_ZSTD
    return mt.OCI_LAYER


# -- save --------------------------------------------------------------------------------------
@dataclass
class SaveItem:
    row: ImageRow
    tags: list[Reference]


def _tarinfo(name: str, size: int, mtime: float = 0) -> tarfile.TarInfo:
    ti = tarfile.TarInfo(name)
    ti.size = size
    ti.mode = 0o644
    ti.mtime = int(mtime)
    return ti


def _dirinfo(name: str) -> tarfile.TarInfo:
    ti = tarfile.TarInfo(name)
    ti.type = tarfile.DIRTYPE
    ti.mode = 0o755
    return ti


class ArchiveWriter:
    """Writes images as a docker-archive+OCI tar, an OCI-only tar, or an OCI layout directory."""

    FORMATS = ("docker-archive", "oci-archive", "oci-dir")

    def __init__(self, store: ImageStore) -> None:
        self.store = store

    def _blobs(self, items: Iterable[SaveItem]) -> list[str]:
        seen: dict[str, None] = {}
        for it in items:
            manifest = self.store.manifest(it.row)
            for d in (it.row.manifest_digest, manifest.config.digest, *(l.digest for l in manifest.layers)):
                seen.setdefault(d, None)
        return list(seen)

    def _index(self, items: list[SaveItem]) -> bytes:
        manifests = []
        for it in items:
            size = self.store.content.info(it.row.manifest_digest).size
            names = it.tags or [None]
            for ref in names:
                ann = None
                if ref is not None:
                    ann = {"io.containerd.image.name": str(ref), "org.opencontainers.image.ref.name": ref.tag or ""}
                manifests.append(
                    Descriptor(media_type=it.row.manifest_media_type, digest=it.row.manifest_digest,
                               size=size, annotations=ann).to_dict()
                )
        return canonical_json({"schemaVersion": 2, "mediaType": mt.OCI_INDEX, "manifests": manifests})

    def _docker_manifest(self, items: list[SaveItem]) -> tuple[bytes, bytes]:
        entries = []
        repos: dict[str, dict[str, str]] = {}
        for it in items:
            manifest = self.store.manifest(it.row)
            entries.append({
                "Config": _blob_path(manifest.config.digest),
                "RepoTags": [t.familiar_string() for t in it.tags],
                "Layers": [_blob_path(l.digest) for l in manifest.layers],
            })
            diff_ids = self.store.config(it.row.id).rootfs.diff_ids
            for t in it.tags:
                if diff_ids:
                    repos.setdefault(t.familiar_name, {})[t.tag or "latest"] = diff_ids[-1].split(":", 1)[1]
        return json.dumps(entries).encode(), json.dumps(repos).encode()

    def write_tar(self, items: list[SaveItem], out: BinaryIO, fmt: str = "docker-archive") -> None:
        if fmt not in ("docker-archive", "oci-archive"):
            raise InvalidArgument(f"unsupported archive format {fmt!r}: use docker-archive or oci-archive")
        with tarfile.open(fileobj=out, mode="w|", format=tarfile.PAX_FORMAT, copybufsize=CHUNK) as tf:
            tf.addfile(_dirinfo("blobs"))
            tf.addfile(_dirinfo("blobs/sha256"))
            for digest in self._blobs(items):
                path = self.store.content.path(digest)
                with open(path, "rb") as f:
                    tf.addfile(_tarinfo(_blob_path(digest), os.fstat(f.fileno()).st_size), f)
            files = [("oci-layout", b'{"imageLayoutVersion":"1.0.0"}'), ("index.json", self._index(items))]
            if fmt == "docker-archive":
                manifest, repos = self._docker_manifest(items)
                files += [("manifest.json", manifest), ("repositories", repos)]
            for name, data in files:
                tf.addfile(_tarinfo(name, len(data)), io.BytesIO(data))

    def write_dir(self, items: list[SaveItem], dest: Path) -> None:
        blobs = dest / "blobs" / "sha256"
        blobs.mkdir(parents=True, exist_ok=True)
        for digest in self._blobs(items):
            target = blobs / digest.split(":", 1)[1]
            if not target.exists():
                src = self.store.content.path(digest)
                try:
                    os.link(src, target)
                except OSError:
                    shutil.copyfile(src, target)
        (dest / "oci-layout").write_bytes(b'{"imageLayoutVersion":"1.0.0"}')
        (dest / "index.json").write_bytes(self._index(items))


def select_for_save(store: ImageStore, names: list[str]) -> list[SaveItem]:
    """Docker's rules: "repo:tag" saves that tag; "repo" saves every tag of the repository; an ID
    saves the image without names."""
    items: dict[str, SaveItem] = {}
    for name in names:
        row = store.lookup(name)
        if row is None:
            try:
                ref = parse_normalized(name)
            except InvalidArgument:
                raise NotFound(f"No such image: {name}") from None
            if ref.tag is None and ref.digest is None:
                tagged = [t for t in store.db.tags() if parse_normalized(t[0]).name == ref.name]
                if tagged:
                    for tag_name, image_id, _ in tagged:
                        row2 = store.db.image(image_id)
                        assert row2 is not None
                        item = items.setdefault(image_id, SaveItem(row2, []))
                        item.tags.append(parse_normalized(tag_name))
                    continue
            store.resolve(name)  # raises NotFound in Docker's words
            continue
        item = items.setdefault(row.id, SaveItem(row, []))
        try:
            ref = parse_normalized(name)
            is_ref = not (name.startswith("sha256:") or row.id.removeprefix("sha256:").startswith(name))
        except DockyardError:
            is_ref = False
        if is_ref and ref.digest is None:
            t = ref.with_default_tag()
            if t not in item.tags:
                item.tags.append(t)
    return list(items.values())
