# `make run` serves with the embedded defaults; `make test` runs the whole suite.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
CONFIG ?= mailstead.toml
# Seconds per target of `make fuzz` (fuzz/README.md).
FUZZ_SECONDS ?= 600

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
	$(BIN)/ruff check src tests bench fuzz
	$(BIN)/ruff format --check src tests bench fuzz

typecheck: $(BIN)/mailstead
	$(BIN)/mypy

unit: $(BIN)/mailstead
	$(BIN)/pytest

# Every atheris target for 10 s, from a temporary copy of its seed corpus.
fuzz-smoke: $(BIN)/mailstead
	$(BIN)/python -m fuzz.run --seconds 10

# Long runs; inputs that add coverage are merged into fuzz/corpus.
fuzz: $(BIN)/mailstead
	$(BIN)/python -m fuzz.run --seconds $(FUZZ_SECONDS) --jobs 2 --grow-corpus

test: preflight lint typecheck fuzz-smoke unit

clean:
	rm -rf $(VENV) build *.egg-info src/*.egg-info .pytest_cache .mypy_cache .ruff_cache
