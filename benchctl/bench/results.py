"""Benchmark results: the typed ``RunResult`` / ``PointResult`` every bench kind returns, where they are
written, and how they are read back.

    $BENCHCTL_HOME/results/<run-id>/run.json        the envelope (schema_version, config, metrics, points...)
    $BENCHCTL_HOME/results/<run-id>/requests.jsonl  one line per request, written as the run goes
    $BENCHCTL_HOME/results/<run-id>/summary.csv     one row per sweep point
    $BENCHCTL_HOME/results/index.jsonl              one line per run, for fast listing

A kind builds a ``RunResult`` (what it measured); the ``RunWriter`` stamps the run's identity (id, times,
host, version, command line) and writes the files. ``read_run`` loads a ``run.json`` of any version of this
schema back into a ``RunResult``; ``iter_runs`` walks the index without opening every run (each line holds
the run's model, status and headline figures for ``results``; lines written before they existed still
load); ``unlist_run`` takes a run out of the index, leaving its files.
"""

from __future__ import annotations

import contextlib
import csv
import fcntl
import io
import json
import os
import secrets
import socket
import sys
import threading
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import IO, Any

from benchctl import __version__
from benchctl.executors.files import private_mkdir
from benchctl.redact import mask_learned, redact_value

# 2: failures counted by type moved from "errors" to "error_counts" ("errors" is the LLM kind's vLLM-shaped list
# of one error text per request); a schema-1 run.json still loads and is written back as it was.
SCHEMA_VERSION = 2
# The envelope's own keys, in the order run.json has them after the kind's extra top-level keys.
_COMMON = ("schema_version", "run_id", "kind", "started_at", "ended_at", "benchctl_version", "git_sha", "host",
           "command_line", "service", "config", "metrics", "points", "client_health", "error_counts")


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


@dataclass
class PointResult:
    """One sweep point: its figures under the kind's own keys (LLM: vLLM's names), stored flat in run.json."""

    values: dict[str, Any] = field(default_factory=dict)

    def __getitem__(self, key: str) -> Any:
        return self.values[key]

    def get(self, key: str, default: Any = None) -> Any:
        return self.values.get(key, default)

    def to_dict(self) -> dict[str, Any]:
        return dict(self.values)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> PointResult:
        return cls(dict(data))


@dataclass
class RunResult:
    """What one benchmark run measured, in the one envelope of every kind (llm, vector, io500, ...).

    ``extra`` holds a kind's own top-level keys (the LLM kind writes vLLM's result keys there so tools made
    for ``vllm bench serve`` read the file); ``detail`` is the kind's typed in-memory result (not stored).
    """

    kind: str
    service: dict[str, Any] = field(default_factory=dict)
    config: dict[str, Any] = field(default_factory=dict)
    metrics: dict[str, Any] = field(default_factory=dict)
    points: list[PointResult] = field(default_factory=list)
    client_health: dict[str, Any] = field(default_factory=dict)
    errors: dict[str, int] = field(default_factory=dict)
    extra: dict[str, Any] = field(default_factory=dict)
    run_id: str = ""
    started_at: str = ""
    ended_at: str = ""
    benchctl_version: str = __version__
    git_sha: str = ""
    host: str = ""
    command_line: str = ""
    schema_version: int = SCHEMA_VERSION
    path: Path | None = None  # run.json, once written or read
    detail: Any = None

    @property
    def status(self) -> str:
        """``complete``, or ``interrupted`` (Ctrl-C/SIGTERM: the points so far, the last one marked)."""
        return str(self.extra.get("status", "complete"))

    @status.setter
    def status(self, value: str) -> None:
        self.extra["status"] = value

    def to_dict(self) -> dict[str, Any]:
        common = {
            "schema_version": self.schema_version, "run_id": self.run_id, "kind": self.kind,
            "started_at": self.started_at, "ended_at": self.ended_at, "benchctl_version": self.benchctl_version,
            "git_sha": self.git_sha, "host": self.host, "command_line": self.command_line,
            "service": dict(self.service), "config": dict(self.config), "metrics": dict(self.metrics),
            "points": [p.to_dict() for p in self.points], "client_health": dict(self.client_health),
            # schema 1 had the counts under "errors"
            ("errors" if self.schema_version < 2 else "error_counts"): dict(self.errors),
        }
        return {**{k: v for k, v in self.extra.items() if k not in common}, **common}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], path: Path | None = None) -> RunResult:
        """A run.json's content (missing keys get their defaults; unknown top-level keys land in ``extra``)."""
        def mapping(key: str) -> dict[str, Any]:
            value = data.get(key)
            return dict(value) if isinstance(value, Mapping) else {}

        points = [PointResult.from_dict(p) for p in data.get("points") or [] if isinstance(p, Mapping)]
        return cls(
            kind=str(data.get("kind", "")), service=mapping("service"), config=mapping("config"),
            metrics=mapping("metrics"), points=points, client_health=mapping("client_health"),
            errors=mapping("error_counts" if "error_counts" in data else "errors"),
            extra={k: v for k, v in data.items()
                   if k not in _COMMON and not (k == "errors" and int(data.get("schema_version", SCHEMA_VERSION)) < 2)},
            run_id=str(data.get("run_id", "")), started_at=str(data.get("started_at", "")),
            ended_at=str(data.get("ended_at", "")), benchctl_version=str(data.get("benchctl_version", "")),
            git_sha=str(data.get("git_sha", "")), host=str(data.get("host", "")),
            command_line=str(data.get("command_line", "")),
            schema_version=int(data.get("schema_version", SCHEMA_VERSION)), path=path,
        )


