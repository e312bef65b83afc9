#!/bin/bash -l
#SBATCH --job-name=benchctl-pull
#SBATCH --account=p200981
#SBATCH --partition=cpu
#SBATCH --qos=default
#SBATCH --time=01:00:00
#SBATCH --nodes=1
#SBATCH --ntasks-per-node=1
#SBATCH --cpus-per-task=2
#SBATCH --output=/home/u/benchctl/jobs/pull-X/slurm-%j.out
#SBATCH --error=/home/u/benchctl/jobs/pull-X/slurm-%j.err
#SBATCH --signal=B:USR1@120

# benchctl: pull container images into the SIF cache once, ahead of a run (many jobs pulling at once from
# Docker Hub would hit its anonymous pull limit)

# ---- environment -----------------------------------------------------------------------------
if command -v module >/dev/null 2>&1; then
  module load env/release/2025.1
  module load Apptainer/1.4.2-GCCcore-14.2.0
else
  echo "benchctl: no 'module' command on $(hostname); skipping module loads" >&2
fi
export NO_COLOR=1
# What the run manifest records of the node: the modules loaded, and the GPUs with their driver.
echo "BENCHCTL_MODULES=${LOADEDMODULES:-}"
if command -v nvidia-smi >/dev/null 2>&1; then
  echo "BENCHCTL_GPU=$(nvidia-smi --query-gpu=count,name,driver_version --format=csv,noheader 2>/dev/null | head -n 1)"
fi
echo "BENCHCTL_T_STARTED=$(date +%s.%N)"  # the cold-start figures `check` shows: queued, image, start to ready
echo "BENCHCTL_JOBID=${SLURM_JOB_ID:-}"
echo "BENCHCTL_SERVICE=pull"
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
command -v apptainer >/dev/null 2>&1 || { echo "benchctl: apptainer not found on $(hostname) (module load Apptainer?)" >&2; exit 127; }
# Apptainer's temporary folder defaults to /tmp, which is RAM on diskless nodes (a pull unpacks a multi-GB
# image there), and its cache to the small home: both go to scratch unless the environment says otherwise.
_BC_APPTAINER=/project/scratch/p200981/u/benchctl/apptainer
export APPTAINER_TMPDIR="${APPTAINER_TMPDIR:-$_BC_APPTAINER/tmp}" APPTAINER_CACHEDIR="${APPTAINER_CACHEDIR:-$_BC_APPTAINER/cache}"
mkdir -p "$APPTAINER_TMPDIR" "$APPTAINER_CACHEDIR"
# Docker Hub allows 10 anonymous pulls an hour per address, and many nodes share one: export
# APPTAINER_DOCKER_USERNAME and APPTAINER_DOCKER_PASSWORD (a token) in your shell before benchctl; the job
# inherits them from sbatch (this script never holds them). `benchctl pull SERVICE` pulls once, ahead of a run.
rc=0
SIF=/project/scratch/p200981/u/benchctl/sif/chroma_1.5.9.sif
if [ -f "$SIF" ]; then
  echo "BENCHCTL_PULLED=$SIF (already there)"
else
  mkdir -p "$(dirname "$SIF")"
  # A job-private name renamed when complete: a service job starting meanwhile never sees half an image.
  if apptainer pull --disable-cache "$SIF.$SLURM_JOB_ID.tmp" docker://chromadb/chroma:1.5.9 && mv -f "$SIF.$SLURM_JOB_ID.tmp" "$SIF"; then
    # Its digest for run manifests (the service jobs print it instead of hashing GBs at every start).
    sha256sum "$SIF" | cut -d ' ' -f 1 > "$SIF.sha256.$SLURM_JOB_ID.tmp" && mv -f "$SIF.sha256.$SLURM_JOB_ID.tmp" "$SIF.sha256"
    echo "BENCHCTL_PULLED=$SIF"
  else
    rm -f "$SIF.$SLURM_JOB_ID.tmp"
    echo "benchctl: cannot pull "docker://chromadb/chroma:1.5.9 >&2
    rc=1
  fi
fi
echo "BENCHCTL_DONE=$rc"
echo "BENCHCTL_EXITED=$rc"
exit "$rc"
