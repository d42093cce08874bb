# shellcheck shell=bash
# Sourced by slurm/dev/up.sh before it touches anything: the development cluster must not start a
# second Slurm on a machine whose own (site) Slurm answers, e.g. a login node. Kept in its own file so
# tests can run the check with stubbed `scontrol`/`sinfo` without starting anything.
#
#   HPC_MLE_SLURM_IGNORE_SITE=1   start anyway (you know the site controller will not mind)

# Succeeds (and prints why) when a Slurm controller that is not the development cluster answers.
# $1: the development cluster's slurm.conf; $2: its ClusterName. Uses the caller's own SLURM_CONF,
# so it must run before up.sh points SLURM_CONF at the development cluster.
site_slurm_answers() {
    local our_conf=$1 our_cluster=$2 how="" cluster
    # Someone who sourced slurm/dev/env.sh talks to our own cluster: "already running" is fine.
    [[ ${SLURM_CONF:-} == "$our_conf" ]] && return 1
    if command -v scontrol >/dev/null 2>&1 &&
        timeout 10 scontrol ping 2>/dev/null | grep -q 'is UP'; then
        how="scontrol ping"
    elif command -v sinfo >/dev/null 2>&1 && timeout 10 sinfo -h -o %P >/dev/null 2>&1; then
        how="sinfo"
    else
        return 1
    fi
    cluster=$(timeout 10 scontrol show config 2>/dev/null |
        awk -F= '/^ClusterName/ { gsub(/[ \t]/, "", $2); print $2 }') || true
    [[ -n $cluster && $cluster == "$our_cluster" ]] && return 1
    printf 'a Slurm controller already answers here (%s, SLURM_CONF=%s, ClusterName=%s)\n' \
        "$how" "${SLURM_CONF:-<default>}" "${cluster:-unknown}"
    return 0
}

# Exits non-zero with the reason when a site Slurm answers, unless HPC_MLE_SLURM_IGNORE_SITE=1.
refuse_beside_site_slurm() {
    local why
    why=$(site_slurm_answers "$1" "$2") || return 0
    if [[ ${HPC_MLE_SLURM_IGNORE_SITE:-0} == 1 ]]; then
        printf '[slurm-dev] WARNING: %s; starting anyway (HPC_MLE_SLURM_IGNORE_SITE=1)\n' "$why" >&2
        return 0
    fi
    printf '[slurm-dev] ERROR: %s.\n' "$why" >&2
    printf '[slurm-dev] This looks like a machine with its own Slurm: use that one (see docs/installation.md),\n' >&2
    printf '[slurm-dev] not a second development cluster. Set HPC_MLE_SLURM_IGNORE_SITE=1 to start anyway.\n' >&2
    exit 3
}
