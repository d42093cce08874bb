"""Every path rule in one place: where competitions, prepared data, leaderboards and scaffold venvs live."""

from __future__ import annotations

import os
from pathlib import Path

import platformdirs

REPO_ROOT = Path(__file__).resolve().parent.parent


def competitions_root() -> Path:
    """The folder holding one sub-folder per competition spec (`competitions/` of the checkout)."""
    return Path(os.environ.get("HPC_MLE_COMPETITIONS", REPO_ROOT / "competitions"))


def data_root(data_dir: str | os.PathLike | None = None) -> Path:
    """Prepared data: `--data-dir`, else `$HPC_MLE_DATA`, else the user's cache dir (as upstream)."""
    if data_dir is not None:
        return Path(data_dir).expanduser().resolve()
    env = os.environ.get("HPC_MLE_DATA")
    if env:
        return Path(env).expanduser().resolve()
    return Path(platformdirs.user_cache_dir("hpc-mle")) / "data"


SITE_STORAGE_VARS = ("SCRATCH", "WORK", "PROJECT", "SCRATCHDIR", "WORKDIR", "PROJECT_DIR", "TMPDIR")


def under_home(path: str | os.PathLike, env: dict[str, str] | None = None) -> bool:
    env = dict(os.environ) if env is None else env
    home = env.get("HOME")
    if not home:
        return False
    try:
        return Path(path).resolve().is_relative_to(Path(home).resolve())
    except OSError:
        return False


def home_data_problem(root: str | os.PathLike, env: dict[str, str] | None = None) -> str | None:
    """Why prepared data under $HOME is refused for Slurm work, with the fix; None when `root` is elsewhere.

    On clusters $HOME is small, quota'd, often backed up, and every attempt on every node reads its data: the
    site's project or scratch storage is meant for that."""
    env = dict(os.environ) if env is None else env
    if not under_home(root, env):
        return None
    found = [f"${v}={env[v]}" for v in SITE_STORAGE_VARS if env.get(v)]
    where = (f"this shell has {', '.join(found)}" if found
             else f"none of ${', $'.join(SITE_STORAGE_VARS)} is set here; ask the site which storage is for data")
    return (f"the data folder {root} is under $HOME ({env['HOME']}), which clusters keep small and slow for jobs "
            f"on every node. Fix: prepare it on project or scratch storage ({where}) and pass --data-dir DIR / "
            f"data_dir=DIR or set HPC_MLE_DATA; to keep it in $HOME anyway: cluster.allow_home_data=true "
            f"(launch) or --allow-home-data (prepare --slurm)")


def user_conf_dir() -> Path:
    """Site configs outside the clone (`cluster/mysite.yaml`, ...): `$XDG_CONFIG_HOME/hpc-mle/conf`, else
    `~/.config/hpc-mle/conf`; they survive a fresh clone and shadow built-in options of the same name."""
    return Path(platformdirs.user_config_dir("hpc-mle")) / "conf"


def venvs_root() -> Path:
    """Scaffold venvs (hpc_mle/scaffold_env.py): `$HPC_MLE_VENVS`, else the user's cache dir (`~/.cache/hpc-mle/venvs`)."""
    env = os.environ.get("HPC_MLE_VENVS")
    return Path(env).expanduser().resolve() if env else Path(platformdirs.user_cache_dir("hpc-mle")) / "venvs"


def competition_dir(competition_id: str, data_dir: str | os.PathLike | None = None) -> Path:
    return data_root(data_dir) / competition_id


def raw_dir(competition_id: str, data_dir: str | os.PathLike | None = None) -> Path:
    return competition_dir(competition_id, data_dir) / "raw"


def prepared_dir(competition_id: str, data_dir: str | os.PathLike | None = None) -> Path:
    return competition_dir(competition_id, data_dir) / "prepared"


def public_dir(competition_id: str, data_dir: str | os.PathLike | None = None) -> Path:
    return prepared_dir(competition_id, data_dir) / "public"


def private_dir(competition_id: str, data_dir: str | os.PathLike | None = None) -> Path:
    return prepared_dir(competition_id, data_dir) / "private"


def checksum_file(competition_id: str, data_dir: str | os.PathLike | None = None) -> Path:
    """Written last by `prepare`: its presence marks a complete preparation, its content detects tampering."""
    return prepared_dir(competition_id, data_dir) / "checksums.json"


def obfuscated_description_candidates(competition_id: str, data_dir: str | os.PathLike | None = None
                                      ) -> list[Path]:
    """Where the obfuscated description (the contamination study's variant) may be: ours beside the spec first,
    then one imported from upstream."""
    return [
        competitions_root() / competition_id / "description_obfuscated.md",
        competition_dir(competition_id, data_dir) / "upstream" / "description_obfuscated.md",
    ]


def leaderboard_candidates(competition_id: str, data_dir: str | os.PathLike | None = None) -> list[Path]:
    """Where a leaderboard may be, in order of preference.

    A leaderboard imported from a user's upstream clone lands in the data dir (we may not ship Kaggle's);
    leaderboards we may ship (reference panels) sit beside the spec.
    """
    return [
        competition_dir(competition_id, data_dir) / "leaderboard.csv",
        competitions_root() / competition_id / "leaderboard.csv",
    ]
