"""Shared fixtures."""

from __future__ import annotations

import pytest
from support import Synthetic


@pytest.fixture
def synthetic(tmp_path, monkeypatch) -> Synthetic:
    return Synthetic(tmp_path, monkeypatch)
