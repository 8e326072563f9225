# `make run` serves with the embedded defaults; `make test` runs the whole suite
# (`make unit`: everything but tests/e2e, under coverage; `make e2e`: real
# server, real clients).
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
CONFIG ?= mailstead.toml
# Seconds per target of `make fuzz` (fuzz/README.md).
FUZZ_SECONDS ?= 600
# `make unit` fails when the unit tests cover less of src/mailstead/proto/
# (statements and branches, as coverage.py counts them) than this percentage.
# Measured 97.1% on 2026-12-07; raise it when tests raise the figure (README).
PROTO_COVERAGE_FLOOR ?= 96
PROTO_COVERAGE := --include='src/mailstead/proto/*' --fail-under=$(PROTO_COVERAGE_FLOOR)

.PHONY: run test preflight lint typecheck unit e2e fuzz-smoke fuzz clean

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

# Coverage settings live in pyproject.toml. COVERAGE_CORE is left alone: on
# Python 3.14+ coverage picks the cheap sys.monitoring core itself, and before
# 3.14 sys.monitoring cannot measure branches.
unit: $(BIN)/mailstead
	$(BIN)/coverage run -m pytest --ignore=tests/e2e
	@if total=$$($(BIN)/coverage report $(PROTO_COVERAGE) --format=total); then \
	    echo "src/mailstead/proto/ coverage: $$total% (floor $(PROTO_COVERAGE_FLOOR)%)"; \
	else \
	    $(BIN)/coverage report $(PROTO_COVERAGE); exit 1; \
	fi

# The real server with real clients; preflight names any missing program.
e2e: preflight
	$(BIN)/pytest tests/e2e

# Every atheris target for 10 s, from a temporary copy of its seed corpus.
fuzz-smoke: $(BIN)/mailstead
	$(BIN)/python -m fuzz.run --seconds 10

# Long runs; inputs that add coverage are merged into fuzz/corpus.
fuzz: $(BIN)/mailstead
	$(BIN)/python -m fuzz.run --seconds $(FUZZ_SECONDS) --jobs 2 --grow-corpus

test: preflight lint typecheck fuzz-smoke unit e2e

clean:
	rm -rf $(VENV) build *.egg-info src/*.egg-info .pytest_cache .mypy_cache .ruff_cache .coverage
