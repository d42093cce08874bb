"""Shared fixtures."""

from __future__ import annotations

import pytest

from support import Synthetic


@pytest.fixture
def synthetic(tmp_path, monkeypatch) -> Synthetic:
    return Synthetic(tmp_path, monkeypatch)


# `make test` runs the suite in two pytest-xdist workers (`-n 2 --dist loadgroup`). Tests that share one
# resource run in one worker, one after another, as in a plain run: every test on the dev Slurm cluster (one
# node, two CPUs, a test that kills slurmd), and every hostile-agent test (one `hpcmle-tester` account).
# xdist starts the largest group first, so the cluster's waiting overlaps the CPU-bound tests of the other worker.
SLURM_GROUP, HOSTILE_GROUP = "slurm-cluster", "hostile-user"
HOSTILE_FIXTURES = {"hostile", "who", "ordinary_user"}


def resource_group(item: pytest.Item) -> str | None:
    """The xdist group of a test that shares the dev cluster or the hostile-test account, else None."""
    fixtures = set(getattr(item, "fixturenames", ()))
    if "slurm_env" in fixtures or hasattr(getattr(item, "module", None), "require_cluster"):
        return SLURM_GROUP
    if fixtures & HOSTILE_FIXTURES:
        return HOSTILE_GROUP
    return None


@pytest.hookimpl(tryfirst=True)  # before xdist's own hook, which reads the groups into the test ids
def pytest_collection_modifyitems(config, items):
    if not config.pluginmanager.hasplugin("xdist"):
        return
    for item in items:
        group = resource_group(item)
        if group:
            item.add_marker(pytest.mark.xdist_group(group))


@pytest.fixture(scope="session")
def mini_data(tmp_path_factory):
    """Every mini competition prepared once per test session into a temporary data dir."""
    from hpc_mle import competitions, prepare

    data = tmp_path_factory.mktemp("mini-data")
    for cid in competitions.split_ids("mini"):
        prepare.prepare(cid, data)
    return data


# The hostile-agent fixtures (root and ordinary-user variants), registered here once for the whole session:
# imported into each test module instead, a session fixture would be set up once per module.
from hostile import hostile, ordinary_user, who  # noqa: E402, F401
