#!/bin/bash -l
#SBATCH --job-name=benchctl-vllm
#SBATCH --account=p200981
#SBATCH --partition=gpu
#SBATCH --qos=default
#SBATCH --time=01:00:00
#SBATCH --nodes=1
#SBATCH --ntasks-per-node=1
#SBATCH --cpus-per-task=128
#SBATCH --gres=gpu:4
#SBATCH --output=/home/u/benchctl/jobs/vllm-X/slurm-%j.out
#SBATCH --error=/home/u/benchctl/jobs/vllm-X/slurm-%j.err
#SBATCH --signal=B:USR1@120

# benchctl: vLLM OpenAI-compatible server, readiness GET /health
# 1 node(s) x 4 GPU(s); tensor parallel 4, pipeline parallel 1
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
echo "BENCHCTL_SERVICE=vllm"
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
# srun under PMIx on MeluXina: without this, steps fail with a munge (psec) error.
export PMIX_MCA_psec=native
export VLLM_NO_USAGE_STATS=1 DO_NOT_TRACK=1
# Only the holder of this job's key may use /v1 (anyone on the cluster can reach the port).
: "${BENCHCTL_API_KEY:?benchctl: no API key in the job environment (it must be submitted with --export=ALL)}"
export VLLM_API_KEY="$BENCHCTL_API_KEY"
echo "BENCHCTL_MODEL="meta-llama/Llama-3.1-8B-Instruct

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
# ---- Hugging Face cache and token ------------------------------------------------------------
# Weights are cached on scratch (bound into the container at the same path) and shared by later jobs.
HF_CACHE=/project/scratch/p200981/u/benchctl/hf-cache
mkdir -p "$HF_CACHE"
export HF_HOME="$HF_CACHE"
echo "BENCHCTL_HF_CACHE=$HF_CACHE"  # the run manifest reads the model's snapshot revision from here
# The token comes from $HF_TOKEN in the environment sbatch passed on; this script never holds it.
if [ -n "${HF_TOKEN:-}" ]; then
  export HF_TOKEN="${HF_TOKEN}"
  export APPTAINERENV_HF_TOKEN="$HF_TOKEN"
  echo "BENCHCTL_HF_TOKEN_ENV=HF_TOKEN"
else
  echo "benchctl: HF_TOKEN is not set; only public models can be downloaded" >&2
fi

# ---- container image -------------------------------------------------------------------------
command -v apptainer >/dev/null 2>&1 || { echo "benchctl: apptainer not found on $(hostname) (module load Apptainer?)" >&2; exit 127; }
# Apptainer's temporary folder defaults to /tmp, which is RAM on diskless nodes (a pull unpacks a multi-GB
# image there), and its cache to the small home: both go to scratch unless the environment says otherwise.
_BC_APPTAINER=/project/scratch/p200981/u/benchctl/apptainer
export APPTAINER_TMPDIR="${APPTAINER_TMPDIR:-$_BC_APPTAINER/tmp}" APPTAINER_CACHEDIR="${APPTAINER_CACHEDIR:-$_BC_APPTAINER/cache}"
mkdir -p "$APPTAINER_TMPDIR" "$APPTAINER_CACHEDIR"
# Docker Hub allows 10 anonymous pulls an hour per address, and many nodes share one: export
# APPTAINER_DOCKER_USERNAME and APPTAINER_DOCKER_PASSWORD (a token) in your shell before benchctl; the job
# inherits them from sbatch (this script never holds them). `benchctl pull SERVICE` pulls once, ahead of a run.
SIF=/project/scratch/p200981/u/benchctl/sif/vllm-openai_v0.30.0.sif
if [ ! -f "$SIF" ]; then
  mkdir -p "$(dirname "$SIF")"
  # Pull to a job-private name and rename: two jobs pulling at once must not see a half-written image.
  apptainer pull --disable-cache "$SIF.$SLURM_JOB_ID.tmp" docker://vllm/vllm-openai:v0.30.0 && mv -f "$SIF.$SLURM_JOB_ID.tmp" "$SIF" \
    || { rm -f "$SIF.$SLURM_JOB_ID.tmp"; echo "benchctl: cannot pull "docker://vllm/vllm-openai:v0.30.0 >&2; exit 1; }
  # The image's digest for run manifests, computed once here (hashing GBs at every start would cost minutes).
  sha256sum "$SIF" | cut -d ' ' -f 1 > "$SIF.sha256.$SLURM_JOB_ID.tmp" && mv -f "$SIF.sha256.$SLURM_JOB_ID.tmp" "$SIF.sha256"
  echo "BENCHCTL_PULLED=SIF"
fi
echo "BENCHCTL_IMAGE=$SIF"
if [ -f "$SIF.sha256" ]; then echo "BENCHCTL_IMAGE_DIGEST=sha256:$(head -c 64 "$SIF.sha256")"; fi

echo "BENCHCTL_T_IMAGE=$(date +%s.%N)"
# Bind the service's directories and the site's file systems (those that exist on this node).
BINDS=()
for dir in /project/scratch/p200981/u/benchctl/hf-cache /project /mnt/tier1 /mnt/tier2; do
  [ -e "$dir" ] && BINDS+=(-B "$dir")
done

# ---- service -----------------------------------------------------------------------------------
# --host 0.0.0.0 under Slurm: reachable from the login node and other compute nodes; 127.0.0.1 when run locally.
apptainer exec --nv "${BINDS[@]}" "$SIF" python3 -m vllm.entrypoints.openai.api_server --model meta-llama/Llama-3.1-8B-Instruct --host 0.0.0.0 --port "$PORT" --tensor-parallel-size 4 &
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
  for _ in $(seq 1 1800); do
    kill -0 "$SVC_PID" 2>/dev/null || exit 0
    if _bc_http_ok /health; then
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
  echo "benchctl: service not ready after 1800 s" >&2
) &
wait "$SVC_PID"
rc=$?
echo "BENCHCTL_EXITED=$rc"
exit "$rc"
