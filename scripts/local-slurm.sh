#!/usr/bin/env bash
# local-slurm.sh - run a REAL Slurm cluster on this one machine (for benchctl's tests and CI).
#
#   scripts/local-slurm.sh start            # idempotent: install packages if missing, configure, start
#                                           #   munged, MariaDB, slurmdbd, slurmctld, slurmd(s); wait for
#                                           #   idle nodes; smoke-test; print "slurm ready"
#   scripts/local-slurm.sh stop [--purge]   # stop the daemons by PID file; --purge also wipes slurm
#                                           #   state/spool/logs and the accounting DB (job ids restart at 1)
#   scripts/local-slurm.sh status           # print sinfo; exit 0 if the cluster is up, else 1
#   scripts/local-slurm.sh daemon stop|start slurmctld|slurmdbd
#                                           # stop or (re)start one daemon of a running cluster, for the
#                                           #   fault tests (start waits until it answers, nodes usable)
#
# Environment knobs:
#   SLURM_NODES   number of (fake) nodes n1..nN, all on this host, one slurmd each   (default: 2)
#   SLURM_CPUS    CPUs per node; may exceed the real core count (config_overrides)   (default: 4)
#   SLURM_SMOKE   1 = run a smoke job after (re)starting slurmctld/slurmd            (default: 1)
#
# Cluster "benchctl"; partitions cpu (default) and gpu, both on all nodes, no time limit.
# Accounting goes through slurmdbd + MariaDB, so `sacct` works.
# Tested on Debian 12 (slurm-wlm 22.05.8, munge 0.5.15, MariaDB 10.11) as root, without systemd
# as PID 1 and without cgroup plugins (proctrack/pgid, task/none). Daemons are stopped through
# their PID files only (no pkill/killall). MariaDB and munged are stopped only if this script
# started them (recorded in /run/local-slurm/started).
set -euo pipefail

if [ "$(id -u)" -ne 0 ]; then
  command -v sudo >/dev/null || { echo "local-slurm.sh: must run as root (no sudo found)" >&2; exit 1; }
  exec sudo -E bash "$0" "$@"
fi

CLUSTER=benchctl
SLURM_NODES=${SLURM_NODES:-2}
SLURM_CPUS=${SLURM_CPUS:-4}
SLURM_SMOKE=${SLURM_SMOKE:-1}
DBPASS=slurmdbpass
HN=$(hostname -s)
RUNDIR=/run/local-slurm     # records which daemons this script started (read by `stop`)
APTLOG=/tmp/local-slurm-apt.log
export DEBIAN_FRONTEND=noninteractive

case "$SLURM_NODES" in ''|*[!0-9]*|0) echo "SLURM_NODES must be a positive integer" >&2; exit 2 ;; esac
case "$SLURM_CPUS" in ''|*[!0-9]*|0) echo "SLURM_CPUS must be a positive integer" >&2; exit 2 ;; esac