class ResultError(ValueError):
    """A run file benchctl cannot read; the message names it."""


def read_run(path: str | Path) -> RunResult:
    """Load ``run.json`` (or a run folder holding one) into a ``RunResult``."""
    path = Path(path)
    if path.is_dir():
        path = path / "run.json"
    try:
        data = json.loads(path.read_text())
    except OSError as exc:
        raise ResultError(f"cannot read {path}: {exc.strerror}") from None
    except ValueError as exc:
        raise ResultError(f"{path} is not valid JSON: {exc}") from None
    if not isinstance(data, Mapping):
        raise ResultError(f"{path}: expected a JSON object")
    if int(data.get("schema_version", SCHEMA_VERSION)) > SCHEMA_VERSION:
        raise ResultError(f"{path} was written by a newer benchctl (schema {data.get('schema_version')})")
    return RunResult.from_dict(data, path)


@dataclass(frozen=True)
class RunEntry:
    """One line of ``results/index.jsonl``: enough to list a run without opening it."""

    run_id: str
    kind: str
    started_at: str
    service: str
    dir: str
    # Written since `results` lists runs; "" / {} on older lines (the listing then reads those few run.json).
    model: str = ""
    status: str = ""
    headline: Mapping[str, Any] = field(default_factory=dict, hash=False)

    def load(self) -> RunResult:
        return read_run(Path(self.dir) / "run.json")


def iter_runs(root: str | Path) -> Iterator[RunEntry]:
    """The runs listed in ``<root>/index.jsonl`` (``root`` = the results folder), oldest first; damaged
    lines are skipped."""
    index = Path(root) / "index.jsonl"
    try:
        fh = index.open()
    except OSError:
        return
    with fh:
        for line in fh:
            try:
                data = json.loads(line)
            except ValueError:
                continue
            if isinstance(data, dict) and data.get("run_id"):
                head = data.get("headline")
                yield RunEntry(str(data["run_id"]), str(data.get("kind", "")), str(data.get("started_at", "")),
                               str(data.get("service") or ""), str(data.get("dir", "")), str(data.get("model") or ""),
                               str(data.get("status") or ""), head if isinstance(head, dict) else {})


@contextlib.contextmanager
def _index_locked(root: Path) -> Iterator[None]:
    """Held while the index is appended to or rewritten: a run finishing in another session while
    ``unlist_run`` rewrites the file must not lose its line."""
    fd = os.open(root / ".index.lock", os.O_WRONLY | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)  # releases the lock


def unlist_run(root: str | Path, run_id: str) -> bool:
    """Take ``run_id`` out of ``<root>/index.jsonl`` (its folder stays); False when it was not listed. Damaged
    lines are kept as they were."""
    root = Path(root)
    index = root / "index.jsonl"
    with _index_locked(root):
        try:
            lines = index.read_text().splitlines(keepends=True)
        except FileNotFoundError:
            return False

        def listed(line: str) -> bool:
            try:
                data = json.loads(line)
            except ValueError:
                return False
            return isinstance(data, dict) and data.get("run_id") == run_id

        kept = [line for line in lines if not listed(line)]
        if len(kept) == len(lines):
            return False
        _write_atomic(index, "".join(kept))
    return True


