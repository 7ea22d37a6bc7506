# Plait — two commands: `make dev` (set up and start Plait) and `make test` (set up and test).
SHELL := /bin/bash
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
BIN := $(VENV)/bin
export PLAIT_HOME ?= $(CURDIR)/.plait-dev
# Test files run in this many processes (most tests wait on subprocesses, servers and
# brokers, so more processes than cores still shortens the run).
TEST_WORKERS ?= 3

.PHONY: setup dev demo test test-fast lint format bench bench-peers clean

setup: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --disable-pip-version-check --upgrade pip
	$(PY) -m pip install -q --disable-pip-version-check 'torch==2.13.0'
	$(PY) -m pip install -q --disable-pip-version-check -e '.[dev,server,postgres,integrations,ai]' -e examples/plugins/plait-example
	@touch $@

## dev: set up, then start `plait serve` on 127.0.0.1:8080 with the examples deployed
dev: setup ui
	@echo "Plait home: $(PLAIT_HOME)"
	$(BIN)/plait validate examples/*.yaml examples/ai/*.yaml
	@echo "Starting plait serve on http://127.0.0.1:8080 (API docs at /docs; Ctrl-C stops it)."
	@echo "First start: it asks for the first admin, or set PLAIT_ADMIN_USER and PLAIT_ADMIN_PASSWORD."
	@echo "Then: $(BIN)/plait login --server http://127.0.0.1:8080"
	PLAIT_EXAMPLES=$(CURDIR)/examples PLAIT_DOC_DIRS=$(CURDIR)/examples/ai/samples \
	  $(BIN)/plait serve --host 127.0.0.1 --port 8080 --deploy examples --deploy examples/ai

## demo: run the bundled example once in the terminal, no server
demo: setup
	$(BIN)/plait run examples/hello.yaml -i name=developer --results-dir $(PLAIT_HOME)/results

## test: set up, lint, type-check, check layers, then run every test with coverage
test: setup lint ui-test
	$(PY) -m pytest -q -p no:cacheprovider -n $(TEST_WORKERS) --dist loadfile --cov=plait --cov-report=term:skip-covered $(PYTEST_ARGS)

test-fast: setup
	$(PY) -m pytest -q -x tests/unit

lint: setup
	$(BIN)/ruff check src tests benchmarks
	$(BIN)/ruff format --check src tests benchmarks
	$(BIN)/mypy
	$(BIN)/lint-imports

format: setup
	$(BIN)/ruff format src tests benchmarks
	$(BIN)/ruff check --fix src tests benchmarks

## bench: performance measurements with a baseline measured in the same run
##        (engine: benchmarks/run.py; server under 50 clients: benchmarks/server.py;
##         worker processes on PostgreSQL: benchmarks/cluster.py;
##         offline ai.classify on the CPU: benchmarks/ai.py)
bench: setup
	$(PY) benchmarks/run.py
	$(PY) benchmarks/server.py $(BENCH_SERVER_ARGS)
	$(PY) benchmarks/cluster.py $(BENCH_CLUSTER_ARGS)
	$(PY) benchmarks/ai.py $(BENCH_AI_ARGS)

## bench-peers: Plait beside Prefect, DBOS, Airflow, procrastinate and Celery, and this
##              machine's floor (peers in benchmarks/peers/.venvs; about an hour;
##              BENCH_PEERS_ARGS="--quick" for a smoke run, see --help)
bench-peers: setup
	$(PY) benchmarks/peers/run.py $(BENCH_PEERS_ARGS)

clean:
	rm -rf $(VENV) .plait-dev .pytest_cache .mypy_cache .ruff_cache .coverage* htmlcov

## ui: build the web UI into src/plait/server/static when web/ sources are newer (needs Node 20)
UI_SOURCES := $(shell find web/src web/index.html web/public web/package.json web/package-lock.json web/vite.config.ts web/tsconfig.json -type f 2>/dev/null)
UI_BUILT := src/plait/server/static/index.html

.PHONY: ui ui-test
ui: $(UI_BUILT)

$(UI_BUILT): $(UI_SOURCES)
	cd web && npm ci --no-audit --no-fund && npm run build
	@touch $@

## ui-test: the UI's unit tests (Vitest)
ui-test:
	@test -d web/node_modules || (cd web && npm ci --no-audit --no-fund)
	cd web && npx vitest run
