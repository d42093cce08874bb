#!/usr/bin/env bash
# Bring up the one-node development Slurm cluster (two emulated GPUs) that the tests run against.
#
# Idempotent: packages are installed only when missing, configs are rewritten only when they change,
# and daemons that already run from the current configs are left alone. Needs root (slurmd and munged
# do). Everything the cluster writes lives in one state dir:
#   HPC_MLE_SLURM_DIR          state dir (default /tmp/hpc-mle-slurm); configs go to its etc/
#   HPC_MLE_SLURM_ACCOUNTING   0 = no slurmdbd/MariaDB (sacct will not work); default 1
#   HPC_MLE_SLURM_WAIT         seconds to wait for the node to turn idle (default 90)
# Stop it with slurm/dev/down.sh; point Slurm commands at it with `source slurm/dev/env.sh`.
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
TEMPLATES=$HERE/templates
STATE_DIR=${HPC_MLE_SLURM_DIR:-/tmp/hpc-mle-slurm}
ACCOUNTING=${HPC_MLE_SLURM_ACCOUNTING:-1}
WAIT_S=${HPC_MLE_SLURM_WAIT:-90}

# Daemons and admin tools live in sbin, which a non-login shell may not have on PATH.
export PATH=$PATH:/usr/sbin:/sbin
# Bash 5.2 would otherwise treat '&' in a replacement string as "the matched text".
shopt -u patsub_replacement 2>/dev/null || true

# Values substituted into the templates (@NAME@ -> $NAME); read through ${!name} in render().
# shellcheck disable=SC2034
{
    CLUSTER=hpcmle
    HOST=$(hostname -s)
    GPUS=2
    GPU_FILES='/dev/tty[0-1]' # a Slurm host range, not a shell glob
    CTLD_PORT=6817
    SLURMD_PORT=6818
    DBD_PORT=6819
    # Not 3306, so a system MariaDB on the default port does not get in the way.
    DB_PORT=${HPC_MLE_SLURM_DB_PORT:-3307}
    DB_NAME=slurm_acct_db
    DB_USER=slurm
    DB_PASS=
    CPUS=
    REAL_MEMORY=
    RENDER_VARS=(CLUSTER HOST GPUS GPU_FILES CTLD_PORT SLURMD_PORT DBD_PORT DB_PORT DB_NAME DB_USER DB_PASS
        CPUS REAL_MEMORY STATE_DIR)
}

ETC=$STATE_DIR/etc
RUN=$STATE_DIR/run
LOG=$STATE_DIR/log
# Refuse beside a site Slurm, asked with the caller's own SLURM_CONF (before ours is exported).
# shellcheck source=slurm/dev/site-slurm-check.sh
. "$HERE/site-slurm-check.sh"
refuse_beside_site_slurm "$ETC/slurm.conf" "$CLUSTER"
export SLURM_CONF=$ETC/slurm.conf
STARTED_AT=$SECONDS

log() { printf '[slurm-dev] %s\n' "$*"; }
warn() { printf '[slurm-dev] WARNING: %s\n' "$*" >&2; }
die() {
    printf '[slurm-dev] ERROR: %s\n' "$*" >&2
    exit 1
}

# True when the pid file names a live process.
pid_alive() {
    local pid
    [[ -s $1 ]] || return 1
    pid=$(<"$1")
    [[ $pid =~ ^[0-9]+$ ]] && kill -0 "$pid" 2>/dev/null
}

# Polls a command until it succeeds; returns 1 after the given number of seconds.
wait_for() {
    local seconds=$1
    shift
    local deadline=$((SECONDS + seconds))
    until "$@" >/dev/null 2>&1; do
        ((SECONDS < deadline)) || return 1
        sleep 0.5
    done
}

# Sends TERM to the process in a pid file and waits for it to go, KILL after 20 s.
stop_pidfile() {
    local name=$1 pidfile=$2 pid
    pid_alive "$pidfile" || return 0
    pid=$(<"$pidfile")
    log "stopping $name (pid $pid)"
    kill -TERM "$pid" 2>/dev/null || true
    if ! wait_for 20 bash -c "! kill -0 $pid"; then
        warn "$name did not stop in 20 s; killing it"
        kill -KILL "$pid" 2>/dev/null || true
    fi
    rm -f "$pidfile"
}

