# `make run` serves with the embedded defaults; `make test` runs the whole suite.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
CONFIG ?= mailstead.toml

.PHONY: run test preflight lint typecheck unit fuzz-smoke fuzz clean

$(BIN)/mailstead: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[test]'
	touch $@

$(CONFIG): | $(BIN)/mailstead
	$(BIN)/mailstead --config $(CONFIG) init

run: $(BIN)/mailstead $(CONFIG)
	$(BIN)/mailstead --config $(CONFIG) serve

# Every external program the suite drives is there, with the features it uses.
preflight: $(BIN)/mailstead
	$(BIN)/python -m tests.preflight

lint: $(BIN)/mailstead
	$(BIN)/ruff check src tests bench
	$(BIN)/ruff format --check src tests bench

typecheck: $(BIN)/mailstead
	$(BIN)/mypy

unit: $(BIN)/mailstead
	$(BIN)/pytest

test: preflight lint typecheck unit

clean:
	rm -rf $(VENV) build *.egg-info src/*.egg-info .pytest_cache .mypy_cache .ruff_cache
