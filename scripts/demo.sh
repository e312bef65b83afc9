#!/usr/bin/env bash
# demo.sh - the main job on the embedded default: a ChromaDB service run by the `local` executor
# (no Slurm needed): start it, wait until it answers, show its log, then stop it. The transcript is
# saved under ~/benchctl/sessions/.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh chroma
exec .venv/bin/benchctl --executor local \
  -e "start chroma; check chroma --wait --timeout 120; logs chroma -n 5; status; stop chroma; save"
