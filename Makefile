# The two commands the README promises. `make test` is what CI runs (.ci/run).
PYTHON ?= python3

.PHONY: install test lint run

install:
	$(PYTHON) -m pip install -q -e '.[dev]'

lint: install
	$(PYTHON) -m ruff check hpc_mle tests benchmarks analysis

test: install lint
	$(PYTHON) -m pytest

run: install
	hpc-mle prepare --benchmark mini
	hpc-mle competitions list --split mini
