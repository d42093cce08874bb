"""Where a finished Kaggle download is recorded: `<data>/<id>/download.json`, beside the zip.

`hpc_mle.kaggle` writes it; `hpc_mle.upstream` reads the zip's MD5 from it to compare with upstream's
checksums. The name lives here, under both, so the fact source need not import the download layer.
"""

from __future__ import annotations

import json
from pathlib import Path

from hpc_mle import paths

MANIFEST = "download.json"


def manifest_path(cid: str, data_dir=None) -> Path:
    return paths.competition_dir(cid, data_dir) / MANIFEST


def recorded_md5(cid: str, data_dir=None) -> str | None:
    """The downloaded zip's MD5 as recorded, or None when nothing was downloaded (or none recorded)."""
    manifest = manifest_path(cid, data_dir)
    return json.loads(manifest.read_text()).get("md5") if manifest.is_file() else None
