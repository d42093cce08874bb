"""Is a competition prepared, and untouched since? Read from its `checksums.json`, without preparing anything.

The download layer (`hpc_mle.kaggle`: does this competition still need a download?) and the launcher ask
this; `hpc_mle.prepare` writes what it reads and re-exports these names. Living here, the download layer
need not import the prepare package that imports it.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

from hpc_mle import paths
from hpc_mle.files import tree_checksums


def recorded_checksums(competition_id: str, data_dir=None) -> dict | None:
    path = paths.checksum_file(competition_id, data_dir)
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


def current_checksums(competition_id: str, data_dir=None) -> dict[str, dict[str, str]]:
    return {
        "public": tree_checksums(paths.public_dir(competition_id, data_dir)),
        "private": tree_checksums(paths.private_dir(competition_id, data_dir)),
    }


def verify(competition_id: str, data_dir=None, *, quick: bool = False) -> list[str]:
    """Problems with a prepared competition (empty list = complete and untouched).

    `quick` compares names and sizes only (what a launch needs to know in seconds; reading every byte of a
    300 GB competition takes an hour); the full check compares every file's MD5.
    """
    recorded = recorded_checksums(competition_id, data_dir)
    if recorded is None:
        return [f"{competition_id}: not prepared (no {paths.checksum_file(competition_id, data_dir)})"]
    if quick:
        sizes = recorded.get("sizes", {})
        return _compare(recorded, current_sizes(competition_id, data_dir), lambda part, name, have: (
            f"{have} bytes, not {sizes[part][name]}" if name in sizes.get(part, {}) and sizes[part][name] != have
            else None))
    return _compare(recorded, current_checksums(competition_id, data_dir), lambda part, name, have: (
        f"md5 {have} != {recorded[part][name]}" if have != recorded[part][name] else None))


def _compare(recorded: dict, current: dict, differs: Callable[[str, str, Any], str | None]) -> list[str]:
    """Missing, extra and changed files of public/ and private/; `differs` says how a present file changed."""
    problems = []
    for part in ("public", "private"):
        want, have = recorded.get(part, {}), current[part]
        for name in sorted(set(want) | set(have)):
            if name not in have:
                problems.append(f"{part}/{name}: missing")
            elif name not in want:
                problems.append(f"{part}/{name}: not part of the preparation")
            elif change := differs(part, name, have[name]):
                problems.append(f"{part}/{name}: changed since preparation ({change})")
    return problems


def current_sizes(competition_id: str, data_dir=None) -> dict[str, dict[str, int]]:
    """Byte size of every prepared file, keyed as in checksums.json."""
    out = {}
    for part, root in (("public", paths.public_dir(competition_id, data_dir)),
                       ("private", paths.private_dir(competition_id, data_dir))):
        out[part] = {p.relative_to(root).as_posix(): p.stat().st_size for p in sorted(root.rglob("*"))
                     if p.is_file() and not p.name.startswith(".")} if root.is_dir() else {}
    return out


def is_prepared(competition_id: str, data_dir=None) -> bool:
    return not verify(competition_id, data_dir)  # no checksums.json is a problem too
