#!/usr/bin/env bash
# demo.sh - the main job on the embedded default, the `local` executor (no Slurm needed): a real ChromaDB and
# the simulated LLM engine started as jobs, waited for until they answer, benchmarked (vectors with recall;
# streaming LLM requests at 1 and 8 users), their logs shown, then stopped. Results go to
# ~/benchctl/results/, the transcript to ~/benchctl/sessions/.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh chroma
exec .venv/bin/benchctl --executor local \
  -e "start chroma; start llm-sim --ttft-ms 50 --itl-ms 10 --output-tokens 64; check chroma --wait --timeout 120;
      check llm-sim --wait --timeout 60; bench chroma --n 5000 --dim 64 --concurrency 1,4 --duration 3;
      bench llm-sim --concurrency 1,8 --duration 5 --output-tokens 64; logs chroma -n 5; status; stop all; save"
