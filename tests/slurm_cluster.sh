#!/usr/bin/env bash
# Start a real single-node Slurm cluster on this machine (for tests/test_slurm.py and for trying
# `fastload reproduce --launcher slurm` locally). Idempotent: a second run only checks that it is up.
# Needs root and apt (Debian): installs slurm-wlm and munge when missing.
# Exit status: 0 = cluster up; 3 = cannot install (no apt / not root); anything else = failed to start.
set -euo pipefail

CONF_DIR=/etc/slurm
STATE=/var/spool/slurmctld
SPOOL=/var/spool/slurmd
LOGS=/var/log/slurm

log() { echo "[slurm_cluster] $*" >&2; }

cluster_is_up() {
    command -v sinfo >/dev/null 2>&1 && timeout 10 sinfo -h -o '%T' 2>/dev/null | grep -Eq '^(idle|mixed|allocated)'
}

install_packages() {
    if command -v slurmctld >/dev/null && command -v slurmd >/dev/null && command -v munged >/dev/null; then
        return 0
    fi
    if ! command -v apt-get >/dev/null || [ "$(id -u)" != 0 ]; then
        log "slurm-wlm and munge are missing and cannot be installed here (needs apt-get as root)"
        exit 3
    fi
    log "installing slurm-wlm and munge with apt-get"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq || true
    if ! apt-get install -y -qq slurm-wlm munge >/dev/null; then
        log "apt-get install slurm-wlm munge failed (offline, or no such packages here)"
        exit 3
    fi
}

start_munge() {
    mkdir -p /etc/munge /var/run/munge /var/lib/munge /var/log/munge
    if [ ! -s /etc/munge/munge.key ]; then
        dd if=/dev/urandom of=/etc/munge/munge.key bs=1024 count=1 status=none
    fi
    chown -R munge:munge /etc/munge /var/run/munge /var/lib/munge /var/log/munge 2>/dev/null || true
    chmod 0700 /etc/munge; chmod 0400 /etc/munge/munge.key
    if ! munge -n 2>/dev/null | unmunge >/dev/null 2>&1; then
        if id munge >/dev/null 2>&1; then
            runuser -u munge -- /usr/sbin/munged
        else
            /usr/sbin/munged --force
        fi
        sleep 1
    fi
    munge -n | unmunge >/dev/null
}

write_conf() {
    local host cpus mem
    host=$(hostname -s)
    cpus=$(nproc)
    # leave 1 GiB for the system; slurmd refuses a node that claims more than it has
    mem=$(( $(awk '/MemTotal/ {print int($2/1024)}' /proc/meminfo) - 1024 ))
    mkdir -p "$CONF_DIR" "$STATE" "$SPOOL" "$LOGS"
    cat > "$CONF_DIR/slurm.conf.new" <<CONF
# written by fastload tests/slurm_cluster.sh: one node, one partition
ClusterName=fastload
SlurmctldHost=$host
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
MpiDefault=none
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SelectType=select/cons_tres
SelectTypeParameters=CR_CPU
SchedulerType=sched/backfill
ReturnToService=2
StateSaveLocation=$STATE
SlurmdSpoolDir=$SPOOL
SlurmctldPidFile=/run/slurmctld.pid
SlurmdPidFile=/run/slurmd.pid
SlurmctldLogFile=$LOGS/slurmctld.log
SlurmdLogFile=$LOGS/slurmd.log
JobCompType=jobcomp/none
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
MinJobAge=600
KillWait=5
NodeName=$host CPUs=$cpus RealMemory=$mem State=UNKNOWN
PartitionName=debug Nodes=$host Default=YES MaxTime=INFINITE State=UP
CONF
    mv "$CONF_DIR/slurm.conf.new" "$CONF_DIR/slurm.conf"
}

start_daemons() {
    if ! timeout 5 scontrol ping 2>/dev/null | grep -q 'is UP'; then
        slurmctld
    fi
    for _ in $(seq 1 20); do
        timeout 5 scontrol ping 2>/dev/null | grep -q 'is UP' && break
        sleep 0.5
    done
    if ! pgrep -x slurmd >/dev/null; then
        slurmd
    fi
    for _ in $(seq 1 40); do
        cluster_is_up && return 0
        sleep 0.5
    done
    # a node left DOWN by an earlier crash comes back with an explicit resume
    scontrol update NodeName="$(hostname -s)" State=RESUME 2>/dev/null || true
    for _ in $(seq 1 20); do
        cluster_is_up && return 0
        sleep 0.5
    done
    log "slurm did not come up; see $LOGS/slurmctld.log and $LOGS/slurmd.log"
    sinfo >&2 || true
    return 1
}

if cluster_is_up; then
    log "already up"; exit 0
fi
install_packages
start_munge
write_conf
start_daemons
log "up: $(sinfo -h -o '%P %D %c %T' | head -1)"
