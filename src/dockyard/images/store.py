"""The image store: images as OCI manifests + configs + layers, named by tags, unpacked into snapshots.

An image is identified, as in Docker, by the digest of its config (``Id``).  Its blobs (manifest,
config, compressed or plain layer tars) live in the content store; its rows in the metadata DB
(``images``, ``image_blobs``, ``tags``, ``repo_digests``); its layers are unpacked once each into the
snapshotter, as committed snapshots named by their chain ID (``sha256:...``), shared by every image
that has the same chain.

Writing an image is all-or-nothing: blobs are written (digest-checked) and layers unpacked under a
lease, then one transaction records the image and its tags.  If anything fails before that
transaction, the blobs and snapshots this call created are removed again, so a failed load or import
leaves the store exactly as it was.
"""

from __future__ import annotations

import contextlib
import json
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import BinaryIO

from dockyard.content.store import ContentStore
from dockyard.errors import AlreadyExists, DataLoss, DockyardError, InvalidArgument, NotFound
from dockyard.metadata.db import ImageRow, Lease, MetadataDB
from dockyard.oci import mediatypes as mt
from dockyard.oci.digest import sha256_digest
from dockyard.oci.models import Descriptor, ImageConfig, Manifest, canonical_json
from dockyard.oci.reference import Reference, looks_like_image_id, parse_normalized
from dockyard.snapshots.compression import gzip_writer, open_layer_reader
from dockyard.snapshots.overlay import OverlaySnapshotter


def chain_ids(diff_ids: Iterable[str]) -> list[str]:
    """OCI ChainID of every layer prefix: C(0)=D(0), C(n)=sha256(C(n-1) + " " + D(n))."""
    out: list[str] = []
    for d in diff_ids:
        out.append(d if not out else sha256_digest(f"{out[-1]} {d}".encode()))
    return out


@dataclass
class LayerBlob:
    """A layer as stored: its blob (possibly compressed) and the digest of its uncompressed tar."""

    digest: str
    diff_id: str
    media_type: str
    size: int


@dataclass
class NewImage:
    """What :meth:`ImageStore.add_image` needs; the manifest is made from it."""

    config: bytes
    layers: list[LayerBlob]
    tags: list[Reference] = field(default_factory=list)
    parent: str = ""
    comment: str = ""
    manifest: bytes | None = None           # keep a manifest as received (pull/load of OCI layouts)
    manifest_media_type: str = mt.OCI_MANIFEST
    repo_digests: list[tuple[str, str]] = field(default_factory=list)


@dataclass
class TagChange:
    """A tag moved from one image to another by add_image/tag (Docker prints a notice for it)."""

    name: str
    old_image: str


