#!/usr/bin/env bash
# A real single-node Slurm cluster for the executor tests (Debian's slurm-wlm + munge).
#
#   bash .ci/cluster.sh start    install if missing, configure, start, wait until the node is idle
#   bash .ci/cluster.sh stop     stop the daemons this script started
#   bash .ci/cluster.sh status   print sinfo
#
# Idempotent: `start` on a running cluster only checks it. Everything Slurm writes lives
# under $SLURM_TEST_DIR (default /tmp/bisect-runs-slurm); accounting is off.
set -euo pipefail

# The daemons and mungekey live in /usr/sbin, which a non-root user's PATH lacks on Debian:
# without it every run would reinstall the packages and make a new munge key.
export PATH="$PATH:/usr/local/sbin:/usr/sbin:/sbin"

STATE_DIR="${SLURM_TEST_DIR:-/tmp/bisect-runs-slurm}"
CONF_DIR=/etc/slurm
CONF="$CONF_DIR/slurm.conf"
NODE="$(hostname -s)"

log() { echo "cluster.sh: $*" >&2; }

as_root() {
    if [ "$(id -u)" -eq 0 ]; then "$@"; else sudo "$@"; fi
}

install_packages() {
    if command -v slurmctld >/dev/null && command -v slurmd >/dev/null && command -v munged >/dev/null \
        && command -v sinfo >/dev/null; then
        return
    fi
    log "installing slurm-wlm and munge"
    as_root apt-get update -q
    as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -q slurm-wlm munge
}

real_memory_mb() {
    # What slurmd itself detects, minus a little so the node never registers as "low memory".
    local detected
    detected="$(slurmd -C 2>/dev/null | sed -n 's/.*RealMemory=\([0-9]*\).*/\1/p' | head -n1)"
    if [ -z "$detected" ]; then
        detected="$(awk '/MemTotal/ {print int($2 / 1024)}' /proc/meminfo)"
    fi
    echo $((detected * 95 / 100))
}

write_config() {
    as_root mkdir -p "$CONF_DIR" "$STATE_DIR/state" "$STATE_DIR/spool" "$STATE_DIR/log"
    local tmp
    tmp="$(mktemp)"
    cat >"$tmp" <<EOF
# Single-node test cluster written by .ci/cluster.sh
ClusterName=bisect-runs-ci
SlurmctldHost=$NODE
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
MpiDefault=none
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
ReturnToService=2
StateSaveLocation=$STATE_DIR/state
SlurmdSpoolDir=$STATE_DIR/spool
SlurmctldPidFile=$STATE_DIR/slurmctld.pid
SlurmdPidFile=$STATE_DIR/slurmd.pid
SlurmctldLogFile=$STATE_DIR/log/slurmctld.log
SlurmdLogFile=$STATE_DIR/log/slurmd.log
AccountingStorageType=accounting_storage/none
JobAcctGatherType=jobacct_gather/none
JobCompType=jobcomp/none
# Tests poll at 0.5 s: start jobs at once, kill cancelled ones quickly, keep ended jobs
# visible to squeue for a while (there is no sacct without accounting).
SchedulerParameters=batch_sched_delay=0,sched_min_interval=100000
MailProg=/bin/true
MessageTimeout=10
KillWait=2
MinJobAge=600
InactiveLimit=0
SlurmdTimeout=60
SlurmctldTimeout=60
NodeName=$NODE CPUs=$(nproc) RealMemory=$(real_memory_mb) State=UNKNOWN
PartitionName=debug Nodes=$NODE Default=YES MaxTime=INFINITE State=UP
EOF
    if ! as_root cmp -s "$tmp" "$CONF"; then
        as_root install -m 0644 "$tmp" "$CONF"
        log "wrote $CONF"
        CONFIG_CHANGED=1
    fi
    rm -f "$tmp"
}

start_munge() {
    if munge -n </dev/null 2>/dev/null | unmunge >/dev/null 2>&1; then
        return
    fi
    if ! as_root test -s /etc/munge/munge.key; then  # /etc/munge is 0700: only root can look
        log "creating /etc/munge/munge.key"
        as_root mkdir -p /etc/munge
        if command -v mungekey >/dev/null; then
            as_root mungekey --create --force
        elif command -v create-munge-key >/dev/null; then
            as_root create-munge-key -f
        else
            as_root dd if=/dev/urandom of=/etc/munge/munge.key bs=1 count=1024 status=none
        fi
    fi
    as_root chown munge:munge /etc/munge /etc/munge/munge.key
    as_root chmod 0700 /etc/munge
    as_root chmod 0400 /etc/munge/munge.key
    as_root mkdir -p /run/munge /var/log/munge /var/lib/munge
    as_root chown munge:munge /run/munge /var/log/munge /var/lib/munge
    as_root chmod 0755 /run/munge
    log "starting munged"
    as_root runuser -u munge -- munged
    for _ in $(seq 50); do
        if munge -n </dev/null 2>/dev/null | unmunge >/dev/null 2>&1; then return; fi
        sleep 0.2
    done
    log "munged did not come up"
    exit 1
}

running() {  # running PIDFILE: is the daemon whose pid is in PIDFILE alive?
    [ -s "$1" ] && kill -0 "$(cat "$1")" 2>/dev/null
}

start_daemons() {
    if [ "${CONFIG_CHANGED:-0}" = 1 ] && running "$STATE_DIR/slurmctld.pid"; then
        log "configuration changed: reconfiguring the running cluster"
        as_root scontrol reconfigure
    fi
    if ! running "$STATE_DIR/slurmctld.pid"; then
        log "starting slurmctld"
        as_root slurmctld
    fi
    if ! running "$STATE_DIR/slurmd.pid"; then
        log "starting slurmd"
        as_root slurmd
    fi
}

wait_idle() {
    local state=""
    for _ in $(seq 120); do
        state="$(sinfo -h -n "$NODE" -o %t 2>/dev/null | head -n1 || true)"
        case "$state" in
            idle|mix|alloc) log "node $NODE is $state"; return ;;
            down*|drain*|fail*) as_root scontrol update NodeName="$NODE" State=RESUME 2>/dev/null || true ;;
        esac
        sleep 0.5
    done
    log "node $NODE did not become idle (state: ${state:-unknown}); logs in $STATE_DIR/log"
    tail -n 20 "$STATE_DIR/log/slurmctld.log" "$STATE_DIR/log/slurmd.log" >&2 || true
    exit 1
}

stop_daemon() {  # stop_daemon NAME
    local pidfile="$STATE_DIR/$1.pid"
    if running "$pidfile"; then
        log "stopping $1"
        as_root kill "$(cat "$pidfile")"
        for _ in $(seq 50); do running "$pidfile" || break; sleep 0.2; done
    fi
}

case "${1:-start}" in
    start)
        install_packages
        write_config
        start_munge
        start_daemons
        wait_idle
        ;;
    stop)
        stop_daemon slurmd
        stop_daemon slurmctld
        ;;
    status)
        sinfo
        ;;
    *)
        echo "usage: $0 start|stop|status" >&2
        exit 2
        ;;
esac
