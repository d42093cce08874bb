"""hpc-mle: MLE-bench for Slurm clusters."""

__version__ = "0.1.0"
