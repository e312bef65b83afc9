"""What a running LLM benchmark shows and records as requests end: the live status line (``LiveProgress``)
and the per-request records of a point (``RecordSink``). Both run on the load generator's event loop, so
they stay cheap: the status line redraws at most 5 times a second, the records go through the writer's buffer.
"""

from __future__ import annotations

import statistics
import time
from collections import Counter, deque
from typing import TYPE_CHECKING, Any

from benchctl.bench.llm.config import LlmConfig

if TYPE_CHECKING:
    from benchctl.bench.kind import Progress
    from benchctl.bench.llm.stream import RequestResult
    from benchctl.bench.results import RunWriter


class LiveProgress:
    """The live status line of a running point: requests done and failed, request rate, running medians of
    TTFT and TPOT over the last 256 requests, and time or requests so far. Called per finished request and
    by the load generator's monitor (~4/s, so the clock moves while long requests run), on the event loop;
    redraws at most 5 times a second, so it costs the measurement nothing."""

    def __init__(self, status: Any, label: str, cfg: LlmConfig) -> None:
        self.status, self.label, self.cfg = status, label, cfg
        self.t0 = time.perf_counter()
        self.last = 0.0
        self.ok = self.failed = 0
        self.ttft: deque[float] = deque(maxlen=256)
        self.tpot: deque[float] = deque(maxlen=256)

    def __call__(self, r: Any) -> None:
        if r.ok:
            self.ok += 1
            if r.ttft is not None:
                self.ttft.append(r.ttft)
            if r.tpot is not None:
                self.tpot.append(r.tpot)
        else:
            self.failed += 1
        self.tick()

    def tick(self) -> None:
        now = time.perf_counter()
        if now - self.last >= 0.2:
            self.last = now
            self.status.update(self.text(now))

    def text(self, now: float) -> str:
        elapsed = now - self.t0
        parts = [f"{self.label}: {self.ok} ok" + (f", {self.failed} failed" if self.failed else ""),
                 f"{self.ok / elapsed if elapsed > 0 else 0.0:.1f} req/s"]
        if self.ttft:
            parts.append(f"TTFT {1000 * statistics.median(self.ttft):.1f} ms")
        if self.tpot:
            parts.append(f"TPOT {1000 * statistics.median(self.tpot):.2f} ms")
        total = self.cfg.requests + self.cfg.warmup
        parts.append(f"{self.ok + self.failed}/{total} requests" if self.cfg.requests else
                     f"{min(elapsed, self.cfg.duration):.0f}/{self.cfg.duration:.0f} s")
        return " · ".join(parts)


class RecordSink:
    """Per-request records of one point, appended to requests.jsonl as requests end (the writer buffers and
    flushes at least every second). Failures of one type are recorded up to ``FAILURES_PER_TYPE`` per point;
    the rest are counted (a dead server must not fill the disk), and the counts close the point."""

    FAILURES_PER_TYPE = 100

    def __init__(self, writer: RunWriter, label: str, state: Any) -> None:
        self.writer, self.label, self.state = writer, label, state
        self.failures: Counter[str] = Counter()
        self.written: set[int] = set()

    def __call__(self, r: RequestResult) -> None:
        if not r.ok:
            self.failures[r.error_type] += 1
            if self.failures[r.error_type] > self.FAILURES_PER_TYPE:
                return
        self.written.add(id(r))
        self.writer.request({"point": self.label, **r.to_record(self.state.t0)})

    def finish(self, results: list[RequestResult]) -> None:
        """Records of requests that ended without the callback (cut at the end), then what was left out."""
        for r in results:
            if id(r) not in self.written and r.end:
                self(r)
        skipped = {kind: n - self.FAILURES_PER_TYPE for kind, n in self.failures.items()
                   if n > self.FAILURES_PER_TYPE}
        if skipped:
            self.writer.request({"point": self.label, "not_recorded": skipped})
        self.writer.flush()


class StatusAdapter:
    """LiveProgress updates a status object; the kind reports through Progress.status."""

    def __init__(self, progress: Progress) -> None:
        self.progress = progress

    def update(self, text: str) -> None:
        self.progress.status(text)


__all__ = ["LiveProgress", "RecordSink", "StatusAdapter"]
