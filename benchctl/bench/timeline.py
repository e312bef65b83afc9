"""The server's timeline during a benchmark: which Prometheus series are kept from each kind of ``/metrics``
page, how a sweep point's window of samples becomes a short summary, and how that summary is shown.

The sampling thread itself is ``benchctl.bench.sampler``; this module is light (no HTTP, no rich at import)
because the kinds' ``--server-metrics-interval`` option is built here and ``help`` reads it.

A *family* is what one kind of exporter exposes: an allow-list of series-name prefixes (the page of a vLLM
server is > 64 KiB, mostly histogram buckets; only the server's own series without buckets are kept) and
the *figures* summarised per point: a gauge as its peak and mean, a counter as its rate over the window.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from itertools import pairwise
from typing import TYPE_CHECKING, Any

from benchctl.options import Option, OptionError, number

if TYPE_CHECKING:
    from rich.console import RenderableType

TIMELINE_FILE = "server_metrics.jsonl"
MIN_INTERVAL = 0.05  # below this the scrapes themselves would be the load


def interval(raw: str) -> float:
    """``--server-metrics-interval``: seconds between scrapes, 0 = off."""
    value = float(number(minimum=0)(raw))
    if 0 < value < MIN_INTERVAL:
        raise OptionError(f"must be 0 (off) or at least {MIN_INTERVAL:g}, got {raw!r}")
    return value


def interval_option(default: float) -> Option:
    return Option("--server-metrics-interval", f"seconds between scrapes of the server's /metrics during the run, "
                  f"kept in {TIMELINE_FILE} and summarised per point (0: off)", interval, default=default,
                  metavar="S")


@dataclass(frozen=True)
class Figure:
    """One summary figure of a point: ``names`` pooled over their label sets (``pool``: sum or max), scaled;
    a counter (``counter``) becomes its rate over the window, a gauge its peak and mean."""

    key: str  # the key in point["server_timeline"]
    header: str  # the column of the summary table
    names: tuple[str, ...]
    counter: bool = False
    pool: str = "sum"
    scale: float = 1.0


@dataclass(frozen=True)
class Family:
    """The series kept from one kind of /metrics page, and the figures summarised per point."""

    name: str
    prefixes: tuple[str, ...]
    figures: tuple[Figure, ...] = ()


# vLLM's names (llm-sim exposes the same); an older vLLM's names are read as today's (server_metrics.RENAMED).
VLLM = Family("vllm", ("vllm:",), (
    Figure("running", "running", ("vllm:num_requests_running",)),
    Figure("waiting", "waiting", ("vllm:num_requests_waiting",)),
    # A fraction (1 = full); several engines (data parallel): the fullest one.
    Figure("kv_cache_percent", "KV cache %", ("vllm:kv_cache_usage_perc",), pool="max", scale=100.0),
    Figure("generation_tokens_per_s", "gen tok/s", ("vllm:generation_tokens_total",), counter=True),
))
# Qdrant's series have no common prefix (docs: guides/monitoring): its own families, without the process_*.
QDRANT = Family("qdrant", ("collections_", "collection_", "rest_responses_", "grpc_responses_", "memory_",
                           "cluster_pending_operations_total", "snapshot_"), (
    Figure("requests_per_s", "req/s", ("rest_responses_total", "grpc_responses_total"), counter=True),
    Figure("failures_per_s", "fail/s", ("rest_responses_fail_total", "grpc_responses_fail_total"), counter=True),
    Figure("resident_mib", "RSS MiB", ("memory_resident_bytes",), scale=1 / 2**20),
))
# Extra targets a caller may add (the same timeline file, their own target name): short allow-lists.
NODE_EXPORTER = Family("node", ("node_load", "node_memory_MemAvailable_bytes", "node_memory_MemTotal_bytes",
                                "node_network_receive_bytes_total", "node_network_transmit_bytes_total",
                                "node_pressure_"))
DCGM = Family("dcgm", ("DCGM_FI_DEV_GPU_UTIL", "DCGM_FI_DEV_MEM_COPY_UTIL", "DCGM_FI_DEV_FB_USED",
                       "DCGM_FI_DEV_FB_FREE", "DCGM_FI_DEV_POWER_USAGE", "DCGM_FI_DEV_SM_CLOCK", "DCGM_FI_PROF_"))
FAMILIES: dict[str, Family] = {f.name: f for f in (VLLM, QDRANT, NODE_EXPORTER, DCGM)}

def pooled(values: Mapping[str, float], figures: Sequence[Figure]) -> dict[str, float]:
    """The figures of one scrape: each figure's series pooled over their label sets (absent: left out)."""
    out: dict[str, float] = {}
    for fig in figures:
        found = [v for k, v in values.items() if k.split("{", 1)[0] in fig.names]
        if found:
            out[fig.key] = (max(found) if fig.pool == "max" else sum(found)) * fig.scale
    return out


