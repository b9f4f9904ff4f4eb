"""``python -m dockyard``: the CLI (also how conmon's exit command and helper processes run it)."""

from dockyard.cli.main import main  # importing dockyard.cli puts off the first GC (cli.startup_gc)

main()
