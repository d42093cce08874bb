"""Shared fixtures."""

from __future__ import annotations

import pytest

from support import Synthetic


@pytest.fixture
def synthetic(tmp_path, monkeypatch) -> Synthetic:
    return Synthetic(tmp_path, monkeypatch)


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
