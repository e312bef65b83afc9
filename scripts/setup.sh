#!/usr/bin/env bash
# setup.sh [EXTRA] - create .venv and install benchctl into it (editable) with the given extra
# ("chroma" for the demo, "test" for the test suite). Works on a fresh Debian machine as root:
# installs python3 + venv support from Debian's packages when missing.
set -euo pipefail
cd "$(dirname "$0")/.."
EXTRA=${1:-chroma}
PY=${PYTHON:-python3}

apt_install() {
  [ "$(id -u)" -eq 0 ] || { echo "setup.sh: need root to install $* (or install them yourself)" >&2; exit 1; }
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "$@" >/dev/null
}

command -v "$PY" >/dev/null || apt_install python3 python3-venv python3-pip
# Debian's python3 ships venv without ensurepip until python3-venv is installed.
"$PY" -c 'import ensurepip, venv' 2>/dev/null || apt_install python3-venv
command -v curl >/dev/null || apt_install curl ca-certificates
if [ "$EXTRA" = test ]; then
  # The monitoring tests run Debian's Prometheus, Pushgateway and node-exporter on loopback ports.
  for bin in prometheus promtool prometheus-pushgateway prometheus-node-exporter; do
    command -v "$bin" >/dev/null || { apt_install prometheus prometheus-pushgateway prometheus-node-exporter; break; }
  done
  # The HTML report is checked in a real headless browser (tests/integration/test_report_browser.py).
  command -v chromium >/dev/null || apt_install chromium
fi

if [ ! -x .venv/bin/python ]; then
  echo "[setup] creating .venv with $("$PY" --version)"
  "$PY" -m venv .venv
fi
echo "[setup] installing benchctl[$EXTRA] into .venv"
.venv/bin/python -m pip install -q --upgrade pip 2>&1 | grep -v '^WARNING: Location' || true
.venv/bin/python -m pip install -q -e ".[$EXTRA]" 2>&1 | grep -v '^WARNING: Location' || true
.venv/bin/python -c 'import benchctl' || { echo "[setup] install failed" >&2; exit 1; }
echo "[setup] done: .venv/bin/benchctl"
