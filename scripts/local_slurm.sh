#!/usr/bin/env bash
# A two-node SLURM cluster on this machine, for trying hwbench's cluster path (hydra/launcher=slurm) on a laptop
# and for the tests: munge, slurmctld and two slurmd (nodes n1 and n2 on 127.0.0.1), no systemd, no cgroups.
#
#   scripts/local_slurm.sh up      # installs Debian's packages when missing (root), starts it, waits for 2 idle nodes
#   eval "$(scripts/local_slurm.sh env)"   # SLURM_CONF and sacct's stand-in for this shell
#   scripts/local_slurm.sh down    # stops what `up` started (by the pids it wrote), nothing else
#
# Everything (config, state, logs, pids) lives under $HWBENCH_SLURM_DIR (default ~/.cache/hwbench/slurm); the
# ports are $HWBENCH_SLURM_PORT (slurmctld, default 17000) and the next two (the nodes). Details: docs/cluster.md.
set -euo pipefail

DIR=${HWBENCH_SLURM_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/hwbench/slurm}
PORT=${HWBENCH_SLURM_PORT:-17000}
PACKAGES=(slurmctld slurmd slurm-client munge)
NODES=(n1 n2)

die() { echo "error: $*" >&2; exit 1; }

install_packages() {
  command -v slurmctld >/dev/null && command -v slurmd >/dev/null && command -v sbatch >/dev/null &&
    command -v munged >/dev/null && return
  [ "$(id -u)" = 0 ] || die "SLURM is not installed: run as root, or: sudo apt-get install -y ${PACKAGES[*]}"
  command -v apt-get >/dev/null || die "SLURM is not installed and there is no apt-get: install ${PACKAGES[*]}"
  echo "installing ${PACKAGES[*]} (Debian's packages)"
  (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
    "${PACKAGES[@]}") >"$DIR/log/apt.log" 2>&1 || die "apt-get failed: see $DIR/log/apt.log"
}

write_config() {
  local host cpus mem
  host=$(hostname -s)
  cpus=$(nproc)
  mem=$(awk '/MemTotal/ {print int($2 / 1024 / 4)}' /proc/meminfo)  # a quarter each: jobs share one machine
  [ -f "$DIR/munge/munge.key" ] || { head -c 1024 /dev/urandom >"$DIR/munge/munge.key"; chmod 400 "$DIR/munge/munge.key"; }
  cat >"$DIR/etc/slurm.conf" <<EOF
# written by scripts/local_slurm.sh: two nodes on one host ($host)
ClusterName=hwbench
SlurmctldHost=$host(127.0.0.1)
SlurmctldPort=$PORT
SlurmUser=$(id -un)
SlurmdUser=$(id -un)
AuthType=auth/munge
CredType=cred/munge
# the local munged; short-lived credentials: a requeued job starts again in seconds
AuthInfo=socket=$DIR/munge/munge.socket,cred_expire=10
StateSaveLocation=$DIR/state
SlurmdSpoolDir=$DIR/spool/%n
SlurmctldPidFile=$DIR/run/slurmctld.pid
SlurmdPidFile=$DIR/run/slurmd-%n.pid
SlurmctldLogFile=$DIR/log/slurmctld.log
SlurmdLogFile=$DIR/log/slurmd-%n.log
# no systemd, no cgroups: processes tracked by their parents, tasks not bound
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
SchedulerType=sched/backfill
SelectType=select/cons_tres
SelectTypeParameters=CR_CPU
ReturnToService=2
MpiDefault=none
# seconds between scancel's or the time limit's SIGTERM and SIGKILL: room to write the record
KillWait=30
MinJobAge=600
# n1 and n2 are names SLURM alone knows (no DNS has them): each task is told where rank 0 listens, 127.0.0.1
TaskProlog=$DIR/etc/task_prolog.sh
NodeName=n1 NodeHostname=$host NodeAddr=127.0.0.1 Port=$((PORT + 1)) CPUs=$cpus RealMemory=$mem State=UNKNOWN
NodeName=n2 NodeHostname=$host NodeAddr=127.0.0.1 Port=$((PORT + 2)) CPUs=$cpus RealMemory=$mem State=UNKNOWN
# FORCE: jobs share the CPUs (a sweep's points run at once on a laptop's few cores, as they would on many nodes)
PartitionName=local Nodes=n1,n2 Default=YES MaxTime=INFINITE State=UP OverSubscribe=FORCE:4
EOF
  printf '#!/bin/sh\n# a task prolog: lines "export NAME=VALUE" land in each task'"'"'s environment\necho export MASTER_ADDR=127.0.0.1\n' \
    >"$DIR/etc/task_prolog.sh"
  chmod +x "$DIR/etc/task_prolog.sh"
  # sacct's stand-in: without accounting sacct answers nothing, and submitit could not tell a cancelled job from a
  # running one; this answers its question (JobID,State,NodeList) from scontrol
  cat >"$DIR/bin/sacct" <<'EOF'
#!/usr/bin/env bash
# sacct -o JobID,State,NodeList --parsable2 -j ID ... as submitit asks it, answered from scontrol (no accounting)
ids=()
while [ $# -gt 0 ]; do
  case $1 in -j) ids+=("${2//,/ }"); shift 2 ;; *) shift ;; esac
