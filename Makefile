# The two commands the README promises. `make test` is what CI runs (.ci/run).
PYTHON ?= python3
RUNS ?= runs/mini-samples

.PHONY: install system-deps test lint run

install:
	$(PYTHON) -m pip install -q -e '.[dev]'

# bubblewrap is the sandbox of the tests and of `make run`; installed when we may (root + apt, as in CI).
# The Slurm dev cluster is brought up by the tests themselves (tests/slurm_cluster.py -> slurm/dev/up.sh).
system-deps:
	@command -v bwrap >/dev/null || { [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null \
		&& apt-get update -q >/dev/null && apt-get install -y -q bubblewrap >/dev/null; } \
		|| echo "bubblewrap is not installed and cannot be here: sandbox tests will skip"

lint: install
	$(PYTHON) -m ruff check hpc_mle tests benchmarks

test: install system-deps lint
	$(PYTHON) -m pytest

# The embedded default: build the mini benchmark from packaged data, then grade every competition's
# sample submission into an MLE-bench run-group report (the launcher, coming next, runs agents instead).
run: install system-deps
	hpc-mle prepare --benchmark mini
	mkdir -p $(RUNS)
	hpc-mle competitions samples --split mini > $(RUNS)/submissions.jsonl
	hpc-mle grade --submissions $(RUNS)/submissions.jsonl --output-dir $(RUNS)
