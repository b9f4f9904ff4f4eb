"""The build cache: which image a build step made, so an unchanged step is not run again.

A step's cache key is the SHA-256 of what decides its result (:func:`cache_key`):

- the parent image ID (the image the step runs on; it covers ENV, WORKDIR, USER, SHELL, ...);
- the instruction as expanded (``RUN /bin/sh -c make``, ``COPY --chown=1 src /app``);
- the build args the step sees (RUN gets them in its environment);
- for COPY/ADD the digest of the sources (names, types, modes, link targets, contents: see
  :meth:`dockyard.build.context.BuildContext.digest`), and for ``--from`` the source image ID;
- for ADD of a URL, the checksum or the downloaded content's digest.

The cache is the ``build_cache`` table of the metadata DB (``key -> image_id``), so every dockyard
process shares it; the images themselves are ordinary untagged images, parent-linked as Docker's
classic builder makes them, which ``dockyard images`` hides (``-a`` shows them).  A hit is used
only while its image still exists (``rmi`` or ``image prune`` may have removed it).

``builder prune`` (:func:`prune`) removes entries: without ``all`` only the dangling ones (images
that no tagged image is built on), with ``all`` every one; ``until`` keeps entries used more
recently.  Then the images only the cache held go too: untagged, no repository digest, no
container, no remaining cache entry (an image built on one loses its Parent link, as after rmi);
so do builder-made images no entry refers to any more (:func:`_orphans`).
"""

from __future__ import annotations

import hashlib
import json
import time
from dataclasses import dataclass, field

from dockyard.errors import DockyardError
from dockyard.metadata.db import MetadataDB


