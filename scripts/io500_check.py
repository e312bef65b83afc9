#!/usr/bin/env python3
"""Read a folder of IO500 result directories (any release, 2017 on) and print, per directory, the parsed
phases and whether the scores recomputed with IO500's formula match the printed ones.

    .venv/bin/python scripts/io500_check.py RESULTS_FOLDER [MORE ...] [--brief] [--json]

A result directory is any folder holding ``result_summary.txt`` or ``result.txt`` (searched recursively, so a
checkout of the IO500 submissions or a tree of ``results/<timestamp>/`` folders both work). Exit status: 0 when
every directory adds up, 1 when one does not, 2 when nothing was found or a folder cannot be read.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Iterator
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchctl.bench.io500 import parse
from benchctl.bench.io500.kind import result_table


def result_dirs(root: Path) -> Iterator[Path]:
    """Every folder under ``root`` (itself included) with an IO500 result file, in sorted order."""
    for here, subdirs, files in os.walk(root):
        subdirs.sort()
        if parse.SUMMARY_FILE in files or parse.DETAIL_FILE in files:
            yield Path(here)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("folders", nargs="+", type=Path)
    ap.add_argument("--brief", action="store_true", help="one line per directory, no phase table")
    ap.add_argument("--json", action="store_true", help="one JSON object per directory (JSON lines)")
    args = ap.parse_args(argv)

    from rich.console import Console
    console = Console(highlight=False)
    seen = bad = 0
    for folder in args.folders:
        if not folder.is_dir():
            print(f"io500_check: {folder}: not a folder", file=sys.stderr)
            return 2
        for where in result_dirs(folder):
            seen += 1
            try:
                result = parse.load_result_dir(where)
            except (OSError, UnicodeDecodeError) as exc:
                print(f"io500_check: {where}: {exc}", file=sys.stderr)
                bad += 1
                continue
            adds_up = not result.mismatches and bool(result.recomputed)
            bad += not adds_up
            if args.json:
                print(json.dumps({"dir": str(where), **result.to_dict()}, allow_nan=False))
                continue
            verdict = ("scores match the phases" if adds_up else
                       "nothing to recompute (no score line or no scored phase)" if not result.recomputed else
                       "DOES NOT ADD UP: " + "; ".join(result.mismatches))
            phases = f"{len(result.phases)} phases ({sum(p.in_score for p in result.phases)} in SCORE)"
            print(f"{where}: {phases}, {'valid' if result.valid else 'invalid'}; {verdict}", flush=True)
            if not args.brief:
                console.print(result_table(result, title=str(where)))
    if not seen:
        print("io500_check: no result_summary.txt or result.txt found", file=sys.stderr)
        return 2
    if not args.json:
        print(f"{seen} result directories, {seen - bad} add up, {bad} do not")
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
