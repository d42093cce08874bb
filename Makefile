# The two commands the README promises. `make test` is what CI runs (.ci/run).
PYTHON ?= python3

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
	$(PYTHON) -m ruff check hpc_mle tests benchmarks analysis

# Two workers (pytest-xdist): the Slurm tests mostly wait on the dev cluster, so they run in one worker beside
# the CPU-bound tests in the other. Tests sharing the cluster or the hostile-test account keep to one worker
# (xdist groups set in tests/conftest.py). TEST_WORKERS=0 runs everything in this one process.
TEST_WORKERS ?= 2

test: install system-deps lint
	$(PYTHON) -m pytest -n $(TEST_WORKERS) --dist loadgroup

# The embedded default (README): the mini benchmark with the baseline agent on this machine, in
# bubblewrap sandboxes; it prepares the data, runs, grades, analyses and prints the results table.
run: install system-deps
	$(PYTHON) -m hpc_mle.launch
