#!/usr/bin/env bash
# Stop the development Slurm cluster that slurm/dev/up.sh started: cancels its jobs, then stops slurmd,
# slurmctld, slurmdbd, its private MariaDB and (if up.sh started it) munged. Idempotent: whatever is not
# running is skipped. `--purge` also deletes the state dir (configs, logs, job state, accounting data).
#   HPC_MLE_SLURM_DIR   state dir (default /tmp/hpc-mle-slurm)
set -euo pipefail

STATE_DIR=${HPC_MLE_SLURM_DIR:-/tmp/hpc-mle-slurm}
RUN=$STATE_DIR/run
export SLURM_CONF=$STATE_DIR/etc/slurm.conf
export PATH=$PATH:/usr/sbin:/sbin

PURGE=0
for arg in "$@"; do
    case $arg in
    --purge) PURGE=1 ;;
    -h | --help)
        sed -n '2,6p' "$0"
        exit 0
        ;;
    *)
        echo "usage: $0 [--purge]" >&2
        exit 2
        ;;
    esac
done

log() { printf '[slurm-dev] %s\n' "$*"; }

pid_alive() {
    local pid
    [[ -s $1 ]] || return 1
    pid=$(<"$1")
    [[ $pid =~ ^[0-9]+$ ]] && kill -0 "$pid" 2>/dev/null
}

# Pids of processes whose command line is exactly the given one: finds a daemon of this cluster
# whose pid file is gone, without touching daemons of any other cluster or state dir.
pids_by_cmdline() {
    local want=$1 dir cmd
    for dir in /proc/[0-9]*; do
        cmd=$(tr '\0' ' ' 2>/dev/null <"$dir/cmdline") || continue
        [[ ${cmd% } == "$want" ]] && echo "${dir#/proc/}"
    done
    return 0
}

# stop NAME PIDFILE [CMDLINE]: TERM, then KILL after 20 s.
stop() {
    local name=$1 pidfile=$2 cmdline=${3:-} pids=() pid i
    if pid_alive "$pidfile"; then pids+=("$(<"$pidfile")"); fi
    if [[ -n $cmdline ]]; then
        while read -r pid; do
            [[ -n $pid && " ${pids[*]} " != *" $pid "* ]] && pids+=("$pid")
        done < <(pids_by_cmdline "$cmdline")
    fi
    if ((${#pids[@]} == 0)); then
        log "$name: not running"
        rm -f "$pidfile"
        return 0
    fi
    log "stopping $name (pid ${pids[*]})"
    kill -TERM "${pids[@]}" 2>/dev/null || true
    for ((i = 0; i < 40; i++)); do
        kill -0 "${pids[@]}" 2>/dev/null || break
        sleep 0.5
    done
    if kill -0 "${pids[@]}" 2>/dev/null; then
        log "$name did not stop in 20 s; killing it"
        kill -KILL "${pids[@]}" 2>/dev/null || true
    fi
    rm -f "$pidfile"
}

# Jobs first: with proctrack/linuxproc their steps would outlive slurmd otherwise.
cancel_jobs() {
    pid_alive "$RUN/slurmctld.pid" || return 0
    local jobs i
    jobs=$(squeue -h -o '%A' 2>/dev/null || true)
    [[ -n $jobs ]] || return 0
    log "cancelling jobs: $(echo "$jobs" | tr '\n' ' ')"
    # shellcheck disable=SC2086 # one job id per word
    scancel $jobs 2>/dev/null || true
    for ((i = 0; i < 30; i++)); do
        [[ -z $(squeue -h -t running,completing -o '%A' 2>/dev/null || true) ]] && return 0
        sleep 0.5
    done
    log "some jobs are still ending; stopping the daemons anyway"
}

main() {
    ((EUID == 0)) || {
        echo "[slurm-dev] ERROR: must run as root" >&2
        exit 1
    }
    if [[ -d $STATE_DIR ]]; then
        cancel_jobs
        stop slurmd "$RUN/slurmd.pid" "slurmd -f $SLURM_CONF"
        stop slurmctld "$RUN/slurmctld.pid" "slurmctld -f $SLURM_CONF"
        stop slurmdbd "$RUN/slurmdbd.pid"
        stop MariaDB "$STATE_DIR/mariadb/run/mysqld.pid" "mariadbd --defaults-file=$STATE_DIR/etc/my.cnf"
        rm -f "$RUN"/*.sha
        # munged is shared by everything on the machine: stop it only if up.sh started it.
        if [[ -e $RUN/munged.ours ]]; then
            stop munged /run/munge/munged.pid
            rm -f "$RUN/munged.ours"
        else
            log "munged: not started by up.sh, left alone"
        fi
    else
        log "no state dir at $STATE_DIR: nothing to stop"
    fi
    if ((PURGE)); then
        # Guard against an empty or root path before an rm -rf.
        case $STATE_DIR in
        / | /tmp | /root | /home | "") echo "[slurm-dev] ERROR: refusing to delete '$STATE_DIR'" >&2 && exit 1 ;;
        esac
        rm -rf -- "$STATE_DIR"
        log "deleted $STATE_DIR"
    fi
    log "cluster is down"
}

main
