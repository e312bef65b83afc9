"""Reading series back: from a monitor's Prometheus (``/api/v1/query_range``), or straight from a service's
``/metrics`` when no monitor runs. Both give ``{label: [(t, value), ...]}`` for the few series a service names.
"""

from __future__ import annotations

import json
import time
import urllib.parse
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from benchctl.http import http_get

SPARKS = "▁▂▃▄▅▆▇█"


@dataclass(frozen=True)
class Series:
    """One series a service names for `metrics`: a gauge (summed over label sets) or a counter (its rate)."""

    label: str
    metric: str
    counter: bool = False
    unit: str = ""

    def promql(self, selector: str, window: str = "30s") -> str:
        name = f"{self.metric}{{{selector}}}"
        return f"sum(rate({name}[{window}]))" if self.counter else f"sum({name})"


class PromError(RuntimeError):
    """Prometheus could not answer (down, refused the password, a bad query)."""


def query_range(base: str, headers: Mapping[str, str], promql: str, start: float, end: float,
                step: float) -> list[tuple[float, float]]:
    """One PromQL expression over [start, end]: its first series' (time, value) points."""
    params = urllib.parse.urlencode({"query": promql, "start": f"{start:.3f}", "end": f"{end:.3f}",
                                     "step": f"{max(step, 0.001):.3f}"})
    status, body = http_get(f"{base}/api/v1/query_range?{params}", timeout=10, limit=None, headers=dict(headers))
    if status != 200:
        raise PromError(f"Prometheus at {base} answered {status or 'nothing'}")
    try:
        result = json.loads(body)["data"]["result"]
    except (ValueError, KeyError, TypeError):
        raise PromError(f"Prometheus at {base} sent no query result") from None
    if not result:
        return []
    return [(float(t), float(v)) for t, v in result[0].get("values", [])]


def history(base: str, headers: Mapping[str, str], series: Sequence[Series], selector: str,
            minutes: float = 5.0, points: int = 150) -> dict[str, list[tuple[float, float]]]:
    """The last ``minutes`` of every series from Prometheus."""
    end = time.time()
    start = end - minutes * 60
    return {s.label: query_range(base, headers, s.promql(selector), start, end, (end - start) / points)
            for s in series}


def sample(values: Mapping[str, float], series: Sequence[Series]) -> dict[str, float]:
    """One scrape of /metrics (parsed) reduced to the named series: gauges summed, counters as running totals."""
    out: dict[str, float] = {}
    for s in series:
        found = [v for k, v in values.items() if k.split("{", 1)[0] == s.metric]
        if found:
            out[s.label] = sum(found)
    return out


def rates(samples: Sequence[tuple[float, Mapping[str, float]]], series: Sequence[Series]
          ) -> dict[str, list[tuple[float, float]]]:
    """Direct samples as plotted series: a gauge as sampled, a counter as its rate between samples."""
    out: dict[str, list[tuple[float, float]]] = {s.label: [] for s in series}
    for s in series:
        prev: tuple[float, float] | None = None
        for t, values in samples:
            if s.label not in values:
                continue
            v = values[s.label]
            if not s.counter:
                out[s.label].append((t, v))
            elif prev is not None and t > prev[0]:
                out[s.label].append((t, max(0.0, v - prev[1]) / (t - prev[0])))
            prev = (t, v)
    return out


def sparkline(values: Sequence[float], width: int = 30) -> str:
    """``values`` as at most ``width`` block characters (bucket means when more), scaled min..max."""
    tail = list(values)
    if len(tail) > width:
        size = len(tail) / width
        tail = [sum(chunk) / len(chunk) for i in range(width)
                if (chunk := tail[int(i * size):max(int((i + 1) * size), int(i * size) + 1)])]
    if not tail:
        return ""
    lo, hi = min(tail), max(tail)
    if hi == lo:
        return SPARKS[0 if hi == 0 else 3] * len(tail)
    return "".join(SPARKS[min(len(SPARKS) - 1, int((v - lo) / (hi - lo) * len(SPARKS)))] for v in tail)


__all__ = ["PromError", "Series", "history", "query_range", "rates", "sample", "sparkline"]
