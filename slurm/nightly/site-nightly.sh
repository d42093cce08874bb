#!/usr/bin/env bash
# The nightly sweep on a real site: the site's own Slurm (whatever `sbatch` on this login node talks
# to), hpc-mle from a project venv, prepared data on scratch, an API key from a file only you can read.
# Nothing of the development cluster is used. Called by site-scrontab.example (or cron); edit the four
# settings below or set them in the environment.
set -euo pipefail

# The hpc-mle checkout and its venv on project storage, prepared data on scratch (not $HOME: quotas).
# cron may not set USER.
ME=${USER:-$(id -un)}
HPC_MLE_REPO=${HPC_MLE_REPO:-/project/$ME/hpc-mle}
HPC_MLE_VENV=${HPC_MLE_VENV:-$HPC_MLE_REPO/.venv}
export HPC_MLE_DATA=${HPC_MLE_DATA:-${SCRATCH:-/scratch/$ME}/hpc-mle/data}
# One line, the key itself; chmod 600. Read only when the file exists (dummy/baseline need none).
HPC_MLE_KEY_FILE=${HPC_MLE_KEY_FILE:-$HOME/.config/hpc-mle/openai_api_key}

fail() {
    printf 'site-nightly: %s\n' "$*" >&2
    exit 1
}

# Refuses a key file that others can read, as ssh does: the key pays for every token.
read_key() {
    local mode
    [[ -e $HPC_MLE_KEY_FILE ]] || return 0
    mode=$(stat -c %a "$HPC_MLE_KEY_FILE")
    [[ $mode == 600 || $mode == 400 ]] ||
        fail "$HPC_MLE_KEY_FILE has mode $mode; run: chmod 600 $HPC_MLE_KEY_FILE"
    OPENAI_API_KEY=$(head -n 1 "$HPC_MLE_KEY_FILE")
    export OPENAI_API_KEY
}

main() {
    command -v sbatch >/dev/null || fail "no sbatch on PATH: run this on a login node of the site (module load slurm?)"
    [[ -x $HPC_MLE_VENV/bin/python ]] ||
        fail "no venv at $HPC_MLE_VENV: python3 -m venv $HPC_MLE_VENV && $HPC_MLE_VENV/bin/pip install -e $HPC_MLE_REPO"
    mkdir -p "$HPC_MLE_DATA"
    read_key
    cd "$HPC_MLE_REPO"
    mkdir -p runs/nightly
    exec "$HPC_MLE_VENV/bin/python" -m hpc_mle.cli nightly slurm/nightly/site-nightly.yaml
}

if [[ ${BASH_SOURCE[0]} == "$0" ]]; then
    main "$@"
fi
