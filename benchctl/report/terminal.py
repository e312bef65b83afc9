"""The report in the shell: the run's facts, its tables, the sweep analysis and plots drawn with characters --
bars of throughput and latency per point, sparklines of the run over time, IO500's phases as bars. rich only
(no extra dependency); every table is a ``FitTable``, so the view fits 80 columns and drops columns, never
digits, when narrower.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import TYPE_CHECKING

from rich.table import Table
from rich.text import Text

from benchctl.bench.results import RunResult
from benchctl.monitor.prom import sparkline
from benchctl.report import analysis, series
from benchctl.report.content import DataTable, facts, notes, num, tables
from benchctl.tables import Col, FitTable

if TYPE_CHECKING:
    from rich.console import RenderableType

BAR_WIDTH = 12
SPARK_WIDTH = 44  # label (12) + sparkline + range (~20) stay within 80 columns
EIGHTHS = " ▏▎▍▌▋▊▉"


def bar(value: float | None, top: float, width: int = BAR_WIDTH) -> str:
    """``value`` as a bar of ``width`` cells at most (``top`` fills it), with eighths of a cell."""
    if value is None or not math.isfinite(value) or top <= 0 or value <= 0:
        return ""
    eighths = round(min(1.0, value / top) * width * 8)
    return "█" * (eighths // 8) + (EIGHTHS[eighths % 8] if eighths % 8 else "")


def fit_table(table: DataTable) -> FitTable:
    """A content table for the terminal (flagged rows in red)."""
    drops = table.drop or [0] * len(table.headers)
    out = FitTable([Col(h, d, "left" if i == 0 else "right") for i, (h, d) in enumerate(
        zip(table.headers, drops, strict=True))])
    for i, row in enumerate(table.rows):
        out.add_row(*(Text(c, style="bold red") if i in table.flagged else c for c in row))
    return out


def facts_view(run: RunResult) -> Table:
    grid = Table.grid(padding=(0, 2))
    grid.add_column(style="bold", no_wrap=True)
    grid.add_column(overflow="fold")
    for key, value in facts(run):
        grid.add_row(key, value)
    return grid


def sweep_bars(curve: analysis.Curve) -> FitTable | None:
    """Throughput and p99 latency per point as bars; the knee and the saturation point marked."""
    pts = curve.points
    if len(pts) < 2:
        return None
    knee, sat = analysis.find_knee(curve), analysis.saturation(curve)
    top_t = max((p.throughput or 0.0) for p in pts)
    top_l = max((p.latency or 0.0) for p in pts)
    marks = [[m for m, hit in (("knee", knee is not None and knee.index == i),
                               ("saturated", sat is not None and sat.saturated and sat.index == i)) if hit]
             for i in range(len(pts))]
    cols = [Col("POINT", justify="left"), Col(curve.throughput_unit), Col("bar", 1, "left"),
            Col(f"{curve.latency_name} ms"), Col("bar ", 2, "left")]
    if any(marks):  # the marks column only when there is a mark: an empty one reads as a cut-off table
        cols.append(Col("", 0, "left"))
    table = FitTable(cols)
    for p, mark in zip(pts, marks, strict=True):
        cells: list[str | Text] = [p.label, num(p.throughput), bar(p.throughput, top_t), num(p.latency),
                            bar(p.latency, top_l)]
        if any(marks):
            cells.append(Text(" ◀ " + ", ".join(mark), style="bold") if mark else "")
        table.add_row(*cells)
    return table


def over_time(run: RunResult) -> list[RenderableType]:
    """Sparklines of the whole run: throughput, latency and the server's gauges, on one time axis."""
    reqs = series.point_requests(run)
    done = [t for r in reqs for t in r.done]
    if not done:
        return []
    start, end = min(min(r.offset for r in reqs), min(done)), max(done)
    width = series.bucket_width(end - start)
    lines: list[tuple[str, list[float]]] = []
    if run.kind == "llm":
        _, tok = series.rate_over_time(done, [w for r in reqs for w in r.tokens], width, start, end)
        ttft = [(t, v) for r in reqs for t, v in zip(r.sent, r.ttft_ms, strict=True)]
        lines += [("out tok/s", tok), ("TTFT ms", series.mean_over_time(ttft, width, start, end))]
    else:
        _, qps = series.rate_over_time(done, None, width, start, end)
        lat = [(t, v) for r in reqs for t, v in zip(r.sent, r.latency_ms, strict=True)]
        lines += [("QPS", qps), ("latency ms", series.mean_over_time(lat, width, start, end))]
    server = series.server_series(run)
    if server is not None:
        for key, samples in server.series.items():
            lines.append((server.headers[key], series.mean_over_time(samples, width, start, end)))
    grid = Table.grid(padding=(0, 1))
    for col in ("label", "spark", "range"):
        grid.add_column(no_wrap=True, style="bold" if col == "label" else None)
    for label, values in lines:
        grid.add_row(label, sparkline(values, SPARK_WIDTH), f"{num(min(values))} .. {num(max(values))}")
    where = ", ".join(f"{r.label.replace('concurrency ', 'c=')} from {r.offset - start:.0f} s" for r in reqs)
    return [Text(f"over time ({end - start:.0f} s, {width:g} s buckets; ▁ lowest .. █ highest of each line):"),
            grid, Text(where, style="dim")]


def io500_bars(run: RunResult) -> FitTable | None:
    """Each phase's value as a bar within its group (metadata on a log scale: kIOPS span four decades)."""
    phases = [p for p in run.metrics.get("phases") or [] if isinstance(p, dict)
              and isinstance(p.get("value"), (int, float)) and p.get("name") != "timestamp"]
    if not phases:
        return None
    table = FitTable([Col("PHASE", justify="left"), Col("VALUE"), Col("UNIT", 2, "left"), Col("", 1, "left"),
                      Col("", 0, "left")])
    for group in ("bandwidth", "metadata"):
        mine = [p for p in phases if (p.get("kind") == "bandwidth") == (group == "bandwidth")]
        log = group == "metadata"

        def scale(v: float, log: bool = log) -> float:
            return math.log10(1 + v) if log else v

        top = max((scale(float(p["value"])) for p in mine), default=0.0)
        for p in mine:
            invalid = bool(p.get("invalid"))
            table.add_row(Text(str(p["name"]), style="bold red" if invalid else ""), num(p["value"], 3),
                          str(p.get("unit", "")), bar(scale(float(p["value"])), top, BAR_WIDTH),
                          Text("INVALID", style="bold red") if invalid else "")
    return table


def terminal_view(run: RunResult, lines: Sequence[str]) -> list[RenderableType]:
    """Everything the shell shows of a run, top to bottom; ``lines``: the sweep analysis."""
    parts: list[RenderableType] = [facts_view(run)]
    for table in tables(run):
        parts += [Text(table.title, style="bold"), fit_table(table)]
        if table.note:
            parts.append(Text(f"({table.note})", style="dim"))
    parts += [Text(n) for n in notes(run)]
    if run.kind in ("llm", "vector"):
        curve = analysis.curve_of(run.kind, [p.values for p in run.points])
        bars = sweep_bars(curve)
        if bars is not None:
            parts += [Text("sweep:", style="bold"), bars]
        parts += over_time(run)
    elif run.kind == "io500" and (io := io500_bars(run)) is not None:
        parts += [Text("phases (metadata bars on a log scale):", style="bold"), io]
    parts += [Text(line, style="bold" if line.startswith(("knee", "saturation", "SLO")) else "") for line in lines]
    return parts


__all__ = ["bar", "facts_view", "fit_table", "io500_bars", "over_time", "sweep_bars", "terminal_view"]
