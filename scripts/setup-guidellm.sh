#!/usr/bin/env bash
# setup-guidellm.sh [VENV] - build the venv GuideLLM runs from (default .venv-guidellm), for the side-by-side
# comparison in scripts/bench_llm_client.py. guidellm pulls in torch (via transformers): see torch-venv.sh.
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/torch-venv.sh
VENV=${1:-.venv-guidellm}
CHECK='import guidellm, transformers, torch'
torch_venv setup-guidellm "$VENV" "$CHECK" "guidellm==${GUIDELLM_VERSION:-0.8.1}"
torch_venv_check setup-guidellm "$VENV" "$CHECK"
