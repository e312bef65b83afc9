#!/bin/bash -l
#SBATCH --job-name=benchctl-bench-client
#SBATCH --partition=cpu
#SBATCH --time=01:00:00
#SBATCH --nodes=2
#SBATCH --ntasks-per-node=2
#SBATCH --cpus-per-task=2
#SBATCH --output=/home/u/benchctl/jobs/bench-client-X/slurm-%j.out
#SBATCH --error=/home/u/benchctl/jobs/bench-client-X/slurm-%j.err
#SBATCH --signal=B:USR1@120

# benchctl: the benchmark client as a job -- 4 task(s) of `python -m benchctl.bench.client.task`,
# each sending its share of the load and writing its own records into the job's client/ folder.
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
echo "BENCHCTL_SERVICE=bench-client"
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

# ---- client tasks ------------------------------------------------------------------------------
# The python benchctl runs with (on the shared file system): the client is benchctl itself, no container.
PY=/home/u/benchctl-venv/bin/python
"$PY" -c 'import benchctl.bench.client.task' || { echo "benchctl: $PY cannot import benchctl on $(hostname)" >&2; exit 1; }
# The local executor has no srun: this script starts the tasks, each told its index.
(
  pids=()
  for i in $(seq 0 3); do
    "$PY" -u -m benchctl.bench.client.task --spec /home/u/benchctl/jobs/bench-client-X/spec.json --out /home/u/benchctl/jobs/bench-client-X/client --task "$i" --of 4 &
    pids+=($!)
  done
  rc=0
  for pid in "${pids[@]}"; do wait "$pid" || rc=$?; done
  exit "$rc"
) &
SVC_PID=$!
echo "BENCHCTL_PID=$SVC_PID"
wait "$SVC_PID"
rc=$?
echo "BENCHCTL_EXITED=$rc"
exit "$rc"
