#!/bin/bash -l
#SBATCH --job-name=benchctl-monitor
#SBATCH --partition=cpu
#SBATCH --time=01:00:00
#SBATCH --nodes=1
#SBATCH --ntasks-per-node=1
#SBATCH --cpus-per-task=4
#SBATCH --output=/home/u/benchctl/jobs/monitor-X/slurm-%j.out
#SBATCH --error=/home/u/benchctl/jobs/monitor-X/slurm-%j.err
#SBATCH --signal=B:USR1@120

# benchctl: monitoring -- Prometheus (scrapes the service jobs that register in the targets folder), a
# Pushgateway (benchmark figures), in one job, each on a free
# port. Nobody else on the cluster gets in: Prometheus and the Pushgateway ask for this job's password
# (web.yml holds only its bcrypt hash); the passwords reach the job in
# its environment, never in this script.
# ---- environment -----------------------------------------------------------------------------
# Login shells (bash -l) reset PATH; put the host programs benchctl was installed with back in front.
export PATH=/opt/benchctl/bin:"$PATH"
export NO_COLOR=1
# What the run manifest records of the node: the modules loaded, and the GPUs with their driver.
echo "BENCHCTL_MODULES=${LOADEDMODULES:-}"
if command -v nvidia-smi >/dev/null 2>&1; then
  echo "BENCHCTL_GPU=$(nvidia-smi --query-gpu=count,name,driver_version --format=csv,noheader 2>/dev/null | head -n 1)"
fi
echo "BENCHCTL_T_STARTED=$(date +%s.%N)"  # the cold-start figures `check` shows: queued, image, start to ready
echo "BENCHCTL_JOBID=${SLURM_JOB_ID:-}"
echo "BENCHCTL_SERVICE=monitor"
echo "BENCHCTL_HOST=$(hostname)"
echo "BENCHCTL_NODE=${SLURMD_NODENAME:-$(hostname -s)}"
BENCHCTL_IP=$(hostname --ip-address 2>/dev/null | awk '{print $1}')
[ -n "$BENCHCTL_IP" ] || BENCHCTL_IP=$(hostname -I 2>/dev/null | awk '{print $1}')
echo "BENCHCTL_IP=$BENCHCTL_IP"
# ---- graceful stop ---------------------------------------------------------------------------
# `benchctl stop` sends TERM (scancel --signal=TERM), Slurm sends USR1 before the time limit: stop the
# service cleanly, then stay alive so the job still ends as CANCELLED / TIMEOUT, as the user expects.
# Installed first thing, so a stop while modules load or an image is pulled is clean too.
SVC_PID=
_bc_stop() {
  case "${_BC_STATE:-}" in
    stopped) exit 0 ;;   # the final cancel after a clean stop: end now
    stopping) return ;;  # a repeated signal while the service shuts down
  esac
  _BC_STATE=stopping
  echo "BENCHCTL_STOPPING=$1"
  kill -TERM "$SVC_PID" 2>/dev/null
  # What the service needs (other nodes' ranks, the monitor's Pushgateway and Grafana) stops with it.
  for item in "${_BC_NEEDED[@]}"; do kill -TERM "${item%%:*}" 2>/dev/null; done
  rc=0
  while kill -0 "$SVC_PID" 2>/dev/null; do wait "$SVC_PID" 2>/dev/null; rc=$?; done
  echo "BENCHCTL_STOPPED=$rc"
  _BC_STATE=stopped
  sleep "$2" & wait $!
  exit 0
}
trap '_bc_stop TERM 60' TERM
trap '_bc_stop USR1 300' USR1

# ---- port ------------------------------------------------------------------------------------
# Several services may share a node: take a random port nobody listens on (bash's /dev/tcp probes it), below
# the kernel's ephemeral range: an outgoing connection's local port there would make the bind fail later.
PORT=
_bc_eph=$(cut -f1 /proc/sys/net/ipv4/ip_local_port_range 2>/dev/null || echo 32768)
for _ in $(seq 1 100); do
  candidate=$(( 20000 + RANDOM % (_bc_eph > 21000 ? _bc_eph - 20000 : 30000) ))
  if ! (exec 3<>"/dev/tcp/127.0.0.1/$candidate") 2>/dev/null; then PORT=$candidate; break; fi
done
[ -n "$PORT" ] || { echo "benchctl: no free port found on $(hostname)" >&2; exit 1; }
echo "BENCHCTL_PORT=$PORT"
# Several services may share a node: take a random port nobody listens on (bash's /dev/tcp probes it), below
# the kernel's ephemeral range: an outgoing connection's local port there would make the bind fail later.
PUSH_PORT=
_bc_eph=$(cut -f1 /proc/sys/net/ipv4/ip_local_port_range 2>/dev/null || echo 32768)
for _ in $(seq 1 100); do
  candidate=$(( 20000 + RANDOM % (_bc_eph > 21000 ? _bc_eph - 20000 : 30000) ))
  [ "$candidate" = "$PORT" ] && continue
  if ! (exec 3<>"/dev/tcp/127.0.0.1/$candidate") 2>/dev/null; then PUSH_PORT=$candidate; break; fi