def cache_key(*parts: object) -> str:
    """A stable digest of JSON-able parts (dicts are key-sorted)."""
    raw = json.dumps(parts, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return "sha256:" + hashlib.sha256(raw.encode("utf-8", "surrogateescape")).hexdigest()


@dataclass
class CachePruneReport:
    deleted: list[str] = field(default_factory=list)   # cache entry IDs (short keys)
    images: list[str] = field(default_factory=list)    # image IDs removed with them
    reclaimed: int = 0


class BuildCache:
    def __init__(self, db: MetadataDB) -> None:
        self.db = db

    def get(self, key: str) -> str | None:
        """The image a step with this key made, if it still exists.  Record the use with
        :meth:`touch` (once per build: one write transaction instead of one per step)."""
        row = self.db.read().execute("SELECT image_id FROM build_cache WHERE key=?", (key,)).fetchone()
        if row is None:
            return None
        image_id = row["image_id"]
        if self.db.image(image_id) is None:
            with self.db.write() as conn:
                conn.execute("DELETE FROM build_cache WHERE key=?", (key,))
            return None
        return image_id

    def touch(self, keys: list[str]) -> None:
        if keys:
            now = time.time()
            with self.db.write() as conn:
                conn.executemany("UPDATE build_cache SET last_used=? WHERE key=?", [(now, k) for k in keys])

    def put(self, key: str, image_id: str, parent: str, created_by: str) -> None:
        now = time.time()
        with self.db.write() as conn:
            conn.execute("INSERT OR REPLACE INTO build_cache VALUES (?, ?, ?, ?, ?, ?)",
                         (key, image_id, parent, created_by, now, now))

    def image_ids(self) -> set[str]:
        """Images the cache refers to (``dockyard images`` hides the untagged ones)."""
        return {r["image_id"] for r in self.db.read().execute("SELECT DISTINCT image_id FROM build_cache")}

    def entries(self) -> list[dict]:
        rows = self.db.read().execute("SELECT * FROM build_cache ORDER BY last_used").fetchall()
        return [dict(r) for r in rows]


def cached_image_ids(db: MetadataDB) -> set[str]:
    """The images the build cache refers to; empty for a data root without the table yet."""
    import sqlite3

    try:
        return BuildCache(db).image_ids()
    except sqlite3.OperationalError:  # a database without the table yet: nothing is cached
        return set()


def prune(store, *, all_: bool = False, until: float | None = None) -> CachePruneReport:
    """``docker builder prune``: remove cache entries and the images only they held.

    ``store`` is the :class:`~dockyard.images.store.ImageStore`.  Images used by a container, tagged
    or with children outside the pruned set stay (their entries still go with ``all_``)."""
    cache = BuildCache(store.db)
    conn = store.db.read()
    before = _usage(store)
    kept_by_tags: set[str] = set()
    if not all_:
        parents = {r["id"]: r["parent"] for r in conn.execute("SELECT id, parent FROM images")}
        for (image_id,) in conn.execute("SELECT DISTINCT image_id FROM tags").fetchall():
            seen = 0
            while image_id and image_id not in kept_by_tags and seen < 10000:
                kept_by_tags.add(image_id)
                image_id = parents.get(image_id, "")
                seen += 1
    report = CachePruneReport()
    doomed: list[dict] = []
    for e in cache.entries():
        if until is not None and e["last_used"] >= until:
            continue
        if not all_ and e["image_id"] in kept_by_tags:
            continue
        doomed.append(e)
    orphans = _orphans(store, cache.image_ids(), kept_by_tags)
    if not doomed and not orphans:
        return report
    with store.db.write() as w:
        w.executemany("DELETE FROM build_cache WHERE key=?", [(e["key"],) for e in doomed])
    report.deleted = [e["key"].removeprefix("sha256:")[:25] for e in doomed]
    still_cached = cache.image_ids()
    # Children first (a child's parent link is cleared when its parent goes, but deleting from the
    # top keeps every image's Parent meaningful until it is removed itself).
    parents = {r["id"]: r["parent"] for r in conn.execute("SELECT id, parent FROM images")}

    def depth(image_id: str) -> int:
        n = 0
        while image_id in parents and n < 10000:
            image_id = parents[image_id]
            n += 1
        return n

    for image_id in sorted(({e["image_id"] for e in doomed} | orphans) - still_cached, key=depth, reverse=True):
        if not _only_cache_holds(store, image_id):
            continue
        try:
            store.delete_image(image_id)
        except DockyardError:
            continue
        report.images.append(image_id)
    report.reclaimed = max(0, before - _usage(store))
    return report


def _orphans(store, cached: set[str], keep: set[str]) -> set[str]:
    """Untagged images the builder made that no cache entry refers to any more (a ``--no-cache``
    build replaced the entry, an entry was pruned while its image had children): what the build
    history's last entry says, ``buildkit.dockerfile.v0``, marks them."""
    out: set[str] = set()
    conn = store.db.read()
    tagged = {r["image_id"] for r in conn.execute("SELECT DISTINCT image_id FROM tags")}
    for (image_id,) in conn.execute("SELECT id FROM images").fetchall():
        if image_id in cached or image_id in tagged or image_id in keep:
            continue
        try:
            history = json.loads(store.config_bytes(image_id)).get("history") or []
        except (DockyardError, ValueError):
            continue
        if history and history[-1].get("comment") == "buildkit.dockerfile.v0":
            out.add(image_id)
    return out


def _only_cache_holds(store, image_id: str) -> bool:
    conn = store.db.read()
    if conn.execute("SELECT 1 FROM images WHERE id=?", (image_id,)).fetchone() is None:
        return False
    if conn.execute("SELECT 1 FROM tags WHERE image_id=?", (image_id,)).fetchone():
        return False
    if conn.execute("SELECT 1 FROM repo_digests WHERE image_id=?", (image_id,)).fetchone():
        return False
    return not store.containers_using(image_id)


def _usage(store) -> int:
    total = sum(b.size for b in store.content.walk())
    total += sum(int(r["size"]) for r in store.db.read().execute("SELECT size FROM unpacked"))
    return total
