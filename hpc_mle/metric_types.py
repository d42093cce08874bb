"""What every metric shares with the code below the registry: the refusal it raises and v1's result types.

It sits under `hpc_mle.metrics`, `hpc_mle.boxes` and `hpc_mle.competitions` so the box arithmetic and
the spec checks can name them without importing the registry (which imports them)."""

from __future__ import annotations


class InvalidSubmission(ValueError):
    """The submission cannot be scored; `str(exc)` is the reason shown to users and agents."""


# The type v1's grader returned (see hpc_mle.metrics.Metric.v1_result): a NumPy float64 or a Python float.
V1_RESULTS = ("numpy", "python")