done
[ -n "$PUSH_PORT" ] || { echo "benchctl: no free Pushgateway port found on $(hostname)" >&2; exit 1; }
echo "BENCHCTL_PUSH_PORT=$PUSH_PORT"
RUN_DIR=/home/u/benchctl/jobs/monitor-X
DATA_DIR=/home/u/benchctl/scratch/benchctl/monitor/monitor-X
TARGETS=/home/u/benchctl/jobs/monitor-X/targets
mkdir -p "$DATA_DIR/prometheus" "$TARGETS"
echo "BENCHCTL_DATA_DIR=$DATA_DIR"
echo "BENCHCTL_TARGETS=$TARGETS"
_BC_CURL_CONFIG="$RUN_DIR/curl.conf"
# benchctl wrote Prometheus's configuration with placeholders for the ports picked here (digits only).
sed -e "s/@PROM_PORT@/$PORT/g" -e "s/@PUSH_PORT@/$PUSH_PORT/g" "$RUN_DIR/prometheus.yml.in" > "$RUN_DIR/prometheus.yml"


# On the host: Debian names the Pushgateway prometheus-pushgateway.
PUSHGATEWAY=$(command -v pushgateway || command -v prometheus-pushgateway) || { echo "benchctl: no pushgateway on $(hostname)" >&2; exit 127; }
# ---- Pushgateway -------------------------------------------------------------------------------
"$PUSHGATEWAY" --web.listen-address=127.0.0.1:"$PUSH_PORT" --web.config.file="$RUN_DIR/web.yml" --persistence.file="$DATA_DIR/pushgateway.db" &
_BC_NEEDED=("$!:the Pushgateway")
_BC_ALSO_READY=("$PUSH_PORT:/-/ready")
# ---- Prometheus (the job's main service) ----------------------------------------------------------------
prometheus --config.file="$RUN_DIR/prometheus.yml" --storage.tsdb.path="$DATA_DIR/prometheus" --storage.tsdb.retention.time=30d --web.listen-address=127.0.0.1:"$PORT" --web.config.file="$RUN_DIR/web.yml" --web.enable-lifecycle &
SVC_PID=$!
echo "BENCHCTL_PID=$SVC_PID"
# The service needs the steps in _BC_NEEDED ("pid:what", the other nodes): when one ends, stop the service,
# so the job fails naming it instead of the server waiting for a peer that is gone.
(
  while kill -0 "$SVC_PID" 2>/dev/null; do
    for item in "${_BC_NEEDED[@]}"; do
      kill -0 "${item%%:*}" 2>/dev/null && continue
      echo "benchctl: ${item#*:} ended while the service needed it; stopping the service" >&2
      kill -TERM "$SVC_PID" 2>/dev/null
      # A server still starting up may wait for its peer instead of stopping: then it is killed.
      for _ in $(seq 1 30); do kill -0 "$SVC_PID" 2>/dev/null || exit 0; sleep 1; done
      kill -KILL "$SVC_PID" 2>/dev/null
      exit 0
    done
    sleep 2
  done
) &
# ---- readiness: poll the service's own health endpoint, then print the READY marker -------------
# PATH [PORT]: the health check, with the job's password from a 0600 curl config (never on a command line).
_bc_http_ok() {
  curl -fsS -K "$_BC_CURL_CONFIG" -o /dev/null --max-time 2 "http://127.0.0.1:${2:-$PORT}$1" 2>/dev/null
}
# Every part of the service must answer ("PORT:PATH" in _BC_ALSO_READY), not only the main one.
_bc_also_ready() {
  for item in "${_BC_ALSO_READY[@]}"; do _bc_http_ok "${item#*:}" "${item%%:*}" || return 1; done
}
# The answer must come from THIS job's service: another job (or user) on the node may hold the port, and
# its server would answer the health check. Ready = a process of this job's service tree listens on $PORT.
_bc_owns_port() {
  local out p
  out=$(ss -H -ltnp "sport = :$PORT" 2>/dev/null) || return 0  # no usable ss here: cannot tell, trust
  for p in $(printf '%s\n' "$out" | grep -o 'pid=[0-9]*' | cut -d= -f2); do
    while [ -n "$p" ] && [ "$p" -gt 1 ]; do
      [ "$p" = "$SVC_PID" ] && return 0
      p=$(sed 's/.*) //' "/proc/$p/stat" 2>/dev/null | cut -d' ' -f2)
    done
  done
  return 1
}
(
  warned=
  for _ in $(seq 1 300); do
    kill -0 "$SVC_PID" 2>/dev/null || exit 0
    if _bc_http_ok /-/ready && _bc_also_ready; then
      if _bc_owns_port; then
        echo "BENCHCTL_READY=$(date -u +%Y-%m-%dT%H:%M:%SZ)"
        echo "BENCHCTL_T_READY=$(date +%s.%N)"
        exit 0
      fi
      [ -n "$warned" ] || echo "benchctl: port $PORT answers, but not from this job's service: another process holds it" >&2
      warned=1
    fi
    sleep 1
  done
  echo "benchctl: service not ready after 300 s" >&2
) &
wait "$SVC_PID"
rc=$?
# A service stopped because a needed step ended has failed, whatever its own exit status.
for item in "${_BC_NEEDED[@]}"; do kill -0 "${item%%:*}" 2>/dev/null || { [ "$rc" -ne 0 ] || rc=1; }; done
echo "BENCHCTL_EXITED=$rc"
exit "$rc"
