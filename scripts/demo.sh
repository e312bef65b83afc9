#!/usr/bin/env bash
# demo.sh - the main job on the embedded default, the `local` executor (no Slurm needed): the recipe
# examples/demo.yaml starts a real ChromaDB and the simulated LLM engine as jobs, waits until they answer,
# benchmarks them (vectors with recall; streaming LLM requests at 1, 4 and 16 users), writes each run's report
# (tables, PNG plots, a self-contained HTML page) and stops them. Results go to ~/benchctl/results/, the
# transcript to ~/benchctl/sessions/; the last line names the HTML report to open.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh chroma,report
exec .venv/bin/benchctl --executor local run examples/demo.yaml
