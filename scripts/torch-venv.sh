# torch-venv.sh - sourced by setup-vllm.sh and setup-guidellm.sh: one way to build a venv around the CPU torch.
#
#   torch_venv TAG VENV CHECK PACKAGE...
#
# Does nothing when VENV's python already runs CHECK (python code). Else creates VENV, installs torch==2.13.0
# FIRST -- pip then takes the local CPU wheel; a package that pulls torch in on its own would get a multi-GB
# CUDA build -- and then the packages with torch pinned again, and checks CHECK.
torch_venv() {
  local tag=$1 venv=$2 check=$3 py=${PYTHON:-python3} t0
  shift 3
  if [ -x "$venv/bin/python" ] && "$venv/bin/python" -c "$check" 2>/dev/null; then
    echo "[$tag] $venv is ready"; return 0
  fi
  t0=$(date +%s)
  echo "[$tag] creating $venv (torch 2.13.0 CPU + $*)"
  "$py" -m venv "$venv"
  _pip "$venv" install --upgrade pip
  _pip "$venv" install torch==2.13.0
  _pip "$venv" install torch==2.13.0 "$@"
  TORCH_VENV_NEW=1
  TORCH_VENV_T0=$t0
}

torch_venv_check() {  # torch_venv_check TAG VENV CHECK: fail loudly unless CHECK runs
  "$2/bin/python" -c "$3" 2>/dev/null || { echo "[$1] the check failed in $2: $3" >&2; exit 1; }
  [ -z "${TORCH_VENV_NEW:-}" ] || echo "[$1] done in $(( $(date +%s) - TORCH_VENV_T0 )) s: $2"
}

_pip() {  # quiet pip; the local index's "Location ... is ignored" warnings are noise
  local venv=$1
  shift
  "$venv/bin/python" -m pip -q "$@" 2>&1 | grep -v -e '^WARNING: Location' -e '^WARNING: Skipping' || true
}