# ------------------------------------------------------------------------------------ helpers
now_ms() { local t=${EPOCHREALTIME//[!0-9]/}; echo $(( t / 1000 )); }
fmt_ms() { printf '%d.%01ds' $(( $1 / 1000 )) $(( $1 % 1000 / 100 )); }
T0=$(now_ms)
log() { echo "[local-slurm +$(fmt_ms $(( $(now_ms) - T0 )))] $*"; }
die() { log "ERROR: $*"; exit 1; }

# run_step DESCRIPTION FUNCTION [ARGS...] - run one step and log how long it took
run_step() {
  local what=$1 t; shift
  t=$(now_ms)
  log "== $what"
  "$@"
  log "   $what: done in $(fmt_ms $(( $(now_ms) - t )))"
}

# alive PIDFILE - true if the pid in it is a live process (zombies count as exited: PID 1 here
# may reap daemons we started only after a while)
alive() {
  local f=$1 p
  [ -s "$f" ] || return 1
  p=$(cat "$f" 2>/dev/null) || return 1
  [ -n "$p" ] && [ -d "/proc/$p" ] && ! grep -q '^State:.*Z' "/proc/$p/status" 2>/dev/null
}

# waitfor SECONDS DESCRIPTION CMD... - poll CMD every 0.5 s until it succeeds
waitfor() {
  local t=$1 what=$2 end; shift 2
  end=$(( $(date +%s) + t ))
  until "$@" >/dev/null 2>&1; do
    if [ "$(date +%s)" -ge "$end" ]; then log "TIMEOUT after ${t}s waiting for $what"; return 1; fi
    sleep 0.5
  done
}

dump_logs() {
  local f
  for f in /var/log/slurm/*.log /var/log/mysql/error.log; do
    [ -s "$f" ] || continue
    echo "=================== tail -n 40 $f"
    tail -n 40 "$f"
  done
}

mark() { mkdir -p "$RUNDIR"; grep -qx "$1" "$RUNDIR/started" 2>/dev/null || echo "$1" >> "$RUNDIR/started"; }
marked() { grep -qx "$1" "$RUNDIR/started" 2>/dev/null; }

node_names() { local i; for i in $(seq 1 "$SLURM_NODES"); do echo "n$i"; done; }
node_list() { if [ "$SLURM_NODES" -eq 1 ]; then echo n1; else echo "n[1-$SLURM_NODES]"; fi; }

db_up() { mysqladmin ping >/dev/null 2>&1; }   # root uses unix_socket auth on Debian

start_mariadb() {
  # setsid: mysqld_safe is backgrounded by the init script; keep it out of our session/process group
  if [ -x /etc/init.d/mariadb ]; then setsid -w /etc/init.d/mariadb start </dev/null >/dev/null 2>&1 || true
  else service mariadb start </dev/null >/dev/null 2>&1 || service mysql start </dev/null >/dev/null 2>&1 || true; fi
  waitfor 60 mariadb db_up
}

# ------------------------------------------------------------------------------------ stop
stop_pidfile() { # stop_pidfile PIDFILE NAME - SIGTERM, wait up to 30 s, then SIGKILL
  local f=$1 name=$2 p i
  [ -s "$f" ] || { rm -f "$f"; return 0; }
  p=$(cat "$f")
  if alive "$f"; then
    log "stopping $name (pid $p)"
    kill "$p" 2>/dev/null || true
    for i in $(seq 1 60); do alive "$f" || break; sleep 0.5; done
    if alive "$f"; then log "$name did not exit after 30s, SIGKILL"; kill -9 "$p" 2>/dev/null || true; fi
  fi
  rm -f "$f"   # a stale slurmctld pid file would make the package prerm (scancel) fail
}

do_stop() {
  local purge=0 f tmpdb=0
  case "${1:-}" in
    --purge) purge=1 ;;
    '') ;;
    *) echo "usage: $0 stop [--purge]" >&2; exit 2 ;;
  esac
  for f in /run/slurmd-*.pid; do
    if [ -e "$f" ]; then stop_pidfile "$f" "slurmd ($(basename "$f" .pid))"; fi
  done
  stop_pidfile /run/slurmctld.pid slurmctld
  stop_pidfile /run/slurmdbd.pid slurmdbd
  if [ "$purge" = 1 ] && command -v mysql >/dev/null; then
    if ! db_up && [ -d /var/lib/mysql/slurm_acct_db ]; then
      log "starting MariaDB temporarily to drop the accounting database"
      start_mariadb && tmpdb=1
    fi
    if db_up; then
      log "dropping accounting database"
      mysql -e "DROP DATABASE IF EXISTS slurm_acct_db;" || true
    fi
  fi
  # mysqld_safe (mariadbd's parent) exits by itself once mariadbd terminates normally
  if marked mariadb || [ "$tmpdb" = 1 ]; then stop_pidfile /run/mysqld/mysqld.pid mariadb; fi
  if marked munged; then stop_pidfile /run/munge/munged.pid munged; fi
  rm -rf "$RUNDIR"
  if [ "$purge" = 1 ]; then
    log "purging slurm state, spool and logs"
    rm -rf /var/lib/slurm/slurmctld/* /var/lib/slurm/slurmd-* /var/log/slurm/*
  fi
  log "stopped after $(fmt_ms $(( $(now_ms) - T0 )))"
}

# ------------------------------------------------------------------------------------ status
do_status() {
  local out rc=0 f d
  for d in munged:/run/munge/munged.pid mariadb:/run/mysqld/mysqld.pid slurmdbd:/run/slurmdbd.pid \
           slurmctld:/run/slurmctld.pid; do
    f=${d#*:}
    if alive "$f"; then echo "${d%%:*}: running (pid $(cat "$f"))" >&2; else echo "${d%%:*}: not running" >&2; fi
  done
  for f in /run/slurmd-*.pid; do
    [ -e "$f" ] || continue
    if alive "$f"; then echo "$(basename "$f" .pid): running (pid $(cat "$f"))" >&2
    else echo "$(basename "$f" .pid): not running" >&2; fi
  done
  command -v sinfo >/dev/null || { echo "slurm is not installed" >&2; return 1; }
  timeout 15 sinfo || return 1
  timeout 10 scontrol ping >/dev/null 2>&1 || return 1
  # up = every node responds and is usable (idle/mix/alloc/comp; a trailing '*' = not responding)
  out=$(timeout 15 sinfo -h -N -o '%N %t' | sort -u) || return 1
  [ -n "$out" ] || return 1
  if echo "$out" | grep -Evq ' (idle|mix|alloc|comp)$'; then rc=1; fi
  return "$rc"
}

# ------------------------------------------------------------------------------------ start steps
install_packages() {
  local pkgs=()
  command -v munged    >/dev/null || pkgs+=(munge)
  command -v slurmctld >/dev/null || pkgs+=(slurmctld)
  command -v slurmd    >/dev/null || pkgs+=(slurmd)
  command -v sbatch    >/dev/null || pkgs+=(slurm-client)
  command -v slurmdbd  >/dev/null || pkgs+=(slurmdbd)
  if ! command -v mariadbd >/dev/null && ! command -v mysqld >/dev/null; then pkgs+=(mariadb-server); fi
  if [ ${#pkgs[@]} -eq 0 ]; then log "   all packages present"; return 0; fi
  log "   installing: ${pkgs[*]} (log: $APTLOG)"
  apt-get update -qq >"$APTLOG" 2>&1 || { tail -n 40 "$APTLOG"; die "apt-get update failed"; }
  # --no-install-recommends: 8 packages for slurm+munge, ~23 more for slurmdbd+mariadb
  apt-get install -y -qq --no-install-recommends "${pkgs[@]}" >>"$APTLOG" 2>&1 \
    || { tail -n 40 "$APTLOG"; die "apt-get install failed"; }
}

CONF_CHANGED=0
write_config() {
  local mem_mb node_mem newconf n i nodelist
  nodelist=$(node_list)
  mem_mb=$(awk '/MemTotal/ {print int($2/1024)}' /proc/meminfo)
  node_mem=$(( mem_mb * 9 / 10 / SLURM_NODES ))

  mkdir -p /etc/slurm /var/log/slurm /var/lib/slurm/slurmctld
  chown slurm:slurm /var/log/slurm /var/lib/slurm /var/lib/slurm/slurmctld
  for n in $(node_names); do mkdir -p "/var/lib/slurm/slurmd-$n"; done

  newconf=$(mktemp)
  {
    cat <<EOF
# generated by scripts/local-slurm.sh - do not edit
ClusterName=${CLUSTER}
SlurmctldHost=${HN}(127.0.0.1)
AuthType=auth/munge
CredType=cred/munge
MpiDefault=none
# no cgroups. pgid: a job's processes = its process groups, so '&' children left behind by a batch
# script are killed when the job ends (proctrack/linuxproc would let such orphans survive)
ProctrackType=proctrack/pgid
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/linux
JobAcctGatherFrequency=30
ReturnToService=2
SlurmUser=slurm
SlurmdUser=root
SlurmctldPort=6817
SlurmdPort=6818
SlurmctldPidFile=/run/slurmctld.pid
SlurmdPidFile=/run/slurmd-%n.pid
StateSaveLocation=/var/lib/slurm/slurmctld
SlurmdSpoolDir=/var/lib/slurm/slurmd-%n
SlurmctldLogFile=/var/log/slurm/slurmctld.log
SlurmdLogFile=/var/log/slurm/slurmd-%n.log
SlurmctldDebug=info
SlurmdDebug=info
MailProg=/bin/true
SchedulerType=sched/backfill
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
# trust the CPU/memory numbers below even if they exceed the hardware (lets 2 cores run >2 jobs)
SlurmdParameters=config_overrides
# seconds between SIGTERM and SIGKILL on cancel/timeout (default 30)
KillWait=5
# keep finished jobs visible to squeue/scontrol for 300 s (sacct keeps them forever)
MinJobAge=300
InactiveLimit=0
# reject impossible requests at submit time (bad -N/-c/--mem/-p) instead of queueing them forever
EnforcePartLimits=ALL
AccountingStorageType=accounting_storage/slurmdbd
AccountingStorageHost=localhost
AccountingStoragePort=6819
JobCompType=jobcomp/none
EOF
    # several slurmds on one host: same NodeHostname, own Port each, started as `slurmd -N nX`
    for i in $(seq 1 "$SLURM_NODES"); do
      echo "NodeName=n$i NodeHostname=${HN} NodeAddr=127.0.0.1 Port=$((17000 + i)) CPUs=${SLURM_CPUS} RealMemory=${node_mem} State=UNKNOWN"
    done
    cat <<EOF
PartitionName=cpu Nodes=${nodelist} Default=YES MaxTime=INFINITE State=UP
PartitionName=gpu Nodes=${nodelist} Default=NO MaxTime=INFINITE State=UP
EOF
  } > "$newconf"

  if ! cmp -s "$newconf" /etc/slurm/slurm.conf; then
    CONF_CHANGED=1
    log "   slurm.conf is new or changed"
  fi
  # a changed slurm.conf (e.g. another node layout) needs slurmctld/slurmd restarted
  if [ "$CONF_CHANGED" = 1 ]; then
    local f
    for f in /run/slurmd-*.pid /run/slurmctld.pid; do
      if [ -e "$f" ]; then stop_pidfile "$f" "$(basename "$f" .pid) (config changed)"; fi
    done
    # the node list may have changed: forget the saved node state (jobs and job ids are kept)
    rm -f /var/lib/slurm/slurmctld/node_state /var/lib/slurm/slurmctld/node_state.old
  fi
  install -m 0644 "$newconf" /etc/slurm/slurm.conf
  rm -f "$newconf"

  newconf=$(mktemp)
  cat > "$newconf" <<EOF
AuthType=auth/munge
DbdHost=localhost
DbdPort=6819
SlurmUser=slurm
DebugLevel=info
LogFile=/var/log/slurm/slurmdbd.log
PidFile=/run/slurmdbd.pid
StorageType=accounting_storage/mysql
StorageHost=localhost
StoragePort=3306
StorageUser=slurm
StoragePass=${DBPASS}
StorageLoc=slurm_acct_db
EOF
  # slurmdbd refuses to start unless its config is owned by SlurmUser and mode 600
  install -o slurm -g slurm -m 0600 "$newconf" /etc/slurm/slurmdbd.conf
  rm -f "$newconf"
}

munge_ok() { munge -n 2>/dev/null | unmunge >/dev/null 2>&1; }
start_munge() {
  if [ ! -s /etc/munge/munge.key ]; then
    log "   creating munge key"
    mungekey --create --keyfile=/etc/munge/munge.key 2>/dev/null \
      || dd if=/dev/urandom of=/etc/munge/munge.key bs=1 count=1024 status=none
    chown munge:munge /etc/munge/munge.key; chmod 400 /etc/munge/munge.key
  fi
  if munge_ok; then log "   munged already running"; return 0; fi
  mkdir -p /run/munge; chown munge:munge /run/munge; chmod 0755 /run/munge
  runuser -u munge -- /usr/sbin/munged     # daemonizes, pid in /run/munge/munged.pid
  mark munged
  waitfor 20 munged munge_ok
}

start_db() {
  if db_up; then log "   MariaDB already running"
  else
    start_mariadb
    mark mariadb
  fi
  mysql -e "CREATE USER IF NOT EXISTS 'slurm'@'localhost' IDENTIFIED BY '${DBPASS}';
      GRANT ALL ON slurm_acct_db.* TO 'slurm'@'localhost'; FLUSH PRIVILEGES;"
}

dbd_ok() { sacctmgr -n -P show cluster format=cluster >/dev/null 2>&1; }
start_slurmdbd() {
  if alive /run/slurmdbd.pid; then log "   slurmdbd already running"
  else
    slurmdbd                                 # daemonizes, pid in /run/slurmdbd.pid
    mark slurmdbd
  fi
  # sacctmgr needs slurm.conf (written above) to find slurmdbd
  waitfor 60 slurmdbd dbd_ok
  if ! sacctmgr -n -P show cluster format=cluster | grep -qx "$CLUSTER"; then
    # slurmctld would also register it on first contact; adding it explicitly is deterministic
    sacctmgr -i add cluster "$CLUSTER" >/dev/null
  fi
}

STARTED=0
start_slurmctld() {
  if alive /run/slurmctld.pid; then log "   slurmctld already running"
  else
    slurmctld                                # daemonizes, pid in /run/slurmctld.pid
    mark slurmctld; STARTED=1
  fi
  waitfor 30 slurmctld scontrol ping
}

start_slurmds() {
  local n
  for n in $(node_names); do
    if alive "/run/slurmd-$n.pid"; then log "   slurmd $n already running"; continue; fi
    slurmd -N "$n"                           # -N: pick the NodeName (several slurmds on one host)
    mark "slurmd:$n"; STARTED=1
  done
}

nodes_usable() {
  # on a fresh start nodes go unk -> idle within ~1 s; on a running cluster busy states are fine too.
  # down/drain/inval or a trailing '*' (= not responding) is not.
  local st
  st=$(sinfo -h -N -o '%N %t' 2>/dev/null | sort -u)
  [ -n "$st" ] && ! echo "$st" | grep -Evq ' (idle|mix|alloc|comp)$'
}
wait_nodes() {
  local end n
  end=$(( $(date +%s) + 90 ))
  until nodes_usable; do
    # a drained/down node (e.g. left over from an earlier run) is put back into service
    for n in $(sinfo -h -N -o '%N %t' 2>/dev/null | sort -u | awk '$2 ~ /drain|drng|down|fail|inval/ {print $1}'); do
      scontrol update NodeName="$n" State=RESUME >/dev/null 2>&1 || true
    done
    if [ "$(date +%s)" -ge "$end" ]; then sinfo -N -l || true; die "nodes not usable after 90s"; fi
    sleep 0.5
  done
}

# a batch job over all nodes with a login shell, as benchctl submits them; checks output + sacct
smoke_test() {
  local dir id st end out
  dir=$(mktemp -d /tmp/local-slurm-smoke.XXXXXX)
  cat > "$dir/job.sh" <<'EOF'
#!/bin/bash -l
echo "batch on $SLURMD_NODENAME nodes=$SLURM_JOB_NODELIST"
srun hostname | sort | uniq -c
EOF
  id=$(sbatch --parsable -p cpu -N "$SLURM_NODES" -n "$SLURM_NODES" -t 2 -J local-slurm-smoke \
         -o "$dir/out.txt" "$dir/job.sh") || die "smoke test: sbatch failed"
  id=${id%%;*}
  end=$(( $(date +%s) + 120 ))
  while :; do
    st=$(sacct -X -n -P -j "$id" -o State 2>/dev/null | head -n 1) || st=
    case "$st" in
      COMPLETED) break ;;
      FAILED*|CANCELLED*|TIMEOUT*|NODE_FAIL*|OUT_OF_MEMORY*|BOOT_FAIL*|DEADLINE*)
        cat "$dir/out.txt" 2>/dev/null || true; die "smoke job $id ended $st" ;;
    esac
    if [ "$(date +%s)" -ge "$end" ]; then
      squeue -t all -j "$id" || true; die "smoke job $id not COMPLETED in sacct after 120s (state '$st')"
    fi
    sleep 0.5
  done
  out=$(cat "$dir/out.txt" 2>/dev/null) || true
  grep -q '^batch on ' <<<"$out" || die "smoke job $id: no output"
  log "   smoke job $id COMPLETED: $(tr -s ' \n' ' ' <<<"$out")"
  rm -rf "$dir"
}

do_start() {
  # slurmdbd, sacctmgr and munge look up localhost and this host's name: fail early and clearly.
  getent hosts localhost >/dev/null || die "'localhost' does not resolve: add '127.0.0.1 localhost' to /etc/hosts"
  getent hosts "$HN" >/dev/null || log "warning: host name '$HN' does not resolve (munge will warn; slurm uses 127.0.0.1)"
  trap 'rc=$?; if [ "$rc" -ne 0 ]; then log "start FAILED (rc=$rc)"; dump_logs; fi' EXIT
  run_step "packages" install_packages
  run_step "config (cluster $CLUSTER, nodes $(node_list), $SLURM_CPUS CPUs each)" write_config
  run_step "munged" start_munge
  run_step "MariaDB" start_db
  run_step "slurmdbd" start_slurmdbd
  run_step "slurmctld" start_slurmctld
  run_step "slurmd x$SLURM_NODES" start_slurmds
  run_step "nodes idle" wait_nodes
  # only when this run (re)started slurmctld/slurmd: a running cluster may be busy with jobs
  if [ "$SLURM_SMOKE" = 1 ] && [ "$STARTED" = 1 ]; then run_step "smoke test" smoke_test; fi
  sinfo
  log "up after $(fmt_ms $(( $(now_ms) - T0 )))"
  echo "slurm ready"
}

do_daemon() { # do_daemon stop|start slurmctld|slurmdbd
  case "${1:-}:${2:-}" in
    stop:slurmctld) stop_pidfile /run/slurmctld.pid slurmctld ;;
    stop:slurmdbd) stop_pidfile /run/slurmdbd.pid slurmdbd ;;
    start:slurmctld) start_slurmctld; wait_nodes ;;
    start:slurmdbd) start_slurmdbd ;;
    *) echo "usage: $0 daemon stop|start slurmctld|slurmdbd" >&2; exit 2 ;;
  esac
}

case "${1:-}" in
  daemon) do_daemon "${2:-}" "${3:-}" ;;
  start)  do_start ;;
  stop)   do_stop "${2:-}" ;;
  status) do_status ;;
  *) echo "usage: $0 start | stop [--purge] | status | daemon stop|start slurmctld|slurmdbd" >&2; exit 2 ;;
esac
