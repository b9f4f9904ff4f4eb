"""The ``dockyard`` command line (click; the commands are in this package's modules).

Importing this package puts off the process's first garbage collection (:func:`startup_gc`), so that
it already applies to the imports of click and of the command -- the console script imports
``dockyard.cli.main`` first thing."""

from __future__ import annotations

#: Net allocations before the first garbage collection of a command process (see startup_gc).
STARTUP_GC_THRESHOLD = 100_000


def startup_gc(defaults: tuple[int, ...] | None = None) -> None:
    """Put off this process's first garbage collection; Python's thresholds come back with it.

    Starting a command leaves some 30,000 new objects alive (modules, classes, functions: nearly
    none of them garbage); with Python's default threshold (700) that meant ~40 collections, 15-30
    ms of a ``run --rm``, each walking a growing heap to free nothing.  Now the first collection
    waits for STARTUP_GC_THRESHOLD net allocations, which most commands never reach; from it on,
    ``defaults`` (Python's own unless given) apply again, so servers, builds and other long runs
    collect as before.
    """
    import gc

    defaults = tuple(defaults or gc.get_threshold())
    gc.set_threshold(STARTUP_GC_THRESHOLD, *defaults[1:])
    restored = False

    def restore(phase: str, info: dict) -> None:
        nonlocal restored
        if not restored:
            restored = True
            gc.set_threshold(*defaults)

    gc.callbacks.append(restore)


startup_gc()
