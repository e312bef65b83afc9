"""Reference bands (ReFrame style): expected values with lower and upper bounds, per service, model, point and
metric; ``bench … --reference FILE`` and ``compare --reference FILE`` mark each figure in or out of its band.

    # bands.yaml: the metric names are compare's (ttft_p99, request_throughput, qps, recall, score, ...)
    - service: llm-sim            # the run's service (or a bench kind's name for `bench llm --url`)
      model: sim                  # optional: any model when absent
      point: c=8                  # optional: every point when absent (labels as compare shows them)
      metrics:
        ttft_p99: [null, 80]      # [lower, upper]; null = unbounded on that side (ms for latencies)
        request_throughput: [5, null]

A band applies to a run when its service (and model, when given) match; the most specific band for a point
(one naming the point over one that does not) sets each metric's bounds.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from benchctl.bench.compare import METRICS, points_of
from benchctl.bench.results import RunResult
from benchctl.yamlfile import Document, FileError, as_float_or_none, load, mapping

ENTRY = {"service": "the service (or kind)", "model": "the model", "point": "a sweep point (c=8, rate=2)",
         "metrics": "metric: [lower, upper]"}
KNOWN_METRICS = sorted({m.name for ms in METRICS.values() for m in ms})


@dataclass(frozen=True)
class Band:
    service: str
    model: str
    point: str
    metric: str
    lower: float | None
    upper: float | None
    where: str  # file:line, for messages

    def text(self) -> str:
        low = "-inf" if self.lower is None else f"{self.lower:g}"
        high = "+inf" if self.upper is None else f"{self.upper:g}"
        return f"[{low}, {high}]"


@dataclass(frozen=True)
class Mark:
    """One figure against its band."""

    point: str
    metric: str
    value: float | None
    band: Band

    @property
    def ok(self) -> bool | None:
        """True inside, False outside, None when the run has no such figure."""
        if self.value is None:
            return None
        return (self.band.lower is None or self.value >= self.band.lower) and \
            (self.band.upper is None or self.value <= self.band.upper)

    def to_dict(self) -> dict[str, Any]:
        return {"point": self.point, "metric": self.metric, "value": self.value, "lower": self.band.lower,
                "upper": self.band.upper, "in_band": self.ok, "where": self.band.where}


def _bounds(doc: Document, key: tuple[str | int, ...], value: Any) -> tuple[float | None, float | None]:
    if not isinstance(value, list) or len(value) != 2:
        raise doc.error(key, "expected [lower, upper] (null for no bound)")
    low, high = (as_float_or_none(doc, (*key, i), v) for i, v in enumerate(value))
    if low is not None and high is not None and low > high:
        raise doc.error(key, f"lower {low:g} is above upper {high:g}")
    return low, high


def load_bands(path: str) -> list[Band]:
    """Read a reference file (FileError names the file, line and key of the first problem)."""
    doc = load(path)
    entries = doc.data.get("references") if isinstance(doc.data, dict) else doc.data
    base: tuple[str | int, ...] = ("references",) if isinstance(doc.data, dict) else ()
    if not isinstance(entries, list) or not entries:
        raise FileError(f"{path}: expected a list of {{service, model, point, metrics}} entries")
    bands = []
    for i, raw in enumerate(entries):
        key = (*base, i)
        entry = mapping(doc, key, raw, ENTRY)
        if not entry.get("service"):
            raise doc.error((*key, "service"), "missing: the service (or kind) the band is for")
        metrics = mapping(doc, (*key, "metrics"), entry.get("metrics"))
        if not metrics:
            raise doc.error((*key, "metrics"), "missing: at least one metric: [lower, upper]")
        for name, value in metrics.items():
            if name not in KNOWN_METRICS:
                raise doc.error((*key, "metrics", name), f"unknown metric (one of {', '.join(KNOWN_METRICS)})")
            low, high = _bounds(doc, (*key, "metrics", name), value)
            bands.append(Band(str(entry["service"]), str(entry.get("model") or ""), str(entry.get("point") or ""),
                              name, low, high, doc.where((*key, "metrics", name))))
    return bands


def check(run: RunResult, bands: list[Band]) -> list[Mark]:
    """Each figure of ``run`` that a band covers, marked in or out (the most specific band wins)."""
    service = str(run.service.get("name") or run.kind)
    model = str(run.config.get("model") or run.service.get("model") or "")
    mine = [b for b in bands if b.service == service and (not b.model or b.model == model)]
    metrics = {m.name: m for m in METRICS.get(run.kind, ())}
    marks = []
    for label, point in points_of(run).items():
        chosen: dict[str, Band] = {}
        for band in sorted(mine, key=lambda b: (bool(b.point), bool(b.model))):  # specific ones last: they win
            if band.metric in metrics and (not band.point or band.point == label):
                chosen[band.metric] = band
        for name, band in chosen.items():
            marks.append(Mark(label, name, metrics[name].read(point), band))
    return marks


def summary(marks: list[Mark]) -> tuple[str, list[str]]:
    """``'reference: 5 in, 1 out'`` and one line per figure out of its band."""
    outside = [m for m in marks if m.ok is False]
    missing = sum(1 for m in marks if m.ok is None)
    head = f"reference: {sum(1 for m in marks if m.ok)} in, {len(outside)} out" + \
        (f", {missing} not measured" if missing else "")
    return head, [f"{m.point} {m.metric} = {m.value:.4g} outside {m.band.text()} ({m.band.where})"
                  for m in outside if m.value is not None]


__all__ = ["Band", "Mark", "check", "load_bands", "summary"]
