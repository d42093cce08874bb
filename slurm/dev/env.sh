# shellcheck shell=bash
# Source this (`source slurm/dev/env.sh`) to point sinfo/sbatch/squeue/sacct at the development
# cluster that slurm/dev/up.sh started. No `set -euo pipefail` here on purpose: this runs in the
# caller's shell, whose options it must not change.
export SLURM_CONF="${HPC_MLE_SLURM_DIR:-/tmp/hpc-mle-slurm}/etc/slurm.conf"
# scontrol and friends sit in sbin on some systems, which a non-login shell may lack.
case ":$PATH:" in
*:/usr/sbin:*) ;;
*) export PATH="$PATH:/usr/sbin" ;;
esac
