#!/bin/bash -l
#SBATCH --job-name=benchctl-io500
#SBATCH --partition=cpu
#SBATCH --time=01:00:00
#SBATCH --nodes=1
#SBATCH --ntasks-per-node=16
#SBATCH --cpus-per-task=1
#SBATCH --output=/home/u/benchctl/jobs/io500-X/slurm-%j.out
#SBATCH --error=/home/u/benchctl/jobs/io500-X/slurm-%j.err
#SBATCH --signal=B:USR1@120

# benchctl: IO500 storage benchmark -- a batch job: runs `io500 config.ini` once over MPI, then exits.
# 1 node(s) x 16 rank(s) per node, mode standard; INI from io500.ini.j2
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
echo "BENCHCTL_SERVICE=io500"
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

RUN_DIR=/home/u/benchctl/jobs/io500-X
CONFIG=/home/u/benchctl/jobs/io500-X/config.ini
DATA_DIR=/home/u/benchctl/scratch/benchctl/io500/io500-X
RESULT_BASE=/home/u/benchctl/jobs/io500-X/results
IO500_LOG=/home/u/benchctl/jobs/io500-X/io500.out
# Relative paths in a user's INI are relative to the working directory: make it the run directory.
cd "$RUN_DIR" || { echo "benchctl: cannot enter $RUN_DIR" >&2; exit 1; }
[ -f "$CONFIG" ] || { echo "benchctl: IO500 config $CONFIG is missing" >&2; exit 1; }
mkdir -p "$DATA_DIR" "$RESULT_BASE" || { echo "benchctl: cannot create $DATA_DIR or $RESULT_BASE" >&2; exit 1; }
echo "BENCHCTL_CONFIG=$CONFIG"
echo "BENCHCTL_DATA_DIR=$DATA_DIR"


# ---- launcher ----------------------------------------------------------------------------------
# MeluXina: PMIx's munge security plugin fails under srun; LuxProvide's scripts set psec=native.
export PMIX_MCA_psec="${PMIX_MCA_psec:-native}"
if [ "${BENCHCTL_EXECUTOR:-}" != local ] && command -v srun >/dev/null 2>&1; then
  LAUNCH=(srun --mpi=pmix --nodes=1 --ntasks-per-node=16)
elif command -v mpiexec >/dev/null 2>&1; then
  # No Slurm (the local executor): one node, the same number of ranks per node.
  LAUNCH=(mpiexec -n 16)
else
  echo "benchctl: neither srun nor mpiexec found; running io500 as a single MPI process" >&2
  LAUNCH=()
fi
echo "BENCHCTL_LAUNCH=${LAUNCH[*]}"

# ---- benchmark ---------------------------------------------------------------------------------
# stdout goes to the job log (live progress) and to $IO500_LOG (the result-directory line is read back).
# The mode is a command-line flag of io500, not an INI key.
"${LAUNCH[@]}" io500 "$CONFIG" > >(tee "$IO500_LOG") &
SVC_PID=$!
echo "BENCHCTL_PID=$SVC_PID"
echo "BENCHCTL_STARTED=$(date -u +%Y-%m-%dT%H:%M:%SZ)"
wait "$SVC_PID"
rc=$?

# ---- results -----------------------------------------------------------------------------------
# tee may still be writing the last line when the launcher has exited: after a successful run, look for
# up to two seconds (a failed run never printed it).
RESULT_DIR=
for _ in $(seq 1 10); do
  RESULT_DIR=$(sed -n 's/^The result files are stored in the directory: *//p' "$IO500_LOG" 2>/dev/null | tail -n 1)
  [ -n "$RESULT_DIR" ] || [ "$rc" -ne 0 ] && break
  sleep 0.2
done
if [ -z "$RESULT_DIR" ]; then
  # No final line (killed, or an old release): the newest directory IO500 wrote a summary into.
  newest=$(ls -1td "$RESULT_BASE"/*/result_summary.txt "$RESULT_BASE"/result_summary.txt 2>/dev/null | head -n 1)
  [ -n "$newest" ] && RESULT_DIR=$(dirname "$newest")
fi
echo "BENCHCTL_RESULT_DIR=$RESULT_DIR"
echo "BENCHCTL_DONE=$rc"
echo "BENCHCTL_EXITED=$rc"
exit "$rc"