class RunWriter:
    """Creates a run directory and writes the per-request log as the run goes (thread-safe)."""

    def __init__(self, home: Path, kind: str, target: str) -> None:
        stamp = datetime.now().strftime("%Y%m%d-%H%M%S")
        self.run_id = f"{stamp}-{kind}-{target}-{secrets.token_hex(2)}"
        self.kind = kind
        self.root = home / "results"
        self.dir = self.root / self.run_id
        private_mkdir(self.dir)
        self.started_at = now_iso()
        self._lock = threading.Lock()
        # Buffered: one write per request would cost a system call on the measuring loop. Flushed at least
        # every FLUSH_EVERY seconds (and at the end of every point), so a killed run keeps its records.
        fd = os.open(self.dir / "requests.jsonl", os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
        self._requests: IO[str] = os.fdopen(fd, "a", buffering=1 << 16)
        self._flushed = time.monotonic()
        self.write_error: OSError | None = None  # the first failed write of requests.jsonl (a full disk)
        self.index_error: OSError | None = None  # the run could not be added to results/index.jsonl

    FLUSH_EVERY = 1.0

    def request(self, record: Mapping[str, Any]) -> None:
        line = mask_learned(json.dumps(record, separators=(",", ":")))
        with self._lock:
            if self._requests.closed or self.write_error:
                return
            try:
                self._requests.write(line + "\n")
            except OSError as exc:  # a full disk must not stop the measurement: the records are lost, said later
                self.write_error = exc
        self.flush_if_due()

    def flush_if_due(self) -> None:
        if time.monotonic() - self._flushed >= self.FLUSH_EVERY:
            self.flush()

    def flush(self) -> None:
        with self._lock:
            if not self._requests.closed and not self.write_error:
                try:
                    self._requests.flush()
                except OSError as exc:
                    self.write_error = exc
            self._flushed = time.monotonic()

    def stamp(self, result: RunResult) -> RunResult:
        """Give ``result`` this run's identity: id, start and end times, host, version, command line."""
        result.run_id, result.kind = self.run_id, result.kind or self.kind
        result.started_at, result.ended_at = self.started_at, now_iso()
        result.benchctl_version, result.git_sha = __version__, git_sha()
        result.host, result.command_line = socket.gethostname(), " ".join(sys.argv)
        return result

    def envelope(self, *, service: Mapping[str, Any], config: Mapping[str, Any], metrics: Mapping[str, Any],
                 points: Sequence[Mapping[str, Any]], client_health: Mapping[str, Any],
                 errors: Mapping[str, int], extra: Mapping[str, Any] | None = None) -> RunResult:
        """A stamped ``RunResult`` from its parts (``extra``: kind-specific top-level keys)."""
        return self.stamp(RunResult(kind=self.kind, service=dict(service), config=dict(config),
                                    metrics=dict(metrics), points=[PointResult(dict(p)) for p in points],
                                    client_health=dict(client_health), errors=dict(errors), extra=dict(extra or {})))

    def finish(self, result: RunResult, *, extra_output: Path | None = None) -> Path:
        """Write run.json (+ summary.csv of the points, + a copy at ``extra_output``) and index the run.
        Every file is written whole or not at all (temp file + rename): OSError (a full disk) leaves no torn
        run.json behind."""
        with self._lock:
            try:
                self._requests.close()
            except OSError as exc:
                self.write_error = self.write_error or exc
        if not result.run_id:
            self.stamp(result)
        if self.write_error is not None:
            result.extra["requests_incomplete"] = f"{self.write_error.strerror}: requests.jsonl is incomplete"
        # Secrets typed on the command line (a URL's password, a token-shaped value) never reach a result file.
        text = json.dumps(redact_value(result.to_dict()), indent=1, default=str)
        path = self.dir / "run.json"
        _write_atomic(path, text)  # 0600, in a 0700 folder
        if extra_output is not None:
            extra_output.parent.mkdir(parents=True, exist_ok=True)
            _write_atomic(extra_output, text)
        if result.points:
            flat = [_flatten(redact_value(p.to_dict())) for p in result.points]  # type: ignore[arg-type]
            fields = list(dict.fromkeys(k for row in flat for k in row))
            buf = io.StringIO()
            writer = csv.DictWriter(buf, fieldnames=fields)
            writer.writeheader()
            writer.writerows(flat)
            _write_atomic(self.dir / "summary.csv", buf.getvalue())
        from benchctl.bench.compare import headline  # the figures `results` lists (compare knows the metrics)

        index = {"run_id": self.run_id, "kind": result.kind, "started_at": result.started_at,
                 "service": result.service.get("name"), "dir": str(self.dir),
                 "model": str(result.config.get("model") or result.service.get("model") or ""),
                 "status": result.status, "headline": headline(result)}
        try:
            with _index_locked(self.root), (self.root / "index.jsonl").open("a") as fh:
                fh.write(json.dumps(redact_value(index), default=str) + "\n")
        except OSError as exc:  # the run is saved; only the listing misses it
            self.index_error = exc
        result.path = path
        return path


def write_json(path: Path, data: Any) -> None:
    """``data`` as indented JSON, secrets masked, written whole or not at all (0600)."""
    _write_atomic(path, json.dumps(redact_value(data), indent=1, default=str))


def _write_atomic(path: Path, text: str) -> None:
    """``path`` gets all of ``text`` or keeps what it had: no half-written file on a full disk."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        with os.fdopen(os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600), "w") as fh:
            fh.write(text)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def _flatten(data: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in data.items():
        if isinstance(value, Mapping):
            out.update(_flatten(value, f"{prefix}{key}."))
        elif not isinstance(value, (list, tuple)):
            out[f"{prefix}{key}"] = value
    return out


__all__ = ["SCHEMA_VERSION", "PointResult", "ResultError", "RunEntry", "RunResult", "RunWriter", "git_sha",
           "iter_runs", "now_iso", "read_run", "unlist_run", "write_json"]
