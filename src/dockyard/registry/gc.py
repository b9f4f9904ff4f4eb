"""Online garbage collection: free blobs nothing references, clean up uploads of killed pushes.

Unlike distribution's ``garbage-collect`` (which wants the registry read-only), this runs while
clients push, from any process over the store, because of three rules:

1. **Grace period.**  A blob younger than ``gc.grace_period`` is never collected, nor is an
   untagged manifest younger than it (with ``delete_untagged``).  A push uploads blobs before
   its manifest; the grace period covers that gap, and a client that finds a blob already
   present (HEAD, mount) re-links it, which is then protected by rule 3.
2. **Mark from every manifest.**  Roots are all manifest revisions of all repositories (or, with
   ``delete_untagged``, the tagged ones plus what they keep alive: index children and
   referrers of kept manifests, to a fixed point).  Marked: each root's own blob, its config
   and layers, its index children.
3. **Tombstones, then a second look (the handshake with manifest PUT).**  Before deleting, GC
   writes a tombstone for every candidate, then lists the revisions again and un-marks anything
   a manifest pushed meanwhile references, then re-checks each blob's age, and only then
   deletes.  A manifest PUT, after writing its revision link, checks that no blob it references
   has a tombstone or is gone — if one does, it withdraws the revision and fails with
   MANIFEST_BLOB_UNKNOWN.  Either the PUT's revision is seen by the second look (the blob is
   kept) or the PUT sees the tombstone (the push fails cleanly): never a manifest pointing at
   a deleted blob.  The price is that a push racing the collection of a blob it re-uses can be
   refused; pushing again uploads the blob anew.

Uploads whose ``startedat`` is older than ``gc.upload_max_age`` are the remains of killed or
abandoned pushes and are deleted.  Layer links to blobs that are gone are removed.

Only one collection runs at a time per store: ``_gc/lock`` (with its start time) is taken for a
real run; a lock older than ``LOCK_STALE`` seconds is a crashed collector's and is broken.  A
dry run takes no lock, writes nothing, and reports what a real run would free.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from typing import Any

from dockyard.errors import FailedPrecondition, InvalidArgument, NotFound
from dockyard.oci.models import Index, Manifest, parse_manifest_or_index
from dockyard.registry.config import GCConfig
from dockyard.registry.storage.layout import Layout

__all__ = ["GCReport", "collect"]

LOCK = "_gc/lock"
LOCK_STALE = 6 * 3600
log = logging.getLogger("dockyard.registry.gc")


@dataclass
class GCReport:
    dry_run: bool
    repositories: int = 0
    manifests: int = 0
    blobs: int = 0
    marked: int = 0
    deleted_blobs: list[tuple[str, int]] = field(default_factory=list)    # (digest, size)
    kept_young: int = 0
    deleted_manifests: list[tuple[str, str]] = field(default_factory=list)  # (repository, digest)
    deleted_uploads: list[tuple[str, str, int]] = field(default_factory=list)  # (repository, id, size)
    removed_links: int = 0
    errors: list[str] = field(default_factory=list)

    @property
    def freed_bytes(self) -> int:
        return sum(size for _, size in self.deleted_blobs) + sum(s for _, _, s in self.deleted_uploads)

    def summary(self) -> str:
        verb = "would free" if self.dry_run else "freed"
        return (f"{self.repositories} repositories, {self.manifests} manifests, {self.blobs} blobs "
                f"({self.marked} in use); {verb} {len(self.deleted_blobs)} blobs, "
                f"{len(self.deleted_manifests)} untagged manifests, {len(self.deleted_uploads)} stale "
                f"uploads: {self.freed_bytes} bytes; {self.kept_young} unreferenced blobs within the "
                f"grace period kept")

    def to_dict(self) -> dict[str, Any]:
        return {
            "dry_run": self.dry_run, "repositories": self.repositories, "manifests": self.manifests,
            "blobs": self.blobs, "marked": self.marked, "freed_bytes": self.freed_bytes,
            "deleted_blobs": [{"digest": d, "size": s} for d, s in self.deleted_blobs],
            "deleted_manifests": [{"repository": r, "digest": d} for r, d in self.deleted_manifests],
            "deleted_uploads": [{"repository": r, "id": u, "size": s} for r, u, s in self.deleted_uploads],
            "kept_young": self.kept_young, "removed_links": self.removed_links, "errors": self.errors,
        }


class _Marker:
    """Marks blobs reachable from manifests, parsing each manifest once."""

    def __init__(self, layout: Layout, report: GCReport) -> None:
        self.layout = layout
        self.report = report
        self.marked: set[str] = set()
        self.parsed: dict[str, Manifest | Index | None] = {}

    async def parse(self, digest: str) -> Manifest | Index | None:
        if digest not in self.parsed:
            try:
                self.parsed[digest] = parse_manifest_or_index(await self.layout.read_manifest(digest))
            except (NotFound, InvalidArgument) as exc:
                self.report.errors.append(f"manifest {digest}: {exc}")
                self.parsed[digest] = None
        return self.parsed[digest]

    async def mark(self, digest: str) -> None:
        self.marked.add(digest)
        doc = await self.parse(digest)
        if isinstance(doc, Manifest):
            self.marked.add(doc.config.digest)
            self.marked.update(d.digest for d in doc.layers)
        elif isinstance(doc, Index):
            self.marked.update(d.digest for d in doc.manifests)


async def _roots(layout: Layout, marker: _Marker, repo: str, cfg: GCConfig, now: float,
                 report: GCReport, dry_run: bool) -> list[str]:
    """The manifests of ``repo`` that stay; with ``delete_untagged`` the rest are unlinked."""
    revisions = await layout.manifest_revisions(repo)
    report.manifests += len(revisions)
    if not cfg.delete_untagged:
        return revisions
    keep: set[str] = set()
    try:
        tags = await layout.list_tags(repo)
    except NotFound:                  # only uploads so far
        tags = []
    for tag in tags:
        try:
            keep.add(await layout.resolve_tag(repo, tag))
        except NotFound:
            continue
    for digest in revisions:          # young untagged manifests may be an index's children mid-push
        try:
            info = await layout.storage.stat(layout.revision_link_path(repo, digest))
            if info.modified > now - cfg.grace_period:
                keep.add(digest)
        except NotFound:
            continue
    changed = True
    while changed:                    # fixed point: children of kept indexes, referrers of kept
        changed = False
        for digest in revisions:
            if digest in keep:
                doc = await marker.parse(digest)
                if isinstance(doc, Index):
                    for child in doc.manifests:
                        if child.digest not in keep:
                            keep.add(child.digest)
                            changed = True
            else:
                doc = await marker.parse(digest)
                if doc is not None and doc.subject is not None and doc.subject.digest in keep:
                    keep.add(digest)
                    changed = True
    for digest in revisions:
        if digest in keep:
            continue
        report.deleted_manifests.append((repo, digest))
        if not dry_run:
            doc = await marker.parse(digest)
            if doc is not None and doc.subject is not None:
                await layout.remove_referrer(repo, doc.subject.digest, digest)
            try:
                await layout.unlink_manifest(repo, digest)
            except NotFound:
                pass
    return [d for d in revisions if d in keep]


async def _clean_uploads(layout: Layout, repo: str, cfg: GCConfig, now: float, report: GCReport,
                         dry_run: bool) -> None:
    for upload_id in await layout.list_uploads(repo):
        try:
            state = await layout.upload_state(repo, upload_id)
        except Exception:             # no startedat: a broken upload directory
            state = None
        if state is not None and now - state.started <= cfg.upload_max_age:
            continue
        report.deleted_uploads.append((repo, upload_id, state.size if state else 0))
        if not dry_run:
            await layout.delete_upload(repo, upload_id)


async def _take_lock(layout: Layout, now: float) -> None:
    try:
        held = float((await layout.storage.read_bytes(LOCK)).decode() or 0)
    except (NotFound, ValueError, UnicodeDecodeError):
        held = 0.0
    if held and now - held < LOCK_STALE:
        raise FailedPrecondition("another garbage collection is running on this store "
                                 f"(started {int(now - held)}s ago; lock {LOCK})")
    await layout.storage.put_bytes(LOCK, repr(now).encode())


async def collect(layout: Layout, cfg: GCConfig, *, dry_run: bool = False, now: float | None = None
                  ) -> GCReport:
    """Run one collection (see the module docstring); returns what was (or would be) freed."""
    now = time.time() if now is None else now
    report = GCReport(dry_run=dry_run)
    if not dry_run:
        await _take_lock(layout, now)
    try:
        marker = _Marker(layout, report)
        repos = await layout.repositories(with_uploads=True)
        report.repositories = len(repos)
        for repo in repos:
            for digest in await _roots(layout, marker, repo, cfg, now, report, dry_run):
                await marker.mark(digest)
            await _clean_uploads(layout, repo, cfg, now, report, dry_run)
        all_blobs: dict[str, int] = {}
        candidates: list[str] = []
        async for digest, info in layout.iter_blobs():
            all_blobs[digest] = info.size
            if digest in marker.marked:
                continue
            if info.modified > now - cfg.grace_period:
                report.kept_young += 1
            else:
                candidates.append(digest)
        report.blobs = len(all_blobs)
        report.marked = sum(1 for d in all_blobs if d in marker.marked)
        if dry_run:
            report.deleted_blobs = [(d, all_blobs[d]) for d in candidates]
            return report
        await _sweep(layout, marker, cfg, now, report, candidates, all_blobs)
        await _remove_links(layout, report, set(all_blobs) - {d for d, _ in report.deleted_blobs})
        return report
    finally:
        if not dry_run:
            try:
                await layout.storage.delete(LOCK)
            except NotFound:
                pass


async def _sweep(layout: Layout, marker: _Marker, cfg: GCConfig, now: float, report: GCReport,
                 candidates: list[str], sizes: dict[str, int]) -> None:
    for digest in candidates:
        await layout.add_tombstone(digest)
    try:
        # the second look: manifests pushed since the first pass keep what they reference
        for repo in await layout.repositories():
            for digest in await layout.manifest_revisions(repo):
                if digest not in marker.parsed:
                    await marker.mark(digest)
        for digest in candidates:
            if digest in marker.marked:
                continue
            try:
                info = await layout.blob_info(digest)
            except NotFound:
                continue
            if info.modified > now - cfg.grace_period:   # re-uploaded meanwhile
                report.kept_young += 1
                continue
            try:
                await layout.delete_blob(digest)
            except NotFound:
                continue
            report.deleted_blobs.append((digest, sizes[digest]))
            log.debug("gc: deleted %s (%d bytes)", digest, sizes[digest])
    finally:
        for digest in candidates:
            await layout.remove_tombstone(digest)


async def _remove_links(layout: Layout, report: GCReport, present: set[str]) -> None:
    """Drop layer links whose blob no longer exists (swept now, or lost earlier).

    ``present`` was listed before the sweep; a blob uploaded since then is not in it, so the
    store is asked again before a link goes.
    """
    for repo in await layout.repositories():
        for digest in await layout.layer_links(repo):
            if digest in present or await layout.has_blob(digest):
                continue
            try:
                await layout.unlink_layer(repo, digest)
                report.removed_links += 1
            except NotFound:
                continue