def counter_rate(series: Sequence[tuple[float, float]]) -> float | None:
    """Increase per second of a counter sampled as (seconds, value); a drop is a restart (counted from 0)."""
    if len(series) < 2 or series[-1][0] <= series[0][0]:
        return None
    increase = 0.0
    for (_, before), (_, after) in pairwise(series):
        increase += after - before if after >= before else after
    return increase / (series[-1][0] - series[0][0])


def summarize_window(samples: Sequence[tuple[float, Mapping[str, float]]], start: float, end: float,
                     figures: Sequence[Figure]) -> dict[str, Any]:
    """A point's server side from the samples (seconds, pooled figures) inside [start, end]: gauges as
    ``{"peak", "mean"}`` (the mean of samples, which are evenly spaced), counters as a rate per second."""
    inside = [(t, v) for t, v in samples if start <= t <= end]
    out: dict[str, Any] = {"window_s": [round(start, 3), round(end, 3)], "samples": len(inside)}
    for fig in figures:
        series = [(t, v[fig.key]) for t, v in inside if fig.key in v]
        if fig.counter:
            rate = counter_rate(series)
            out[fig.key] = None if rate is None else round(rate, 3)
        elif series:
            values = [v for _, v in series]
            out[fig.key] = {"peak": round(max(values), 3), "mean": round(sum(values) / len(values), 3)}
        else:
            out[fig.key] = None
    return out


def _num(value: float) -> str:
    return f"{value:.0f}" if value >= 100 or value == int(value) else f"{value:.1f}"


def cell(fig: Figure, value: Any) -> str:
    """One figure of one point: a rate, or 'peak / mean'."""
    if isinstance(value, (int, float)):
        return _num(float(value))
    if isinstance(value, Mapping) and "peak" in value:
        return f"{_num(float(value['peak']))} / {_num(float(value['mean']))}"
    return "-"


def status_note(status: Mapping[str, Any]) -> str:
    """'' when every scrape of every target worked; else one line: the timeline is missing or partial, and why."""
    notes = []
    for name, t in (status.get("targets") or {}).items():
        failed, scrapes = int(t.get("failed", 0)), int(t.get("scrapes", 0))
        if not failed:
            continue
        why = ", ".join(f"{kind} x{n}" for kind, n in (t.get("errors") or {}).items())
        which = "" if name == "server" else f" ({name})"
        if failed >= scrapes:
            notes.append(f"missing{which}: every scrape of {t.get('url', '/metrics')} failed ({why})")
        else:
            notes.append(f"partial{which}: {failed} of {scrapes} scrapes of {t.get('url', '/metrics')} failed "
                         f"({why})")
    return "server timeline " + "; ".join(notes) if notes else ""


def timeline_view(status: Mapping[str, Any] | None, rows: Sequence[tuple[str, Mapping[str, Any] | None]]
                  ) -> list[RenderableType]:
    """What the summary shows of the server's timeline: a table of each point's figures (fitted to the width)
    and, once, a line when the timeline is missing or partial. Nothing for a run without one (older runs,
    --server-metrics-interval 0, a server without /metrics)."""
    from rich.text import Text

    from benchctl.tables import Col, FitTable

    if not status:
        return []
    family = FAMILIES.get(str(status.get("family", "")))
    parts: list[RenderableType] = []
    # The figures this server has (llm-sim has no KV cache), least telling last: dropped first when narrow.
    shown = [f for f in family.figures if any((t or {}).get(f.key) is not None for _, t in rows)] if family else []
    if shown:
        cols = [Col("POINT", justify="left")] + [Col(f.header, i + 1) for i, f in enumerate(shown)]
        table = FitTable(cols)
        for label, t in rows:
            table.add_row(label, *(cell(f, (t or {}).get(f.key)) for f in shown))
        parts += [Text(f"server's timeline, /metrics every {float(status.get('interval_s', 0)):g} s "
                       "(gauges: peak / mean):"), table]
    note = status_note(status)
    if note:
        parts.append(Text(note))
    return parts


__all__ = ["DCGM", "FAMILIES", "NODE_EXPORTER", "QDRANT", "TIMELINE_FILE", "VLLM", "Family", "Figure", "cell",
           "counter_rate", "interval", "interval_option", "pooled", "status_note",
           "summarize_window", "timeline_view"]
