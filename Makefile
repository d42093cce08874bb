# The two commands the README promises. `make test` is what CI runs (.ci/run).
PYTHON ?= python3
RUNS ?= runs/mini-samples

.PHONY: install test lint run

install:
	$(PYTHON) -m pip install -q -e '.[dev]'

lint: install
	$(PYTHON) -m ruff check hpc_mle tests benchmarks

test: install lint
	$(PYTHON) -m pytest

# The embedded default: build the mini benchmark from packaged data, then grade every competition's
# sample submission into an MLE-bench run-group report (the launcher, coming next, runs agents instead).
run: install
	hpc-mle prepare --benchmark mini
	mkdir -p $(RUNS)
	hpc-mle competitions samples --split mini > $(RUNS)/submissions.jsonl
	hpc-mle grade --submissions $(RUNS)/submissions.jsonl --output-dir $(RUNS)