check_setup() {
    ((EUID == 0)) || die "must run as root (slurmd and munged need it); try: sudo bash $0"
    [[ $STATE_DIR == /* ]] || die "HPC_MLE_SLURM_DIR must be an absolute path, got '$STATE_DIR'"
    # slurm.conf has no quoting for paths with blanks.
    [[ $STATE_DIR != *[[:space:]]* ]] || die "HPC_MLE_SLURM_DIR must not contain blanks"
    [[ $ACCOUNTING == 0 || $ACCOUNTING == 1 ]] || die "HPC_MLE_SLURM_ACCOUNTING must be 0 or 1"
}

# Installs the Debian packages that are missing. Base Slurm is required; the accounting packages are
# optional, so a failure there only turns accounting off.
install_packages() {
    local base=() acct=()
    command -v slurmctld >/dev/null && command -v slurmd >/dev/null && command -v sinfo >/dev/null ||
        base+=(slurm-wlm)
    command -v munged >/dev/null || base+=(munge)
    command -v bwrap >/dev/null || base+=(bubblewrap)
    if [[ $ACCOUNTING == 1 ]]; then
        command -v slurmdbd >/dev/null || acct+=(slurmdbd)
        command -v mariadbd >/dev/null || acct+=(mariadb-server)
    fi
    if ((${#base[@]} + ${#acct[@]} == 0)); then
        log "packages already installed"
        return 0
    fi
    command -v apt-get >/dev/null || die "missing ${base[*]} ${acct[*]} and no apt-get to install them"
    local t0=$SECONDS policy_added=0
    # Keep the packages' maintainer scripts from starting their services with the distribution's
    # configs: this script starts every daemon itself, from its own configs.
    if [[ ! -e /usr/sbin/policy-rc.d ]]; then
        printf '#!/bin/sh\nexit 101\n' >/usr/sbin/policy-rc.d
        chmod 755 /usr/sbin/policy-rc.d
        policy_added=1
    fi
    export DEBIAN_FRONTEND=noninteractive
    log "installing ${base[*]} ${acct[*]} (apt-get update first)"
    apt-get update -qq || warn "apt-get update failed; trying the install with the lists there are"
    if ((${#base[@]})); then
        apt-get install -y -qq --no-install-recommends "${base[@]}" >/dev/null ||
            { ((policy_added == 0)) || rm -f /usr/sbin/policy-rc.d; die "could not install ${base[*]}"; }
    fi
    if ((${#acct[@]})); then
        apt-get install -y -qq --no-install-recommends "${acct[@]}" >/dev/null ||
            warn "could not install ${acct[*]}; accounting will be off"
    fi
    ((policy_added == 0)) || rm -f /usr/sbin/policy-rc.d
    log "packages installed in $((SECONDS - t0)) s"
}

make_dirs() {
    mkdir -p "$ETC" "$RUN" "$LOG" "$STATE_DIR/spool/slurmctld" "$STATE_DIR/spool/slurmd"
    # MariaDB runs as the mysql user, which must be able to reach its directories.
    chmod 755 "$STATE_DIR"
}

# Node size: all cores, and memory a little under what the machine has, so slurmd never finds less
# than configured (which would drain the node).
detect_resources() {
    CPUS=$(nproc)
    local total_kb
    total_kb=$(awk '/^MemTotal:/ {print $2}' /proc/meminfo 2>/dev/null || true)
    if [[ $total_kb =~ ^[0-9]+$ ]] && ((total_kb > 2 * 1024 * 1024)); then
        # 90 % of the total, rounded down to 500 MB, so the value stays the same from run to run.
        REAL_MEMORY=$((total_kb * 9 / 10 / 1024 / 500 * 500))
    else
        REAL_MEMORY=8000
    fi
}

# The database password is made once and kept, so MariaDB and slurmdbd.conf stay in step.
load_db_pass() {
    local file=$ETC/db.pass
    if [[ ! -s $file ]]; then
        (umask 077 && head -c 18 /dev/urandom | base64 | tr '+/' 'xy' >"$file")
    fi
    DB_PASS=$(<"$file")
}

# render TEMPLATE OUTPUT [MODE]: writes OUTPUT from TEMPLATE with every @NAME@ replaced, touching the
# file only when its content changes.
render() {
    local template=$1 out=$2 mode=${3:-644} text name value
    text=$(<"$template")
    for name in "${RENDER_VARS[@]}"; do
        value=${!name}
        text=${text//"@$name@"/"$value"}
    done
    if [[ $text =~ @[A-Z_]+@ ]]; then
        die "no value for ${BASH_REMATCH[0]} in $template"
    fi
    (umask 077 && printf '%s\n' "$text" >"$out.new")
    chmod "$mode" "$out.new"
    if cmp -s "$out.new" "$out"; then
        rm -f "$out.new"
    else
        mv -f "$out.new" "$out"
    fi
}

# mode: slurmdbd or none.
render_configs() {
    local mode=$1
    render "$TEMPLATES/slurm.conf.in" "$ETC/slurm.conf"
    render "$TEMPLATES/gres.conf.in" "$ETC/gres.conf"
    render "$TEMPLATES/accounting-$mode.conf.in" "$ETC/accounting.conf"
    render "$TEMPLATES/slurmdbd.conf.in" "$ETC/slurmdbd.conf" 600
    render "$TEMPLATES/my.cnf.in" "$ETC/my.cnf"
}

files_hash() { cat "$@" | sha256sum | cut -d' ' -f1; }

# stale_daemon STAMP FILE...: true when a daemon started from FILEs (hash kept in STAMP) now runs from
# configs that have since changed, so it has to be restarted to pick them up.
stale_daemon() {
    local stamp=$1
    shift
    [[ -s $stamp && $(<"$stamp") != "$(files_hash "$@")" ]]
}

check_gpu_files() {
    local i
    for i in 0 1; do
        [[ -c /dev/tty$i ]] && continue
        # Some containers have no virtual consoles; a char device with the same numbers serves.
        mknod -m 600 "/dev/tty$i" c 4 "$i" 2>/dev/null ||
            die "/dev/tty$i is missing and cannot be created; gres.conf needs it as an emulated GPU"
    done
}

munge_works() { munge -n 2>/dev/null | unmunge >/dev/null 2>&1; }

start_munge() {
    if munge_works; then
        log "munged already running"
        return 0
    fi
    # The Debian package leaves /run/munge missing and some of munge's dirs owned by root.
    mkdir -p /run/munge /var/log/munge /var/lib/munge /etc/munge
    if [[ ! -s /etc/munge/munge.key ]]; then
        log "creating a munge key"
        if command -v mungekey >/dev/null; then
            mungekey --create --keyfile=/etc/munge/munge.key
        else
            dd if=/dev/urandom of=/etc/munge/munge.key bs=1024 count=1 status=none
        fi
    fi
    chown -R munge:munge /run/munge /var/log/munge /var/lib/munge /etc/munge
    chmod 700 /etc/munge
    chmod 400 /etc/munge/munge.key
    log "starting munged"
    # --force clears a socket left behind by a munged that died.
    runuser -u munge -- munged --force </dev/null >>"$LOG/munged.out" 2>&1 9>&-
    touch "$RUN/munged.ours" # down.sh stops munged only when this script started it
    wait_for 15 munge_works || die "munged does not answer; see /var/log/munge/munged.log"
}

db_ping() { mariadb-admin --defaults-file="$ETC/my.cnf" -uroot ping; }
dbd_answers() { sacctmgr -n -P list cluster format=cluster; }

# MariaDB + slurmdbd + the cluster record. Runs in a subshell with its own errexit; any failure
# makes the caller fall back to a cluster without accounting.
setup_accounting() {
    set -e
    command -v slurmdbd >/dev/null || { warn "slurmdbd is not installed"; return 1; }
    command -v mariadbd >/dev/null || { warn "mariadbd is not installed"; return 1; }
    local db=$STATE_DIR/mariadb
    mkdir -p "$db/data" "$db/run"
    chown -R mysql:mysql "$db"
    if [[ ! -d $db/data/mysql ]]; then
        log "initialising MariaDB in $db/data"
        mariadb-install-db --defaults-file="$ETC/my.cnf" --user=mysql --skip-test-db \
            --auth-root-authentication-method=socket >"$LOG/mariadb-install.log" 2>&1 ||
            { warn "mariadb-install-db failed; see $LOG/mariadb-install.log"; return 1; }
    fi
    if pid_alive "$db/run/mysqld.pid" && stale_daemon "$RUN/mariadb.sha" "$ETC/my.cnf"; then
        log "my.cnf changed since MariaDB started; restarting it"
        stop_pidfile slurmdbd "$RUN/slurmdbd.pid"
        stop_pidfile MariaDB "$db/run/mysqld.pid"
    fi
    if pid_alive "$db/run/mysqld.pid"; then
        log "MariaDB already running"
    else
        log "starting MariaDB on 127.0.0.1:$DB_PORT"
        # mariadbd does not daemonise itself; setsid detaches it from this script and its output.
        setsid nohup mariadbd --defaults-file="$ETC/my.cnf" </dev/null >>"$LOG/mariadbd.out" 2>&1 9>&- &
        local mariadb_pid=$! deadline=$((SECONDS + 60))
        files_hash "$ETC/my.cnf" >"$RUN/mariadb.sha"
        until db_ping >/dev/null 2>&1; do
            # A MariaDB that exited (port taken, bad data dir) will not answer: give up at once.
            if ! kill -0 "$mariadb_pid" 2>/dev/null || ((SECONDS > deadline)); then
                warn "MariaDB did not start; see $db/mysqld.log"
                return 1
            fi
            sleep 0.5
        done
    fi
    mariadb --defaults-file="$ETC/my.cnf" -uroot <<SQL
CREATE DATABASE IF NOT EXISTS $DB_NAME;
CREATE USER IF NOT EXISTS '$DB_USER'@'127.0.0.1' IDENTIFIED BY '$DB_PASS';
CREATE USER IF NOT EXISTS '$DB_USER'@'localhost' IDENTIFIED BY '$DB_PASS';
ALTER USER '$DB_USER'@'127.0.0.1' IDENTIFIED BY '$DB_PASS';
ALTER USER '$DB_USER'@'localhost' IDENTIFIED BY '$DB_PASS';
GRANT ALL ON $DB_NAME.* TO '$DB_USER'@'127.0.0.1';
GRANT ALL ON $DB_NAME.* TO '$DB_USER'@'localhost';
SQL
    if pid_alive "$RUN/slurmdbd.pid" && stale_daemon "$RUN/slurmdbd.sha" "$ETC/slurmdbd.conf"; then
        log "slurmdbd.conf changed since slurmdbd started; restarting it"
        stop_pidfile slurmdbd "$RUN/slurmdbd.pid"
    fi
    if pid_alive "$RUN/slurmdbd.pid"; then
        log "slurmdbd already running"
    else
        log "starting slurmdbd"
        # slurmdbd finds slurmdbd.conf next to $SLURM_CONF (22.05 has no option for its path).
        slurmdbd </dev/null >>"$LOG/slurmdbd.out" 2>&1 9>&-
        files_hash "$ETC/slurmdbd.conf" >"$RUN/slurmdbd.sha"
    fi
    wait_for 60 dbd_answers || { warn "slurmdbd does not answer; see $LOG/slurmdbd.log"; return 1; }
    # The cluster must be known to slurmdbd before slurmctld registers with it.
    if ! sacctmgr -n -P list cluster format=cluster | grep -qx "$CLUSTER"; then
        log "registering cluster $CLUSTER with slurmdbd"
        sacctmgr -i add cluster "$CLUSTER" >/dev/null
    fi
}

# Stops what setup_accounting may have left running after it failed part way.
undo_accounting() {
    stop_pidfile slurmdbd "$RUN/slurmdbd.pid"
    stop_pidfile MariaDB "$STATE_DIR/mariadb/run/mysqld.pid"
}

ctld_answers() { scontrol ping | grep -q 'is UP'; }

# Starts slurmctld and slurmd, restarting both when they run from configs that have since changed.
start_slurm() {
    local conf=("$ETC/slurm.conf" "$ETC/gres.conf" "$ETC/accounting.conf")
    if pid_alive "$RUN/slurmctld.pid" && stale_daemon "$RUN/slurm.sha" "${conf[@]}"; then
        log "configs changed since the cluster started; restarting slurmctld and slurmd"
        stop_pidfile slurmd "$RUN/slurmd.pid"
        stop_pidfile slurmctld "$RUN/slurmctld.pid"
    fi
    if pid_alive "$RUN/slurmctld.pid"; then
        log "slurmctld already running"
    else
        log "starting slurmctld"
        slurmctld -f "$SLURM_CONF" </dev/null >>"$LOG/slurmctld.out" 2>&1 9>&-
        files_hash "${conf[@]}" >"$RUN/slurm.sha"
    fi
    wait_for 30 ctld_answers || die "slurmctld does not answer; see $LOG/slurmctld.log"
    if pid_alive "$RUN/slurmd.pid"; then
        log "slurmd already running"
    else
        log "starting slurmd"
        slurmd -f "$SLURM_CONF" </dev/null >>"$LOG/slurmd.out" 2>&1 9>&-
    fi
}

node_state() { sinfo -h -N -n "$HOST" -o '%T' 2>/dev/null | head -n1; }

wait_node_ready() {
    local deadline=$((SECONDS + WAIT_S)) state=
    while ((SECONDS < deadline)); do
        state=$(node_state || true)
        case $state in
        idle | mixed | allocated | completing) return 0 ;;
        drain* | down*)
            # A node left down by an earlier run comes back once slurmd has registered again.
            scontrol update nodename="$HOST" state=resume >/dev/null 2>&1 || true
            ;;
        esac
        sleep 0.5
    done
    warn "node $HOST did not turn idle within $WAIT_S s (state: '${state:-none}')"
    sinfo -R >&2 || true
    tail -n 20 "$LOG/slurmd.log" "$LOG/slurmctld.log" >&2 2>/dev/null || true
    die "cluster is not ready"
}

main() {
    check_setup
    make_dirs
    # One up.sh at a time per state dir (e.g. several test processes asking for the cluster at once),
    # taken before the install so two runs do not fight over dpkg's lock either.
    # Every daemon is started with fd 9 closed (`9>&-`): a daemon that kept it would hold the lock forever.
    exec 9>"$STATE_DIR/.lock"
    flock -w 300 9 || die "another up.sh has held $STATE_DIR/.lock for 300 s"
    install_packages

    detect_resources
    load_db_pass
    check_gpu_files

    local mode=none
    if [[ $ACCOUNTING == 1 ]]; then mode=slurmdbd; fi
    render_configs "$mode"
    start_munge

    if [[ $mode == slurmdbd ]]; then
        local rc=0
        # Not in an `if`: errexit would be switched off inside the function there.
        set +e
        (setup_accounting)
        rc=$?
        set -e
        if ((rc != 0)); then
            warn "accounting could not be set up; starting Slurm WITHOUT accounting (sacct will not work)"
            undo_accounting
            mode=none
            render_configs none
        fi
    else
        log "accounting skipped (HPC_MLE_SLURM_ACCOUNTING=0)"
        undo_accounting
    fi

    start_slurm
    wait_node_ready
    log "cluster $CLUSTER is up: node $HOST, $CPUS CPUs, ${REAL_MEMORY} MB, gpu:$GPUS, accounting: $mode" \
        "($((SECONDS - STARTED_AT)) s)"
    log "logs: $LOG; stop with: bash $HERE/down.sh"
    echo "export SLURM_CONF=$SLURM_CONF"
}

main "$@"
