# One-command tooling. Every target installs what it needs into .venv first.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin

.PHONY: install demo check test bench bench-peers clean

$(BIN)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $@

install: $(BIN)/.installed

## The main job on the embedded default (SQLite, no services needed).
demo: install
	$(BIN)/tasktrail demo

## Lint and type-check.
check: install
	$(BIN)/ruff check src tests benchmarks
	$(BIN)/ruff format --check src tests benchmarks
	$(BIN)/mypy

## The whole test suite (needs PostgreSQL; see README), after the checks.
test: check
	$(BIN)/python -m pytest $(PYTEST_ARGS)

## Benchmarks: prints tables; never run by the test suite.
bench: install
	$(BIN)/python -m benchmarks

## The dashboard's pages over a big PostgreSQL database (see benchmarks/README.md).
.PHONY: bench-dashboard
bench-dashboard: install
	$(BIN)/python -m benchmarks.dashboard

## 1,000 SSE subscribers of one server: delivery latency, memory, on SQLite and PostgreSQL.
.PHONY: bench-sse
bench-sse: install
	$(BIN)/python -m benchmarks.sse_fanout --database sqlite
	$(BIN)/python -m benchmarks.sse_fanout --database postgresql

## Against Procrastinate, and at scale, in a virtualenv of their own (see benchmarks/README.md).
PEERS := benchmarks/.venv-peers
$(PEERS)/.installed: pyproject.toml
	$(PYTHON) -m venv $(PEERS)
	$(PEERS)/bin/python -m pip install --quiet --upgrade pip
	$(PEERS)/bin/python -m pip install --quiet -e '.[postgres,celery]' procrastinate matplotlib py-spy pyinstrument
	touch $@

bench-peers: $(PEERS)/.installed
	$(PEERS)/bin/python -m benchmarks.peers

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache .hypothesis tasktrail.db*
