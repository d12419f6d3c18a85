#!/usr/bin/env bash
# A single-node SLURM on this machine, so one box with several GPUs runs `pipelines run-all` with
# run.executor=slurm exactly as a cluster does (and CI tests the SLURM executor against a real scheduler).
#
#   scripts/slurm_local.sh up [--gpus N] [--cpus N]   start munge, slurmctld and slurmd (idempotent)
#   scripts/slurm_local.sh down                      stop the daemons this script started (pid files)
#   scripts/slurm_local.sh status                    sinfo of the node
#   eval "$(scripts/slurm_local.sh env)"             export SLURM_CONF for sbatch, squeue, scontrol ...
#
# GPUs: the machine's /dev/nvidia<i> devices when present; else N fake ones (character devices made with
# mknod, listed in gres.conf: jobs get distinct CUDA_VISIBLE_DEVICES but no GPU), N from --gpus (default 4).
# Everything (config, state, spool, pid and log files) lives in $SLURM_LOCAL_DIR (default
# /tmp/fusionbench-slurm). Needs root (the daemons run as SlurmUser=root) and Debian's packages:
#   apt-get install -y --no-install-recommends slurmctld slurmd slurm-client munge
set -euo pipefail

DIR="${SLURM_LOCAL_DIR:-/tmp/fusionbench-slurm}"
DIR="$(mkdir -p "$DIR" && cd "$DIR" && pwd)"   # slurmd hangs at job launch with a relative config path
CONF="$DIR/slurm.conf"

usage() { sed -n '4,8p' "$0" | sed 's/^# \{0,1\}//'; exit 2; }

running() {  # running PIDFILE: the process named in the pid file is alive
    [[ -s "$1" ]] && kill -0 "$(cat "$1" 2>/dev/null)" 2>/dev/null
}

start_munge() {
    if munge -n </dev/null 2>/dev/null | unmunge >/dev/null 2>&1; then
        return  # a munged is already serving (the system's, or ours from an earlier `up`)
    fi
    install -d -o munge -g munge -m 0755 /run/munge
    install -d -o munge -g munge -m 0700 /var/lib/munge /var/log/munge
    runuser -u munge -- munged --pid-file=/run/munge/munged.pid
    echo /run/munge/munged.pid > "$DIR/munged.started"   # `down` stops only a munged that `up` started
    for _ in $(seq 50); do munge -n </dev/null 2>/dev/null | unmunge >/dev/null 2>&1 && return; sleep 0.1; done
    echo "slurm_local: munged did not come up" >&2; exit 1
}

