# Two commands for a fresh machine: `make demo` and `make test`. Both set everything up first.
PYTHON ?= python3.11
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.parity-installed

.PHONY: setup demo test test-fast lint lock clean java strace postgres chromium jq

setup: $(STAMP) java

# The venv is rebuilt whenever the pinned set or the project's metadata changes.
$(STAMP): requirements.lock pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -c requirements.lock -e '.[dev]'
	# Pairtree (needed by ocfl-py) installs a top-level package named `tests`, which shadows this project's
	rm -rf "$$($(BIN)/python -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')/tests"
	touch $(STAMP)

# sklearn2pmml, pypmml and jpmml_evaluator need Java 17 (the warm converter refuses 24+).
java:
	@command -v java >/dev/null 2>&1 || { \
	  echo "Java not found: installing openjdk-17-jre-headless"; \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq openjdk-17-jre-headless; }

# The telemetry test watches a conversion's connect() calls with strace (tests/converters/test_telemetry.py).
strace:
	@command -v strace >/dev/null 2>&1 || { \
	  echo "strace not found: installing it"; \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq strace; }

# The load test (tests/deployments/test_sweep_load.py) starts a throwaway PostgreSQL cluster: Debian's server.
postgres:
	@command -v initdb >/dev/null 2>&1 || ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || { \
	  echo "PostgreSQL not found: installing postgresql"; \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql; }

# The HTML report test renders a bundle's report.html in headless Chromium (tests/archive/test_card_and_report.py).
chromium:
	@command -v chromium >/dev/null 2>&1 || { \
	  echo "chromium not found: installing it"; \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium; }

# The card's checks with standard tools (tests/archive/test_card_and_report.py) run its jq | sha256sum lines.
jq:
	@command -v jq >/dev/null 2>&1 || { \
	  echo "jq not found: installing it"; \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq jq; }

demo: setup
	$(BIN)/parity targets setup aarch64
	$(BIN)/parity demo

test: setup strace postgres chromium jq
	$(BIN)/parity targets setup aarch64
	$(BIN)/python -m pytest

test-fast: setup
	$(BIN)/python -m pytest -m "not slow and not prefect_server and not aarch64"

# mypy and the import contract read the parity.* namespace through tools/namespace_lint.py (see its docstring).
lint: setup
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/python tools/namespace_lint.py mypy
	$(BIN)/python tools/namespace_lint.py imports

lock:
	$(BIN)/python -m pip freeze --exclude-editable | grep -v -i '^py-spy' > requirements.lock

clean:
	rm -rf $(VENV) parity-registry parity-archive .lint
