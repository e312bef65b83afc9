"""Trace replay (``--trace FILE [--trace-speed X] [--trace-window START:END]``).

Two public layouts are read:

* Mooncake JSONL (``kvcache-ai/Mooncake`` traces): ``{"timestamp": ms, "input_length": N, "output_length": M,
  "hash_ids": [...]}`` -- each hash id names a 512-token block of the prompt; requests sharing a hash id
  share that block's text (what a prefix cache can reuse);
* Azure LLM inference CSV (``Azure/AzurePublicDataset``): ``TIMESTAMP,ContextTokens,GeneratedTokens``
  (TIMESTAMP a date-time such as ``2023-11-16 18:15:46.6805900``, or seconds).

Arrivals follow the trace exactly: request i is due at ``(t_i - t_window_start) / speed`` seconds after the
point's start -- an open loop (no coordinated omission: the loadgen times each request from that moment too).
Prompts are built to the trace's input lengths with the server's tokenizer (a 512-token block is calibrated
once with ``/tokenize``); outputs are forced to the trace's output lengths (min_tokens + ignore_eos).
"""

from __future__ import annotations

import csv
import json
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from benchctl.bench.llm import prompts as llm_prompts
from benchctl.bench.llm.backends import BACKENDS
from benchctl.bench.llm.config import LlmConfig
from benchctl.bench.llm.stream import RequestResult
from benchctl.bench.llm.workloads import Session, Workload, WorkloadError
from benchctl.bench.llm.workloads.ramp import per_second
from benchctl.options import OptionError

BLOCK_TOKENS = 512  # Mooncake's hash block


@dataclass(frozen=True)
class TraceRow:
    t: float  # seconds since the trace's first request
    input_tokens: int
    output_tokens: int
    hash_ids: tuple[int, ...] = ()


def window(raw: str) -> str:
    """``--trace-window START:END`` (seconds of the trace; either side may be empty)."""
    start, sep, end = raw.partition(":")
    try:
        lo, hi = float(start or 0), float(end) if end else float("inf")
    except ValueError:
        raise OptionError(f"expects START:END in seconds, got {raw!r}") from None
    if not sep or lo < 0 or hi <= lo:
        raise OptionError(f"expects START:END in seconds with START < END, got {raw!r}")
    return raw


def _when(value: str) -> float:
    try:
        return float(value)
    except ValueError:
        pass
    head, dot, frac = value.strip().partition(".")
    stamp = datetime.fromisoformat(head.replace("T", " "))  # Azure: 7 fraction digits, more than Python reads
    return stamp.timestamp() + (float("0." + frac) if dot and frac.isdigit() else 0.0)


def _int(obj: dict[str, Any], key: str, where: str) -> int:
    value = obj.get(key)
    try:
        return max(0, int(float(value)))  # type: ignore[arg-type]
    except (TypeError, ValueError):
        raise WorkloadError(f"{where}: {key} must be a number, got {value!r}") from None


def load_trace(path: Path) -> tuple[str, list[TraceRow]]:
    """(layout, rows sorted by time, times relative to the first) of a Mooncake JSONL or Azure CSV trace."""
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise WorkloadError(f"cannot read trace {path}: {exc}") from None
    raw: list[tuple[float, int, int, tuple[int, ...]]] = []
    if text.lstrip().startswith("{"):
        layout = "mooncake"
        for lineno, line in enumerate(text.splitlines(), 1):
            if not line.strip():
                continue
            where = f"{path} line {lineno}"
            try:
                obj = json.loads(line)
            except json.JSONDecodeError as exc:
                raise WorkloadError(f"{where}: not JSON: {exc.msg}") from None
            ids = obj.get("hash_ids") or []
            if not isinstance(ids, list) or not all(isinstance(h, int) for h in ids):
                raise WorkloadError(f"{where}: hash_ids must be a list of integers")
            raw.append((_int(obj, "timestamp", where) / 1000.0, _int(obj, "input_length", where),
                        _int(obj, "output_length", where), tuple(ids)))
    else:
        layout = "azure"
        reader = csv.DictReader(text.splitlines())
        missing = {"TIMESTAMP", "ContextTokens", "GeneratedTokens"} - set(reader.fieldnames or ())
        if missing:
            raise WorkloadError(f"{path}: neither Mooncake JSONL nor Azure CSV (missing {', '.join(sorted(missing))})")
        for lineno, row in enumerate(reader, 2):
            where = f"{path} line {lineno}"
            try:
                t = _when(row["TIMESTAMP"])
            except ValueError:
                raise WorkloadError(f"{where}: TIMESTAMP {row['TIMESTAMP']!r} is not a time") from None
            raw.append((t, _int(row, "ContextTokens", where), _int(row, "GeneratedTokens", where), ()))
    if not raw:
        raise WorkloadError(f"{path}: no requests in it")
    raw.sort(key=lambda x: x[0])
    t0 = raw[0][0]
    return layout, [TraceRow(t - t0, max(1, i), max(1, o), h) for t, i, o, h in raw]


