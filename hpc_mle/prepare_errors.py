"""The errors that stop a preparation, below everything that raises or catches them.

`hpc_mle.prepare` catches them and the download layer (`hpc_mle.kaggle`, `hpc_mle.extra_downloads`)
raises them; living here, neither download module has to import the prepare package. Both re-export
them, so `prepare.PrepareError` and `kaggle.KaggleError` are these classes.
"""

from __future__ import annotations


class PrepareError(RuntimeError):
    pass


class KaggleError(PrepareError):
    """Something Kaggle-related stops a preparation; `kind` says what (for the table)."""

    kind = "failed"


class CredentialsError(KaggleError):
    """No usable Kaggle credentials: stops every download, so it is raised before anything is written."""

    kind = "credentials"


class Unavailable(KaggleError):
    """This competition cannot be downloaded now (rules, not found, failed after retries, checksum)."""

    def __init__(self, message: str, kind: str = "failed") -> None:
        super().__init__(message)
        self.kind = kind