class ImageStore:
    def __init__(self, content: ContentStore, db: MetadataDB, snapshotter: OverlaySnapshotter) -> None:
        self.content = content
        self.db = db
        self.snapshots = snapshotter

    # -- lookup --------------------------------------------------------------------------------
    def resolve(self, name: str) -> ImageRow:
        """Find an image by reference (tag or digest), full ID or unique ID prefix, as Docker does.

        Raises NotFound("No such image: ...") and InvalidArgument for malformed references."""
        row = self.lookup(name)
        if row is None:
            shown = name
            try:
                ref = parse_normalized(name)
                if ref.digest is None:
                    shown = ref.with_default_tag().familiar_string()
            except InvalidArgument:
                pass
            raise NotFound(f"No such image: {shown}")
        return row

    def lookup(self, name: str) -> ImageRow | None:
        if name.startswith("sha256:") or looks_like_image_id(name):
            hexpart = name.removeprefix("sha256:")
            if hexpart and all(c in "0123456789abcdef" for c in hexpart):
                full = "sha256:" + hexpart
                if len(hexpart) == 64 and self.db.image(full):
                    return self.db.image(full)
                ids = self.db.images_by_prefix(full)
                # A tag named like a prefix wins over the prefix, as in Docker.
                if not name.startswith("sha256:"):
                    try:
                        target = self.db.tag_target(str(parse_normalized(name).with_default_tag()))
                    except InvalidArgument:
                        target = None
                    if target:
                        return self.db.image(target)
                if len(ids) > 1:
                    raise InvalidArgument(f"multiple IDs found with provided prefix: {hexpart}")
                if ids:
                    return self.db.image(ids[0])
                if name.startswith("sha256:"):
                    return None
        ref = parse_normalized(name)
        if ref.digest is not None:
            target = self.db.digest_target(ref.name, ref.digest)
            if target is None:
                rows = self.db.read().execute(
                    "SELECT id FROM images WHERE manifest_digest=?", (ref.digest,)
                ).fetchall()
                target = rows[0]["id"] if rows else None
            return self.db.image(target) if target else None
        target = self.db.tag_target(str(ref.with_default_tag()))
        return self.db.image(target) if target else None

    def config_bytes(self, image_id: str) -> bytes:
        return self.content.read_bytes(image_id)

    def config(self, image_id: str) -> ImageConfig:
        return ImageConfig.from_dict(json.loads(self.config_bytes(image_id)))

    def manifest(self, row: ImageRow) -> Manifest:
        return Manifest.from_dict(json.loads(self.content.read_bytes(row.manifest_digest)))

    def layers(self, row: ImageRow) -> list[LayerBlob]:
        manifest = self.manifest(row)
        cfg = self.config(row.id)
        diff_ids = cfg.rootfs.diff_ids
        return [
            LayerBlob(d.digest, diff_id, d.media_type, d.size)
            for d, diff_id in zip(manifest.layers, diff_ids, strict=True)
        ]

    def top_snapshot(self, image_id: str) -> str | None:
        ids = chain_ids(self.config(image_id).rootfs.diff_ids)
        return ids[-1] if ids else None

    def put_bytes(self, data: bytes, lease: Lease) -> str:
        """Store a small blob under the lease (lease first, then commit: see :meth:`gc`)."""
        lease.add("content", sha256_digest(data))
        return self.content.put_bytes(data)

    # -- writing layers ------------------------------------------------------------------------
    def write_layer(self, produce: Callable[[BinaryIO], str], lease: Lease) -> LayerBlob:
        """Write a gzip-compressed layer blob; ``produce`` writes the uncompressed tar to the file
        object it is given and returns its diff_id."""
        with self.content.writer() as w:
            gz = gzip_writer(w)
            try:
                diff_id = produce(gz)
            finally:
                gz.close()
            digest = w.current_digest()
            lease.add("content", digest)
            size = w.size
            w.commit()
        self.db.record_layer_blob(digest, diff_id, mt.OCI_LAYER_GZIP, size)
        return LayerBlob(digest, diff_id, mt.OCI_LAYER_GZIP, size)

    def unpack(self, layers: list[LayerBlob], lease: Lease, created: list[str] | None = None) -> list[int]:
        """Make sure every layer chain is a committed snapshot; returns each layer's unpacked size.

        A layer whose tar does not hash to its diff_id raises DataLoss.  Names of snapshots this call
        created are appended to ``created`` so a caller can roll them back."""
        sizes: list[int] = []
        parent: str | None = None
        for layer, chain in zip(layers, chain_ids(l.diff_id for l in layers), strict=True):
            sizes.append(self.unpack_layer(layer, chain, parent, lease, created))
            parent = chain
        return sizes

    def unpack_layer(self, layer: LayerBlob, chain: str, parent: str | None, lease: Lease,
                     created: list[str] | None = None, source: BinaryIO | None = None) -> int:
        """Unpack one layer as committed snapshot ``chain`` on ``parent`` unless it already is one;
        returns its unpacked size.

        ``parent`` must be committed already, so layers go in order; a caller that unpacks layers as
        they arrive (pull) calls this from a worker thread for layer N while later blobs still
        download, with ``source`` reading the blob as it is written (default: the committed blob;
        not closed here).  DataLoss and ``created`` as for :meth:`unpack`."""
        size = self._unpacked_size(chain)
        if size is not None:
            return size
        lease.add("snapshot", chain)
        with self.content.open(layer.digest) if source is None else contextlib.nullcontext(source) as blob:
            reader, _ = open_layer_reader(blob)
            try:
                result = self.snapshots.apply(chain, parent, reader)
            except AlreadyExists:
                result = None
        if result is not None and result.diff_id != layer.diff_id:
            self.snapshots.remove(chain)
            raise DataLoss(
                f"layer {layer.digest}: content has diff ID {result.diff_id}, the image config says "
                f"{layer.diff_id}"
            )
        if result is not None:
            if created is not None:
                created.append(chain)
            size = result.size
        else:
            size = self.snapshots.usage(chain)
        with self.db.write() as conn:
            conn.execute("INSERT OR REPLACE INTO unpacked VALUES (?, ?)", (chain, size))
        return size

    def _unpacked_size(self, chain: str) -> int | None:
        row = self.db.read().execute("SELECT size FROM unpacked WHERE chain_id=?", (chain,)).fetchone()
        if row is None:
            return None
        try:
            self.snapshots.stat(chain)
        except NotFound:
            return None
        return int(row["size"])

    def layer_sizes(self, image_id: str) -> list[int]:
        sizes = []
        for chain in chain_ids(self.config(image_id).rootfs.diff_ids):
            size = self._unpacked_size(chain)
            sizes.append(size or 0)
        return sizes

    # -- writing images ------------------------------------------------------------------------
    def make_manifest(self, config: bytes, layers: list[LayerBlob], config_media_type: str = mt.OCI_CONFIG) -> bytes:
        m = Manifest(
            schema_version=2,
            media_type=mt.OCI_MANIFEST,
            config=Descriptor(media_type=config_media_type, digest=sha256_digest(config), size=len(config)),
            layers=[Descriptor(media_type=l.media_type, digest=l.digest, size=l.size) for l in layers],
        )
        return canonical_json(m.to_dict())

    def add_image(self, new: NewImage, lease: Lease, created: list[str] | None = None) -> tuple[str, list[TagChange]]:
        """Store config and manifest, unpack the layers, then record image and tags in one transaction.

        Returns the image ID and the tags that moved away from another image."""
        cfg = ImageConfig.from_dict(json.loads(new.config))
        if len(cfg.rootfs.diff_ids) != len(new.layers):
            raise DataLoss(
                f"image config lists {len(cfg.rootfs.diff_ids)} layers but {len(new.layers)} were provided"
            )
        for layer, diff_id in zip(new.layers, cfg.rootfs.diff_ids, strict=True):
            if layer.diff_id and layer.diff_id != diff_id:
                raise DataLoss(f"layer {layer.digest}: diff ID {layer.diff_id} does not match config {diff_id}")
            layer.diff_id = diff_id
        image_id = self.put_bytes(new.config, lease)
        manifest = new.manifest if new.manifest is not None else self.make_manifest(new.config, new.layers)
        manifest_digest = self.put_bytes(manifest, lease)
        sizes = self.unpack(new.layers, lease, created)
        now = time.time()
        moved: list[TagChange] = []
        with self.db.write() as conn:
            conn.execute(
                "INSERT INTO images (id, manifest_digest, manifest_media_type, size, created, added, parent, comment)"
                " VALUES (?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT(id) DO UPDATE SET"
                " manifest_digest=excluded.manifest_digest, manifest_media_type=excluded.manifest_media_type,"
                " size=excluded.size",
                (image_id, manifest_digest, new.manifest_media_type, sum(sizes), cfg.created or "", now,
                 new.parent, new.comment),
            )
            blobs = {image_id, manifest_digest, *(l.digest for l in new.layers)}
            conn.executemany("INSERT OR IGNORE INTO image_blobs VALUES (?, ?)", [(image_id, b) for b in blobs])
            for layer in new.layers:
                conn.execute(
                    "INSERT OR IGNORE INTO layer_blobs VALUES (?, ?, ?, ?)",
                    (layer.digest, layer.diff_id, layer.media_type, layer.size),
                )
            for name, digest in new.repo_digests:
                conn.execute("INSERT OR REPLACE INTO repo_digests VALUES (?, ?, ?)", (name, digest, image_id))
            for ref in new.tags:
                change = self._tag(conn, image_id, ref, now)
                if change:
                    moved.append(change)
        return image_id, moved

    def _tag(self, conn, image_id: str, ref: Reference, now: float) -> TagChange | None:
        if ref.digest is not None:
            raise InvalidArgument("refusing to create a tag with a digest reference")
        name = str(ref.with_default_tag())
        old = conn.execute("SELECT image_id FROM tags WHERE name=?", (name,)).fetchone()
        conn.execute("INSERT OR REPLACE INTO tags VALUES (?, ?, ?)", (name, image_id, now))
        if old and old["image_id"] != image_id:
            return TagChange(name, old["image_id"])
        return None

    def tag(self, image_id: str, ref: Reference) -> TagChange | None:
        with self.db.write() as conn:
            if not conn.execute("SELECT 1 FROM images WHERE id=?", (image_id,)).fetchone():
                raise NotFound(f"No such image: {image_id}")
            return self._tag(conn, image_id, ref, time.time())

    def untag(self, name: str) -> None:
        with self.db.write() as conn:
            conn.execute("DELETE FROM tags WHERE name=?", (name,))

    # -- deleting ------------------------------------------------------------------------------
    def containers_using(self, image_id: str) -> list[tuple[str, str]]:
        """(container id, state) of containers created from the image; empty before containers exist."""
        conn = self.db.read()
        has = conn.execute("SELECT 1 FROM sqlite_master WHERE type='table' AND name='containers'").fetchone()
        if not has:
            return []
        rows = conn.execute("SELECT id, state FROM containers WHERE image_id=?", (image_id,)).fetchall()
        return [(r["id"], r["state"]) for r in rows]

    def delete_image(self, image_id: str) -> list[str]:
        """Remove the image record (and its tags) and garbage-collect what nobody else uses.

        Returns the chain IDs of the snapshots removed, for Docker's "Deleted:" lines."""
        with self.db.write() as conn:
            if conn.execute("SELECT 1 FROM images WHERE parent=? AND id!=?", (image_id, image_id)).fetchone():
                conn.execute("UPDATE images SET parent='' WHERE parent=?", (image_id,))
            conn.execute("DELETE FROM tags WHERE image_id=?", (image_id,))
            conn.execute("DELETE FROM images WHERE id=?", (image_id,))
        return self.gc()

    def gc(self) -> list[str]:
        """Mark and sweep: delete blobs and snapshots no image, container or lease refers to.

        Every writer adds what it writes to a lease *before* committing it, and this walks the
        stored blobs and snapshots *before* reading the references, so anything committed before
        the walk is already protected when the references are read: a concurrent load never loses
        a blob to a concurrent rmi."""
        blobs = list(self.content.walk())
        infos = [i for i in self.snapshots.walk() if i.kind == "committed"]
        conn = self.db.read()
        used_blobs = {r["digest"] for r in conn.execute("SELECT DISTINCT digest FROM image_blobs")}
        used_blobs |= self.db.leased("content")
        used_chains: set[str] = set(self.db.leased("snapshot"))
        for row in conn.execute("SELECT id FROM images").fetchall():
            try:
                used_chains.update(chain_ids(self.config(row["id"]).rootfs.diff_ids))
            except NotFound:
                continue
        used_chains |= self._snapshots_in_use()
        parents = {i.name: i.parent for i in infos}

        def depth(name: str | None) -> int:
            n = 0
            while name:
                name = parents.get(name)
                n += 1
            return n

        removed: list[str] = []
        for info in sorted(infos, key=lambda i: -depth(i.name)):  # children before parents
            if info.name in used_chains:
                continue
            try:
                self.snapshots.remove(info.name)
            except DockyardError:  # has children or vanished: still in use or already gone
                continue
            removed.append(info.name)
            with self.db.write() as w:
                w.execute("DELETE FROM unpacked WHERE chain_id=?", (info.name,))
        for blob in blobs:
            if blob.digest in used_blobs:
                continue
            try:
                self.content.delete(blob.digest)
            except NotFound:
                pass
            with self.db.write() as w:
                w.execute("DELETE FROM layer_blobs WHERE blob_digest=?", (blob.digest,))
        return removed

    def _snapshots_in_use(self) -> set[str]:
        """Parents of active snapshots (containers' root filesystems) must stay."""
        used: set[str] = set()
        by_name = {i.name: i for i in self.snapshots.walk()}
        for info in by_name.values():
            if info.kind != "committed":
                parent = info.parent
                while parent:
                    used.add(parent)
                    parent = by_name[parent].parent if parent in by_name else None
        return used

    def rollback(self, created_snapshots: list[str], lease: Lease) -> None:
        """Undo a failed write: drop the snapshots it unpacked and the blobs it wrote that no image
        refers to, so the store is as it was before the call."""
        for name in reversed(created_snapshots):
            try:
                self.snapshots.remove(name)
            except DockyardError:
                pass
        conn = self.db.read()
        for digest in self.db.lease_resources(lease.id, "content"):
            if conn.execute("SELECT 1 FROM image_blobs WHERE digest=?", (digest,)).fetchone():
                continue
            try:
                self.content.delete(digest)
            except NotFound:
                pass
