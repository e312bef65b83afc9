#!/usr/bin/env bash
# setup-guidellm.sh [VENV] - build the venv GuideLLM runs from (default .venv-guidellm), for the side-by-side
# comparison in scripts/bench_llm_client.py. guidellm pulls in torch (via transformers); asking for
# torch==2.13.0 FIRST keeps pip on the local CPU wheel instead of a multi-GB CUDA build.
set -euo pipefail
cd "$(dirname "$0")/.."
VENV=${1:-.venv-guidellm}
PY=${PYTHON:-python3}
GUIDELLM=${GUIDELLM_VERSION:-0.8.1}
if [ -x "$VENV/bin/guidellm" ] && "$VENV/bin/python" -c 'import guidellm, transformers, torch' 2>/dev/null; then
  echo "[setup-guidellm] $VENV already has guidellm"; exit 0
fi
T0=$(date +%s)
echo "[setup-guidellm] creating $VENV (torch 2.13.0 CPU + guidellm $GUIDELLM)"
"$PY" -m venv "$VENV"
"$VENV/bin/python" -m pip install -q --upgrade pip 2>&1 | grep -v '^WARNING: Location' || true
"$VENV/bin/python" -m pip install -q torch==2.13.0 2>&1 | grep -v '^WARNING: Location' || true
"$VENV/bin/python" -m pip install -q torch==2.13.0 "guidellm==$GUIDELLM" 2>&1 | grep -v '^WARNING: Location' || true
"$VENV/bin/python" -c 'import guidellm, transformers, torch' 2>/dev/null \
  || { echo "[setup-guidellm] guidellm does not import in $VENV" >&2; exit 1; }
echo "[setup-guidellm] done in $(( $(date +%s) - T0 )) s: $VENV/bin/guidellm"