class TraceSession(Session):
    workload: TraceWorkload

    def body(self, r: RequestResult) -> dict[str, Any]:
        cfg = self.workload.cfg
        row = self.workload.rows[r.index % len(self.workload.rows)]
        text = self.workload.prompt(row, r.index)
        return BACKENDS[cfg.backend].body(cfg.model, (("user", text),), row.output_tokens, True)


class TraceWorkload(Workload):
    name = "trace"

    def __init__(self, cfg: LlmConfig) -> None:
        super().__init__(cfg)
        if cfg.trace_speed <= 0:
            raise WorkloadError("--trace-speed must be above 0")
        path = Path(cfg.trace).expanduser()
        self.layout, rows = load_trace(path)
        start, _, end = (cfg.trace_window or ":").partition(":")
        self.start, self.end = float(start or 0), float(end) if end else float("inf")
        self.rows = [r for r in rows if self.start <= r.t < self.end]
        if not self.rows:
            raise WorkloadError(f"{path}: no request inside --trace-window {cfg.trace_window}")
        self.name_shown = path.name
        self.words_per_token = 1.0
        if not cfg.requests:  # the point lasts as long as its slice of the trace (at --trace-speed)
            cfg.duration = self.offsets(None)[-1] + 1e-3
        self.scrape_per_point = any(r.hash_ids for r in self.rows)

    async def prepare(self, url: str, headers: dict[str, str]) -> list[str]:
        cfg = self.cfg
        cal = await llm_prompts.calibrate(url, cfg.backend, cfg.model, BLOCK_TOKENS, headers)
        self.words_per_token = (cal.words + cal.pad) / (cal.tokens or BLOCK_TOKENS)
        notes = [f"trace: {len(self.rows)} requests of {self.name_shown} ({self.layout}) over "
                 f"{self.offsets(None)[-1]:.1f} s at speed x{cfg.trace_speed:g} ({cal.note} per block)"]
        if cal.max_model_len:
            over = sum(1 for r in self.rows if r.input_tokens + r.output_tokens > cal.max_model_len)
            if over:
                notes.append(f"trace: {over} requests exceed the model's context ({cal.max_model_len} tokens): "
                             "the server will refuse them")
        return notes

    def _words(self, tokens: int) -> int:
        return max(1, round(tokens * self.words_per_token))

    def prompt(self, row: TraceRow, index: int) -> str:
        """``row``'s prompt: one text per hash block (the same text wherever the id recurs), else unique."""
        if not row.hash_ids:
            return llm_prompts.prompt_text(index, self._words(row.input_tokens))
        parts, left = [], row.input_tokens
        for h in row.hash_ids:
            tokens = min(BLOCK_TOKENS, left) if left > 0 else 0
            if tokens <= 0:
                break
            # A block's text depends on its id only; a shorter (last) block is the start of the same text.
            parts.append(llm_prompts.prompt_text(h, self._words(tokens)).replace("req", "blk", 1))
            left -= tokens
        if left > 0:  # more tokens than blocks: a unique tail
            parts.append(llm_prompts.prompt_text(index, self._words(left)))
        return " ".join(parts)

    def offsets(self, rate: float | None) -> list[float]:
        return [(r.t - self.start) / self.cfg.trace_speed for r in self.rows]

    def label(self, concurrency: int, rate: float | None) -> str:
        return f"trace x{self.cfg.trace_speed:g}"

    def session(self) -> Session:
        return TraceSession(self)

    def point_metrics(self, measured: list[RequestResult], t0: float | None) -> dict[str, Any]:
        out = super().point_metrics(measured, t0)
        end = None if self.end == float("inf") else self.end
        out["trace"] = {"name": self.name_shown, "path": self.cfg.trace, "layout": self.layout,
                        "window_s": [self.start, end if end is not None else self.rows[-1].t],
                        "speed": self.cfg.trace_speed, "requests_in_window": len(self.rows),
                        "sent": sum(1 for r in measured if r.sent)}
        out["per_second"] = per_second(measured, t0, self.cfg)
        return out


WORKLOAD = TraceWorkload
