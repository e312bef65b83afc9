"""The per-request records a client task writes (``requests-<i>.jsonl``) and reads back for the merge.

A task's records hold everything ``loadgen.point_metrics`` needs to compute a point again -- every chunk's
arrival, not only the request's TTFT/TPOT/E2EL -- so the merged point is computed from the union of the
tasks' requests exactly as one process would compute it (ITL and per-second peaks included). Times are seconds
from the point's common start (``t0``), which every task of a run shares (a wall-clock instant), so one
task's times line up with another's, on another node too.
"""

from __future__ import annotations

import dataclasses
import json
import threading
import time
from pathlib import Path
from typing import IO, Any

from benchctl.bench.llm.stream import RequestResult

# The fields written above by name; any other simple field of RequestResult is written as ``x_<name>``.
_NAMED = frozenset({"index", "scheduled", "sent", "chunk_times", "choice_times", "end", "prompt_tokens",
                    "output_tokens", "client_chunks", "token_source", "ok", "error", "error_type", "http_status",
                    "done", "server_truth", "server_timing"})
_DEFAULTS = {f.name: f.default for f in dataclasses.fields(RequestResult)}
_EXTRA = tuple(name for name in _DEFAULTS if name not in _NAMED)


def _rel(value: float, t0: float) -> float:
    return round(value - t0, 6) if value else 0.0


def dump(r: RequestResult, t0: float, point: str, task: int) -> dict[str, Any]:
    """One request as a record; times relative to ``t0`` (perf_counter seconds of the point's start)."""
    out: dict[str, Any] = {
        "point": point, "task": task, "i": r.index, "scheduled": _rel(r.scheduled, t0), "sent": _rel(r.sent, t0),
        "end": _rel(r.end, t0), "chunks": [_rel(t, t0) for t in r.chunk_times], "ok": r.ok,
        "error": r.error, "error_type": r.error_type, "http_status": r.http_status, "done": r.done,
        "prompt_tokens": r.prompt_tokens, "output_tokens": r.output_tokens, "client_chunks": r.client_chunks,
        "token_source": r.token_source,
    }
    if r.choice_times != r.chunk_times:  # a chat endpoint's role-only chunk: vLLM's clock differs
        out["choices"] = [_rel(t, t0) for t in r.choice_times]
    if r.server_timing:
        out["server_timing"] = r.server_timing
    for name in _EXTRA:  # fields a workload added (validity, turn, ...): carried as they are
        value = getattr(r, name)
        if isinstance(value, (bool, int, float, str)) and value != _DEFAULTS[name]:
            out[f"x_{name}"] = value
    return out


def load(record: dict[str, Any]) -> RequestResult:
    """A record back as a ``RequestResult`` on the point's common clock (t0 = 0)."""
    chunks = [float(t) for t in record.get("chunks") or []]
    r = RequestResult(index=int(record["i"]), scheduled=float(record["scheduled"]), sent=float(record["sent"]),
                      chunk_times=chunks, end=float(record["end"]), prompt_tokens=record.get("prompt_tokens"),
                      output_tokens=record.get("output_tokens"), client_chunks=int(record.get("client_chunks") or 0),
                      token_source=str(record.get("token_source") or ""), ok=bool(record.get("ok")),
                      error=str(record.get("error") or ""), error_type=str(record.get("error_type") or ""),
                      http_status=int(record.get("http_status") or 0), done=bool(record.get("done")),
                      server_timing=record.get("server_timing"))
    r.choice_times = [float(t) for t in record["choices"]] if "choices" in record else list(chunks)
    for key, value in record.items():
        if key.startswith("x_") and key[2:] in _EXTRA:
            setattr(r, key[2:], value)
    return r


def parse_lines(text: str) -> list[dict[str, Any]]:
    """The records of a file's text; a torn last line (a task killed mid-write) is skipped."""
    out = []
    for line in text.splitlines():
        try:
            data = json.loads(line)
        except ValueError:
            continue
        if isinstance(data, dict) and "i" in data and "point" in data:
            out.append(data)
    return out


class RecordFile:
    """Appends a task's records, buffered and flushed at least every second (as ``RunWriter`` does): a
    write per request would cost the event loop a system call, and a killed task keeps all but the last
    second."""

    FLUSH_EVERY = 1.0

    def __init__(self, path: Path) -> None:
        self._fh: IO[str] = path.open("a", buffering=1 << 16)
        self._flushed = time.monotonic()
        self._lock = threading.Lock()

    def write(self, record: dict[str, Any]) -> None:
        with self._lock:
            self._fh.write(json.dumps(record, separators=(",", ":")) + "\n")
        if time.monotonic() - self._flushed >= self.FLUSH_EVERY:
            self.flush()

    def flush(self) -> None:
        with self._lock:
            if not self._fh.closed:
                self._fh.flush()
            self._flushed = time.monotonic()

    def close(self) -> None:
        with self._lock:
            self._fh.close()


__all__ = ["RecordFile", "dump", "load", "parse_lines"]
