#!/usr/bin/env python3
"""Measure the cold start of ``benchctl -e help`` (target: <= 0.5 s) and what it imports.

    .venv/bin/python scripts/bench_startup.py [--runs N]

Prints min/median/max wall time over N fresh processes, and the slowest imports of one run
(``python -X importtime``), so a regression shows which module brought it.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time

TARGET_S = 0.5


def one_run(env: dict[str, str]) -> float:
    start = time.perf_counter()
    subprocess.run([sys.executable, "-m", "benchctl", "--executor", "local", "-e", "help"], env=env,
                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=True)
    return time.perf_counter() - start


def slowest_imports(env: dict[str, str], top: int = 8) -> list[tuple[int, str]]:
    proc = subprocess.run([sys.executable, "-X", "importtime", "-m", "benchctl", "--executor", "local", "-e", "help"],
                          env=env, capture_output=True, text=True, check=True)
    rows = []
    for line in proc.stderr.splitlines():
        if not line.startswith("import time:") or "cumulative" in line:
            continue
        _self_us, cumulative, name = line.removeprefix("import time:").split("|")
        rows.append((int(cumulative), name.rstrip()))
    rows.sort(reverse=True)
    top_level = [(us, name) for us, name in rows if not name.startswith("  ")]
    return top_level[:top]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=15)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        env = dict(os.environ, HOME=tmp, XDG_STATE_HOME=f"{tmp}/state", XDG_CONFIG_HOME=f"{tmp}/config",
                   BENCHCTL_HOME=f"{tmp}/bc", BENCHCTL_CONFIG=f"{tmp}/none.toml")
        one_run(env)  # warm the OS page cache: "cold" here means a fresh interpreter, as a user sees it
        times = sorted(one_run(env) for _ in range(args.runs))
        base = []
        for _ in range(5):
            start = time.perf_counter()
            subprocess.run([sys.executable, "-c", "pass"], check=True)
            base.append(time.perf_counter() - start)
        print(f"benchctl -e help, {args.runs} runs: min {times[0]:.3f} s  median {statistics.median(times):.3f} s"
              f"  max {times[-1]:.3f} s  (target <= {TARGET_S} s)")
        print(f"bare python startup: median {statistics.median(base):.3f} s")
        print("slowest top-level imports (cumulative):")
        for us, name in slowest_imports(env):
            print(f"  {us / 1000:8.1f} ms  {name.strip()}")
        return 0 if statistics.median(times) <= TARGET_S else 1


if __name__ == "__main__":
    sys.exit(main())
