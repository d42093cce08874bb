"""Atomic file and folder writes, tolerant JSON reads and checksums: a crash never leaves a half-written file or folder."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any


def current_umask() -> int:
    """The process umask (read by setting and restoring it: there is no other portable way)."""
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def atomic_write_bytes(path: str | os.PathLike, data: bytes, mode: int = 0o666) -> Path:
    """Write `data` to `path` through a temporary file and a rename.

    The file gets `mode` less the umask, as `open()` would give it (mkstemp alone makes every file 0600,
    which stops a research group from sharing a sweep folder). Pass `mode=0o600` for a private file.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        os.fchmod(fd, mode & ~current_umask())
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def atomic_write_text(path: str | os.PathLike, text: str, mode: int = 0o666) -> Path:
    return atomic_write_bytes(path, text.encode("utf-8"), mode)


def atomic_write_json(path: str | os.PathLike, obj: Any, indent: int | None = 2, mode: int = 0o666) -> Path:
    return atomic_write_text(path, json.dumps(obj, indent=indent, default=str) + "\n", mode)


def read_json(path: str | os.PathLike, default: Any = None) -> Any:
    """The parsed JSON file, or `default` when it is missing, unreadable or not valid JSON."""
    try:
        return json.loads(Path(path).read_bytes())
    except (OSError, ValueError):
        return default


@contextmanager
def staged_dir(final: str | os.PathLike, label: str) -> Iterator[Path]:
    """A fresh staging folder beside `final`, renamed over it when the block succeeds, removed when it fails.

    `final` is never half-filled: it is the old folder, or briefly none, or the complete new one.
    """
    final = Path(final)
    staging = final.with_name(f".{label}.tmp-{os.getpid()}")
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir(parents=True)
    try:
        yield staging
        if final.exists():
            shutil.rmtree(final)
        os.replace(staging, final)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise


def md5sum(path: str | os.PathLike, chunk: int = 1 << 20) -> str:
    h = hashlib.md5()
    with open(path, "rb") as fh:
        while block := fh.read(chunk):
            h.update(block)
    return h.hexdigest()


def tree_checksums(root: str | os.PathLike) -> dict[str, str]:
    """MD5 of every file below `root`, keyed by its relative POSIX path, sorted."""
    root = Path(root)
    return {
        p.relative_to(root).as_posix(): md5sum(p)
        for p in sorted(root.rglob("*"))
        if p.is_file() and not p.name.startswith(".")
    }
