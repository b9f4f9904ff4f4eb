"""``python -m dockyard``: the CLI (also how conmon's exit command and helper processes run it)."""

import gc

_gc_defaults = gc.get_threshold()
gc.set_threshold(100_000, *_gc_defaults[1:])  # already for the imports below; see cli.main.startup_gc

from dockyard.cli.main import main  # noqa: E402

main(gc_defaults=_gc_defaults)
