# The two commands a new user runs (see README.md).
VENV := .venv
PYTEST_ARGS ?=

.PHONY: setup demo test unit bench clean

setup:
	@bash scripts/setup.sh

demo: setup
	@bash scripts/demo.sh

test: setup
	$(VENV)/bin/ruff check src tests bench --select F,E9
	$(VENV)/bin/python -m pytest $(PYTEST_ARGS)

unit: setup
	$(VENV)/bin/python -m pytest tests/unit $(PYTEST_ARGS)

bench: setup
	@for b in bench/*.py; do $(VENV)/bin/python $$b; done
