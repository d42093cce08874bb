# The two commands the README promises (`make run`, `make test`); `make test` is what CI runs (.ci/run).
#
# Which Python: this one (SYSTEM_PYTHON) when we may install into it (root, not externally managed, or an
# active venv); otherwise a project venv in $(VENV), created on first use (hpc_mle/bootstrap.py decides and
# says why). `make PYTHON=/path/to/python ...` overrides both.
SYSTEM_PYTHON ?= python3
VENV ?= .venv
SETUP = $(SYSTEM_PYTHON) hpc_mle/bootstrap.py
VENV_REASON := $(shell $(SETUP) venv-reason)
ifeq ($(VENV_REASON),)
PYTHON ?= $(SYSTEM_PYTHON)
VENV_TARGET :=
else
PYTHON ?= $(VENV)/bin/python
VENV_TARGET := $(VENV)/bin/python
endif

.PHONY: install system-deps test lint run down

$(VENV)/bin/python:
	@echo "make: using a project venv in $(VENV) because $(VENV_REASON)"
	@$(SYSTEM_PYTHON) -m venv $(VENV) || { rm -rf $(VENV); echo "make: '$(SYSTEM_PYTHON) -m venv' failed." \
		"Fix: apt-get install python3-venv (Debian/Ubuntu; dnf install python3 on RHEL), or make PYTHON=<a Python you may install into>"; exit 1; }

install: $(VENV_TARGET)
	$(PYTHON) -m pip install -q -e '.[dev]'

# bubblewrap is the sandbox of the tests and of `make run`; installed when we may (root + apt, as in CI).
# Without it, a launch with sandbox=bwrap stops before any attempt, naming the package to install.
system-deps:
	@command -v bwrap >/dev/null || { [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null \
		&& apt-get update -q >/dev/null && apt-get install -y -q bubblewrap >/dev/null; } \
		|| echo "bubblewrap is not installed and cannot be here: sandbox tests will skip," \
			"and make run needs it (ask for the Debian package bubblewrap, or run python -m hpc_mle.launch sandbox=none)"

lint: install
	$(PYTHON) -m ruff check hpc_mle tests benchmarks analysis

# Two workers (pytest-xdist): the Slurm tests mostly wait on the dev cluster, so they run in one worker beside
# the CPU-bound tests in the other. Tests sharing the cluster or the hostile-test account keep to one worker
# (xdist groups set in tests/conftest.py). TEST_WORKERS=0 runs everything in this one process.
# The Slurm tests bring up the dev cluster themselves when they may (tests/slurm_cluster.py -> slurm/dev/up.sh);
# it is left running for the next run, and the last lines say so (`make down` stops it).
TEST_WORKERS ?= 2

test: install system-deps lint
	@before=$$($(SETUP) cluster-state); echo "$(PYTHON) -m pytest -n $(TEST_WORKERS) --dist loadgroup"; \
		$(PYTHON) -m pytest -n $(TEST_WORKERS) --dist loadgroup; rc=$$?; echo; $(SETUP) cluster-note "$$before"; \
		exit $$rc

# The embedded default (README): the mini benchmark with the baseline agent on this machine, in
# bubblewrap sandboxes; it prepares the data, runs, grades, analyses and prints the results table.
run: install system-deps
	$(PYTHON) -m hpc_mle.launch

# Stops the development Slurm cluster that `make test` (or slurm/dev/up.sh) started.
down:
	bash slurm/dev/down.sh
