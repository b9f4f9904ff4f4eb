"""Snapshots: layers unpacked once, stacked into container root filesystems.

A snapshotter manages *snapshots*: directories that hold either an unpacked image layer or the
writable changes of a container, arranged in parent chains.  It never mounts anything itself; every
call that yields a filesystem returns :class:`~dockyard.snapshots.mount.Mount` values that the caller
mounts (``mount_all``) and unmounts (``unmount``).  The model and the vocabulary are containerd's
(``core/snapshots/snapshotter.go``):

- a **committed** snapshot has a *name* and is immutable; it is a layer (or a chain of them, through
  its parent).  dockyard names committed layer snapshots by their **chain ID**
  (``sha256:<64 hex>``, OCI image spec), so the same layer on the same parents is unpacked once no
  matter how many images share it.
- an **active** snapshot has a *key* and is writable; it is a container's root filesystem, or a
  build step's.  ``commit`` turns it into a committed snapshot under a name.
- a **view** is a read-only active snapshot (``docker export`` of an image, ``docker cp`` from one).
- keys and names share one namespace; a *parent* is always a committed name.

Importing a layer
-----------------

To unpack image ``L1 <- L2 <- L3`` (chain IDs ``C1``, ``C2``, ``C3``)::

    for chain_id, parent, blob in layers:        # parent of the first layer is None
        if exists(chain_id): continue            # snapshotter.stat(chain_id) does not raise NotFound
        reader, _ = open_layer_reader(blob)      # gzip / zstd / plain, detected by magic bytes
        try:
            result = snapshotter.apply(chain_id, parent, reader)
        except AlreadyExists:
            continue                             # another process unpacked it meanwhile: fine
        if result.diff_id != expected_diff_id:   # from the image config's rootfs.diff_ids
            snapshotter.remove(chain_id)
            raise DataLoss(...)

``apply`` is the fast path of containerd's ``Prepare(tmpkey, parent)`` + apply-diff + ``Commit``: the
layer is unpacked into a private temporary directory and becomes visible atomically under its name
only when it is complete, so a crash or a corrupt tar never leaves a half layer behind, and two
processes unpacking the same layer race safely (one wins, the other gets ``AlreadyExists``).  The
three calls are available too, for layers produced by running something (``docker build``)::

    mounts = snapshotter.prepare("build-step-7", parent=C3)
    mount_all(mounts, target)  ...run the step...  unmount(target)
    snapshotter.commit(new_chain_id, "build-step-7")   # computed from the diff below
    # or first:  diff_id = snapshotter.diff("build-step-7", out)   -> an OCI layer tar

Running a container
-------------------

::

    mounts = snapshotter.prepare(container_id, parent=C3)   # new empty upper dir on C3's chain
    mount_all(mounts, bundle / "rootfs")                    # overlay: lowerdir=C3:C2:C1, upperdir
    ... runc runs the container; its writes land in the active snapshot's upper dir ...
    unmount(bundle / "rootfs")
    snapshotter.diff(container_id, out)     # docker commit / docker diff: whiteouts become .wh.*
    snapshotter.remove(container_id)        # docker rm

``remove`` of a committed snapshot that still has children (layers above it, containers on it) fails
with ``FailedPrecondition``: images are removed top-down.  Garbage collection (which layers no image
references) is the image store's business, not the snapshotter's.

Errors: ``NotFound`` (no such key/name/parent), ``AlreadyExists`` (key or name taken),
``FailedPrecondition`` (wrong kind: committing a committed snapshot, a parent that is not committed,
mounts of a committed snapshot, removing a snapshot with children), ``InvalidArgument`` and
``DataLoss`` from the tar application (hostile or corrupt layers).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, BinaryIO, Literal, Protocol

from dockyard.snapshots.mount import Mount

if TYPE_CHECKING:
    from dockyard.snapshots.tarfs import ApplyResult


def __getattr__(name: str) -> object:
    # ApplyResult lives in tarfs (tarfile and friends), which only layer work needs to import.
    if name == "ApplyResult":
        from dockyard.snapshots.tarfs import ApplyResult

        return ApplyResult
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


Kind = Literal["active", "committed", "view"]


@dataclass(frozen=True)
class Info:
    """What a snapshotter knows about one snapshot.

    ``size`` is the number of file bytes unpacked by ``apply`` (or measured at ``commit``);
    None for active snapshots and views (use ``usage`` for the live figure).
    """

    name: str
    kind: Kind
    parent: str | None
    created: datetime
    size: int | None = None


class Snapshotter(Protocol):
    """Layer and container filesystems; see the module docstring for the lifecycle walk-through.

    key = active (writable) snapshot, name = committed snapshot, parent = a committed name.
    Every method may be called from any number of threads and processes at once.
    """

    def prepare(self, key: str, parent: str | None) -> list[Mount]:
        """Create active snapshot ``key`` on ``parent`` and return how to mount it read-write.

        AlreadyExists if ``key`` is taken; NotFound / FailedPrecondition for a missing or
        uncommitted parent.
        """
        ...

    def view(self, key: str, parent: str | None) -> list[Mount]:
        """Like :meth:`prepare`, but the mounts are read-only (no upper dir); removed with remove()."""
        ...

    def mounts(self, key: str, *, volatile: bool = False) -> list[Mount]:
        """The mounts of an active snapshot or view again.  FailedPrecondition for committed ones.

        ``volatile``: the writes will be thrown away (``run --rm``), so the filesystem may skip
        syncing them."""
        ...

    def commit(self, name: str, key: str) -> None:
        """Turn active snapshot ``key`` into committed snapshot ``name``; ``key`` ceases to exist.

        The caller must have unmounted it.  NotFound, FailedPrecondition (not active),
        AlreadyExists (``name`` taken).
        """
        ...

    def diff(self, key: str, out: BinaryIO) -> str:
        """Write the changes of ``key`` relative to its parent as an uncompressed OCI layer tar to
        ``out`` (not closed); returns its diff ID.  Works on active and committed snapshots."""
        ...

    def remove(self, key: str) -> None:
        """Remove a snapshot and its files.  NotFound; FailedPrecondition if it has children."""
        ...

    def stat(self, key: str) -> Info:
        """Describe a snapshot by key or name.  NotFound."""
        ...

    def walk(self) -> Iterator[Info]:
        """Every snapshot (a consistent listing taken at the call)."""
        ...

    def usage(self, key: str) -> int:
        """Disk bytes used by the snapshot's own directory (not its parents).  NotFound."""
        ...

    def apply(self, name: str, parent: str | None, stream: BinaryIO) -> ApplyResult:
        """Unpack the uncompressed layer tar ``stream`` as committed snapshot ``name`` on ``parent``.

        Atomic: ``name`` becomes visible complete or not at all.  AlreadyExists if ``name`` exists
        (checked before and after unpacking; the stream is then not drained); DataLoss and
        InvalidArgument from the tar.
        """
        ...


__all__ = ["ApplyResult", "Info", "Kind", "Mount", "Snapshotter"]
