"""Where benchmark results go, in one envelope for every kind (llm, vector, io500).

    $BENCHCTL_HOME/results/<run-id>/run.json        the envelope (schema_version, config, metrics, points...)
    $BENCHCTL_HOME/results/<run-id>/requests.jsonl  one line per request, written as the run goes
    $BENCHCTL_HOME/results/<run-id>/summary.csv     one row per sweep point
    $BENCHCTL_HOME/results/index.jsonl              one line per run, for fast listing
"""

from __future__ import annotations

import csv
import json
import os
import secrets
import socket
import sys
import threading
from collections.abc import Mapping, Sequence
from datetime import datetime, timezone
from pathlib import Path
from typing import IO, Any

from benchctl import __version__

SCHEMA_VERSION = 1


def git_sha(start: Path | None = None) -> str:
    """The commit benchctl runs from (a source checkout), read from .git without running git."""
    here = (start or Path(__file__)).resolve()
    for parent in here.parents:
        head = parent / ".git" / "HEAD"
        if head.is_file():
            ref = head.read_text().strip()
            if not ref.startswith("ref: "):
                return ref
            name = ref[5:]
            loose = parent / ".git" / name
            if loose.is_file():
                return loose.read_text().strip()
            packed = parent / ".git" / "packed-refs"
            if packed.is_file():
                for line in packed.read_text().splitlines():
                    if line.endswith(" " + name):
                        return line.split(" ", 1)[0]
            return ""
    return ""


def now_iso() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="milliseconds")


class RunWriter:
    """Creates a run directory and writes the per-request log as the run goes (thread-safe)."""

    def __init__(self, home: Path, kind: str, target: str) -> None:
        stamp = datetime.now().strftime("%Y%m%d-%H%M%S")
        self.run_id = f"{stamp}-{kind}-{target}-{secrets.token_hex(2)}"
        self.kind = kind
        self.root = home / "results"
        self.dir = self.root / self.run_id
        self.dir.mkdir(parents=True, exist_ok=True)
        self.started_at = now_iso()
        self._lock = threading.Lock()
        self._requests: IO[str] = (self.dir / "requests.jsonl").open("a", buffering=1)

    def request(self, record: Mapping[str, Any]) -> None:
        line = json.dumps(record, separators=(",", ":"))
        with self._lock:
            self._requests.write(line + "\n")

    def envelope(self, *, service: Mapping[str, Any], config: Mapping[str, Any], metrics: Mapping[str, Any],
                 points: Sequence[Mapping[str, Any]], client_health: Mapping[str, Any],
                 errors: Mapping[str, int], extra: Mapping[str, Any] | None = None) -> dict[str, Any]:
        """The run JSON; ``extra`` adds kind-specific top-level keys (never replacing the common ones)."""
        common = {
            "schema_version": SCHEMA_VERSION, "run_id": self.run_id, "kind": self.kind,
            "started_at": self.started_at, "ended_at": now_iso(), "benchctl_version": __version__,
            "git_sha": git_sha(), "host": socket.gethostname(), "command_line": " ".join(sys.argv),
            "service": dict(service), "config": dict(config), "metrics": dict(metrics), "points": list(points),
            "client_health": dict(client_health), "errors": dict(errors),
        }
        return {**{k: v for k, v in (extra or {}).items() if k not in common}, **common}

    def finish(self, envelope: Mapping[str, Any], *, extra_output: Path | None = None) -> Path:
        """Write run.json (+ summary.csv of the points, + a copy at ``extra_output``) and index the run."""
        with self._lock:
            self._requests.close()
        text = json.dumps(envelope, indent=1, default=str)
        path = self.dir / "run.json"
        path.write_text(text)
        if extra_output is not None:
            extra_output.parent.mkdir(parents=True, exist_ok=True)
            extra_output.write_text(text)
        points = envelope.get("points") or []
        if points:
            flat = [_flatten(p) for p in points]
            fields = list(dict.fromkeys(k for row in flat for k in row))
            with (self.dir / "summary.csv").open("w", newline="") as fh:
                writer = csv.DictWriter(fh, fieldnames=fields)
                writer.writeheader()
                writer.writerows(flat)
        index = {"run_id": self.run_id, "kind": self.kind, "started_at": envelope.get("started_at"),
                 "service": envelope.get("service", {}).get("name"), "dir": str(self.dir)}
        with (self.root / "index.jsonl").open("a") as fh:
            fh.write(json.dumps(index) + "\n")
        os.chmod(path, 0o644)
        return path


def _flatten(data: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in data.items():
        if isinstance(value, Mapping):
            out.update(_flatten(value, f"{prefix}{key}."))
        elif not isinstance(value, (list, tuple)):
            out[f"{prefix}{key}"] = value
    return out