write_config() {
    local gpus="$1" cpus="$2" host mem devices=() i
    host="$(hostname -s)"
    mem=$(( $(awk '/MemTotal/ {print $2}' /proc/meminfo) / 1024 - 1024 ))
    mapfile -t devices < <(ls /dev/nvidia[0-9]* 2>/dev/null | sort -V)
    if (( ${#devices[@]} == 0 )); then
        mkdir -p "$DIR/dev"
        for (( i = 0; i < gpus; i++ )); do
            [[ -c "$DIR/dev/nvidia$i" ]] || mknod "$DIR/dev/nvidia$i" c 195 "$i"   # regular files are rejected
            devices+=("$DIR/dev/nvidia$i")
        done
    fi
    mkdir -p "$DIR/state" "$DIR/spool" "$DIR/log"
    : > "$DIR/gres.conf.new"
    echo "AutoDetect=off" >> "$DIR/gres.conf.new"
    for i in "${devices[@]}"; do echo "NodeName=$host Name=gpu File=$i" >> "$DIR/gres.conf.new"; done
    cat > "$CONF.new" <<EOF
# written by scripts/slurm_local.sh: a one-node cluster on $host
ClusterName=fusionbench
SlurmctldHost=$host(127.0.0.1)
SlurmUser=root
AuthType=auth/munge
# a requeued job waits for its old credential to expire before it starts again (default 120 s)
AuthInfo=cred_expire=10
StateSaveLocation=$DIR/state
SlurmdSpoolDir=$DIR/spool
SlurmctldPidFile=$DIR/slurmctld.pid
SlurmdPidFile=$DIR/slurmd.pid
SlurmctldLogFile=$DIR/log/slurmctld.log
SlurmdLogFile=$DIR/log/slurmd.log
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SchedulerType=sched/backfill
# memory is not a consumed resource: a job without --mem would otherwise take the whole node
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
# a job without --mem asks for this much per CPU, not the whole node (backfill would then hold CPU-only jobs
# behind a pending GPU job)
DefMemPerCPU=1000
AccountingStorageType=accounting_storage/none
JobAcctGatherType=jobacct_gather/none
MpiDefault=none
MailProg=/bin/true
GresTypes=gpu
# the node may declare more CPUs than it has: the GPUs are what jobs queue for
SlurmdParameters=config_overrides
JobRequeue=1
ReturnToService=2
# a preempted job's submitit process ignores SIGTERM; it is killed this many seconds later
KillWait=5
MinJobAge=300
# look at pending jobs every 2 s (a requeued job becomes eligible without an event to wake the scheduler)
SchedulerParameters=sched_interval=2,bf_interval=2
NodeName=$host NodeAddr=127.0.0.1 CPUs=$cpus RealMemory=$mem Gres=gpu:${#devices[@]} State=UNKNOWN
PartitionName=local Nodes=$host Default=YES MaxTime=INFINITE State=UP OverSubscribe=NO
EOF
    for f in "$CONF" "$DIR/gres.conf"; do
        if ! cmp -s "$f.new" "$f" 2>/dev/null; then mv "$f.new" "$f"; CHANGED=1; else rm "$f.new"; fi
    done
}

up() {
    local gpus=4 cpus
    cpus=$(( $(nproc) > 16 ? $(nproc) : 16 ))
    while (( $# )); do
        case "$1" in
            --gpus) gpus="$2"; shift 2 ;;
            --cpus) cpus="$2"; shift 2 ;;
            *) usage ;;
        esac
    done
    command -v slurmctld >/dev/null || { echo "slurm_local: slurmctld not found; install: apt-get install -y" \
        "--no-install-recommends slurmctld slurmd slurm-client munge" >&2; exit 1; }
    CHANGED=0
    write_config "$gpus" "$cpus"
    if (( CHANGED )) && { running "$DIR/slurmctld.pid" || running "$DIR/slurmd.pid"; }; then
        down  # a changed config (AuthInfo above all) takes effect only in freshly started daemons
    fi
    # tools that run srun without SLURM_CONF read this one
    if [[ -w /etc/slurm || ! -e /etc/slurm ]]; then mkdir -p /etc/slurm; ln -sf "$CONF" /etc/slurm/slurm.conf; fi
    start_munge
    running "$DIR/slurmctld.pid" || slurmctld -f "$CONF"
    running "$DIR/slurmd.pid" || slurmd -f "$CONF"
    for _ in $(seq 100); do
        if sinfo -h -o %t 2>/dev/null | grep -qE '^(idle|mix|alloc)'; then
            echo "slurm_local: up ($DIR): $(sinfo -h -o '%n %c CPUs %G %t')"
            echo "export SLURM_CONF=$CONF"
            return
        fi
        sleep 0.2
    done
    echo "slurm_local: the node did not become idle; see $DIR/log" >&2; exit 1
}

down() {
    local name
    for name in slurmd slurmctld; do
        if running "$DIR/$name.pid"; then
            kill "$(cat "$DIR/$name.pid")"
            for _ in $(seq 50); do running "$DIR/$name.pid" || break; sleep 0.1; done
        fi
    done
    if [[ -s "$DIR/munged.started" ]] && running "$(cat "$DIR/munged.started")"; then
        kill "$(cat "$(cat "$DIR/munged.started")")"
        rm -f "$DIR/munged.started"
    fi
    echo "slurm_local: down"
}

export SLURM_CONF="$CONF"
case "${1:-}" in
    up) shift; up "$@" ;;
    down) down ;;
    status) sinfo -N -o '%n %c CPUs %G %t'; squeue ;;
    env) echo "export SLURM_CONF=$CONF" ;;
    *) usage ;;
esac
