#!/bin/bash -l
#SBATCH --job-name=benchctl-qdrant
#SBATCH --partition=cpu
#SBATCH --time=01:00:00
#SBATCH --nodes=1
#SBATCH --ntasks-per-node=1
#SBATCH --cpus-per-task=4
#SBATCH --output=/home/u/benchctl/jobs/qdrant-X/slurm-%j.out
#SBATCH --error=/home/u/benchctl/jobs/qdrant-X/slurm-%j.err
#SBATCH --signal=B:USR1@120

# benchctl: Qdrant vector database (REST API), readiness GET /readyz
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
echo "BENCHCTL_SERVICE=qdrant"
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
GRPC_PORT=
_bc_eph=$(cut -f1 /proc/sys/net/ipv4/ip_local_port_range 2>/dev/null || echo 32768)
for _ in $(seq 1 100); do
  candidate=$(( 20000 + RANDOM % (_bc_eph > 21000 ? _bc_eph - 20000 : 30000) ))
  [ "$candidate" = "$PORT" ] && continue
  if ! (exec 3<>"/dev/tcp/127.0.0.1/$candidate") 2>/dev/null; then GRPC_PORT=$candidate; break; fi
done
[ -n "$GRPC_PORT" ] || { echo "benchctl: no free gRPC port found on $(hostname)" >&2; exit 1; }
echo "BENCHCTL_GRPC_PORT=$GRPC_PORT"
DATA_DIR=/home/u/benchctl/scratch/benchctl/qdrant/qdrant-X
mkdir -p "$DATA_DIR/storage" "$DATA_DIR/snapshots"
echo "BENCHCTL_DATA_DIR=$DATA_DIR"


# ---- configuration -----------------------------------------------------------------------------
# Qdrant reads config/*.yaml relative to its working directory, then QDRANT__SECTION__KEY variables (which
# win). Run from the data dir (writable, bound into the container) and set every path explicitly: the
# image's own /qdrant/storage is read-only under Apptainer. Apptainer passes this environment through.
cd "$DATA_DIR" || exit 1
export QDRANT__STORAGE__STORAGE_PATH="$DATA_DIR/storage"
export QDRANT__STORAGE__SNAPSHOTS_PATH="$DATA_DIR/snapshots"
# 0.0.0.0 under Slurm: reachable from the login node and other compute nodes; 127.0.0.1 when run locally.
export QDRANT__SERVICE__HOST=127.0.0.1
export QDRANT__SERVICE__HTTP_PORT="$PORT"
export QDRANT__SERVICE__GRPC_PORT="$GRPC_PORT"
export QDRANT__TELEMETRY_DISABLED=true
# This job's own key (benchctl hands it over in the environment; it is never written here).
: "${BENCHCTL_API_KEY:?benchctl: no API key in the job environment (it must be submitted with --export=ALL)}"
export QDRANT__SERVICE__API_KEY="$BENCHCTL_API_KEY"
# ---- service -----------------------------------------------------------------------------------
qdrant &
SVC_PID=$!
echo "BENCHCTL_PID=$SVC_PID"
# ---- readiness: poll the service's own health endpoint, then print the READY marker -------------
_bc_http_ok() {
  if command -v curl >/dev/null 2>&1; then
    curl -fsS -o /dev/null --max-time 2 "http://127.0.0.1:$PORT$1" 2>/dev/null
  else
    exec 3<>"/dev/tcp/127.0.0.1/$PORT" 2>/dev/null || return 1
    printf 'GET %s HTTP/1.0\r\nHost: localhost\r\n\r\n' "$1" >&3
    head -n 1 <&3 | grep -q ' 200 '
  fi
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
    if _bc_http_ok /readyz; then
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
echo "BENCHCTL_EXITED=$rc"
exit "$rc"
