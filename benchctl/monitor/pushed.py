"""The benchmark figures benchctl pushes to the Pushgateway: one gauge per headline figure and sweep point.

Grouping key ``job="benchctl", run_id=<run>, point=<label>`` (so ``results --forget RUN`` and a stopping
monitor delete exactly one run's groups); every series also carries ``service``, ``model`` and ``kind``.
The Grafana "benchmark runs" dashboard reads these names, and a test holds the two together.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

PUSH_JOB = "benchctl"
LABELS = ("run_id", "point", "service", "model", "kind")


@dataclass(frozen=True)
class Pushed:
    """One pushed gauge: its Prometheus name, help text, the point key it comes from and its scale."""

    name: str
    help: str
    key: str  # the point's key; "a.b" reads a nested mapping; "recall@" matches recall@<k>
    per: float = 1.0  # 1000: ms -> s (Prometheus names carry base units; divided, so 9 ms is 0.009 exactly)

    def value(self, point: Mapping[str, Any]) -> float | None:
        """This figure of one sweep point (None when the point has no such figure)."""
        if self.key.endswith("@"):
            found: Any = next((v for k, v in point.items() if k.startswith(self.key)), None)
        else:
            found = point
            for part in self.key.split("."):
                found = found.get(part) if isinstance(found, Mapping) else None
        if isinstance(found, bool) or not isinstance(found, (int, float)) or found != found:  # NaN
            return None
        return float(found) / self.per


PUSHED: tuple[Pushed, ...] = (
    # LLM points (vLLM's result key names)
    Pushed("benchctl_bench_request_throughput", "completed requests per second", "request_throughput"),
    Pushed("benchctl_bench_output_throughput", "output tokens per second", "output_throughput"),
    Pushed("benchctl_bench_ttft_p50_seconds", "time to first token, median", "p50_ttft_ms", 1000.0),
    Pushed("benchctl_bench_ttft_p99_seconds", "time to first token, 99th percentile", "p99_ttft_ms", 1000.0),
    Pushed("benchctl_bench_tpot_p50_seconds", "time per output token, median", "p50_tpot_ms", 1000.0),
    Pushed("benchctl_bench_itl_p50_seconds", "inter-token latency, median", "p50_itl_ms", 1000.0),
    Pushed("benchctl_bench_e2el_p50_seconds", "end-to-end request latency, median", "p50_e2el_ms", 1000.0),
    Pushed("benchctl_bench_completed", "requests completed", "completed"),
    Pushed("benchctl_bench_failed", "requests failed", "failed"),
    # vector points
    Pushed("benchctl_bench_qps", "vector queries per second", "qps"),
    Pushed("benchctl_bench_recall", "recall@k against exact ground truth", "recall@"),
    Pushed("benchctl_bench_latency_p50_seconds", "query latency, median", "latency_ms.p50", 1000.0),
    Pushed("benchctl_bench_latency_p99_seconds", "query latency, 99th percentile", "latency_ms.p99", 1000.0),
)
NAMES = frozenset(p.name for p in PUSHED)

__all__ = ["LABELS", "NAMES", "PUSHED", "PUSH_JOB", "Pushed"]
