# Tandem: `make run` sets up and runs the embedded default; `make test` sets up and runs every test tier.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
PIP := $(VENV)/bin/pip
# The CPU build of torch; a bare `torch` requirement would pull a multi-GB CUDA build.
TORCH_VERSION ?= 2.13.0
TEST_DATABASE_URL ?= postgres://postgres@127.0.0.1:5432/tandem
TEST_BROKER_URL ?= redis://127.0.0.1:6379/15
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)

.PHONY: run test setup lint test-unit test-integration test-browser chromium bench clean

run: setup
	./scripts/run_embedded.sh

test: setup chromium lint test-unit test-integration test-browser

setup: $(VENV)/.installed node_modules/.package-lock.json

$(VENV)/.installed: pyproject.toml
	[ -x $(PY) ] || $(PYTHON) -m venv $(VENV)
	$(PIP) install -q --upgrade pip
	$(PIP) install -q torch==$(TORCH_VERSION)
	$(PIP) install -q -e '.[dev]'
	touch $@

node_modules/.package-lock.json: package.json package-lock.json
	npm ci --no-audit --no-fund

chromium:
	@command -v chromium >/dev/null || ($(SUDO) apt-get update -q && $(SUDO) apt-get install -y -q chromium)

# Style (ruff) and architecture: import-linter's contracts in pyproject.toml (no import cycle,
# layers inside every feature, apps reaching each other only through services and selectors).
lint: setup
	$(VENV)/bin/ruff check .
	$(VENV)/bin/lint-imports

# Unit tier: SQLite, no servers, tasks called directly.
test-unit: setup
	$(PY) -m pytest -m "not integration and not browser"

# Integration tier: PostgreSQL, Redis and a real Celery worker process.
test-integration: setup
	DATABASE_URL=$(TEST_DATABASE_URL) CELERY_BROKER_URL=$(TEST_BROKER_URL) $(PY) -m pytest -m integration

# Browser tier: Playwright driving Debian's chromium against a live server on PostgreSQL.
test-browser: setup chromium
	DATABASE_URL=$(TEST_DATABASE_URL) CELERY_BROKER_URL=$(TEST_BROKER_URL) $(PY) -m pytest -m browser

bench: setup
	$(PY) bench/bench_sampling.py

clean:
	rm -rf var staticfiles .pytest_cache
