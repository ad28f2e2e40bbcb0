# One task runner; the README names these targets.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
SECONDS ?= 10

.PHONY: demo install test lint typecheck unit bench bench-full clean
.PHONY: packaging-deps wheels wheels-arm64 deb test-deb test-arm64 test-arm64-smoke bench-mypyc

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip

# Command 1 of the README: the main job on embedded defaults, no servers.
demo: $(BIN)/python
	$(BIN)/pip install --quiet .
	$(BIN)/edge-agent demo --seconds $(SECONDS) --dir demo

install: $(BIN)/python
	$(BIN)/pip install --quiet -e '.[test]'

lint: install
	$(BIN)/ruff check .
	$(BIN)/ruff format --check edge_agent

typecheck: install
	$(BIN)/mypy

unit: install
	$(BIN)/pytest -q

# Command 2 of the README: install everything the tests need, then run them all.
test: install
	bash scripts/install-test-deps.sh
	$(BIN)/ruff check .
	$(BIN)/ruff format --check edge_agent
	$(BIN)/mypy
	$(BIN)/pytest -q

bench: install
	$(BIN)/pip install --quiet -e '.[bench]'
	$(BIN)/python -m bench --quick

bench-full: install
	$(BIN)/pip install --quiet -e '.[bench]'
	$(BIN)/python -m bench

# Release artifacts (docs/packaging.md); root on Debian. The arm64 targets run in
# ../shared/tools/arm64-env.sh's Debian 12 arm64 root file system under qemu.
packaging-deps: install
	bash scripts/install-packaging-deps.sh

# The wheel(s) with the build backend cibuildwheel uses, auditwheel show, then the
# whole suite against each wheel installed in a fresh venv.
wheels: packaging-deps
	bash scripts/build-wheels.sh

wheels-arm64: packaging-deps
	bash scripts/build-wheels.sh arm64

deb: packaging-deps
	bash scripts/build-deb.sh

test-deb: packaging-deps
	bash scripts/test-deb.sh

# The whole suite on aarch64 (~40 min); the smoke subset is what .ci/run runs.
test-arm64: install
	bash scripts/test-arm64.sh full

test-arm64-smoke: install
	bash scripts/test-arm64.sh smoke

bench-mypyc: packaging-deps
	$(BIN)/python scripts/build-mypyc-compare.py

clean:
	rm -rf $(VENV) demo build dist *.egg-info .pytest_cache .mypy_cache .ruff_cache
