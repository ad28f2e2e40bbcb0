# One task runner; the README names these targets.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
SECONDS ?= 10

.PHONY: demo install test lint typecheck unit bench bench-full clean

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

clean:
	rm -rf $(VENV) demo build dist *.egg-info .pytest_cache .mypy_cache .ruff_cache