done
echo "JobID|State|NodeList"
for id in ${ids[@]+"${ids[@]}"}; do
  scontrol -o show job "$id" 2>/dev/null | tr ' ' '\n' | awk -F= '
    /^JobId=/ { if (job != "") print out(); job = $2; arr = ""; task = ""; state = ""; nodes = "" }
    /^ArrayJobId=/ { arr = $2 } /^ArrayTaskId=/ { task = $2 } /^JobState=/ { state = $2 } /^NodeList=/ { nodes = $2 }
    function out() { return ((arr != "" && task != "") ? arr "_" task : job) "|" state "|" nodes }
    END { if (job != "") print out() }'
done
EOF
  chmod +x "$DIR/bin/sacct"
}

started() {  # the pid in $1 is a live process this script started
  [ -f "$1" ] && kill -0 "$(cat "$1")" 2>/dev/null
}

up() {
  mkdir -p "$DIR"/{etc,state,spool,run,log,munge,bin}
  chmod 700 "$DIR" "$DIR/munge"
  install_packages
  write_config
  export SLURM_CONF=$DIR/etc/slurm.conf
  if ! started "$DIR/run/munged.pid"; then
    munged --force --socket="$DIR/munge/munge.socket" --key-file="$DIR/munge/munge.key" \
      --pid-file="$DIR/run/munged.pid" --log-file="$DIR/log/munged.log" --seed-file="$DIR/munge/munged.seed" \
      || die "munged did not start: see $DIR/log/munged.log"
  fi
  if ! started "$DIR/run/slurmctld.pid"; then
    slurmctld -i 2>>"$DIR/log/slurmctld.log" || die "slurmctld did not start: see $DIR/log/slurmctld.log"
  fi
  for node in "${NODES[@]}"; do
    if ! started "$DIR/run/slurmd-$node.pid"; then
      slurmd -N "$node" 2>>"$DIR/log/slurmd-$node.log" || die "slurmd $node did not start: see $DIR/log/slurmd-$node.log"
    fi
  done
  local waited=0
  until [ "$(sinfo -h -N -o '%N %t' 2>/dev/null | awk '$2 == "idle"' | sort -u | wc -l)" -ge 2 ]; do
    [ $waited -lt 60 ] || die "the nodes are not idle after 60 s (sinfo: $(sinfo -h -N -o '%N %t' 2>&1 | tr '\n' ' ')): see $DIR/log/"
    sleep 1
    waited=$((waited + 1))
  done
  echo "SLURM is up: nodes n1 and n2 idle (sinfo); config and logs in $DIR"
  echo "in this shell: eval \"\$($0 env)\""
}

stop() {  # the processes whose pid files are given, at once (each takes a second or two), then wait for them
  local pidfile pids=()
  for pidfile in "$@"; do
    if started "$pidfile"; then
      pids+=("$(cat "$pidfile")")
      kill "${pids[-1]}"
    fi
    rm -f "$pidfile"
  done
  local pid alive
  for _ in $(seq 100); do
    alive=0
    for pid in "${pids[@]}"; do kill -0 "$pid" 2>/dev/null && alive=1; done
    [ "$alive" = 1 ] || break
    sleep 0.1
  done
}

down() {
  stop "$DIR"/run/slurmd-*.pid "$DIR/run/slurmctld.pid"
  stop "$DIR/run/munged.pid"  # last: the daemons authenticate through it until they stop
  echo "SLURM is down ($DIR kept: its state and logs)"
}

case ${1:-} in
  up) up ;;
  down) down ;;
  env) echo "export SLURM_CONF='$DIR/etc/slurm.conf' PATH='$DIR/bin':\"\$PATH\"" ;;
  *) die "usage: $0 up|down|env" ;;
esac
