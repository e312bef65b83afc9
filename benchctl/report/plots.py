"""The report's PNG plots, drawn with matplotlib (the optional ``report`` extra, imported only here and only when a
plot is drawn, so the shell starts without it).

Each function takes a run (and what was read of its folder) and writes one PNG, or returns None when the run
has nothing for that plot. Figures are built with ``matplotlib.figure.Figure`` on the Agg canvas, never pyplot:
no global figure state, no GUI backend, nothing left open between reports.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from benchctl.bench.results import RunResult
from benchctl.report import analysis, series
from benchctl.report.content import llm_ms, point_label, recall_key, who

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

DPI = 100
INSTALL_HINT = "PNG plots need matplotlib: .venv/bin/pip install 'benchctl[report]'"


@dataclass(frozen=True)
class Plot:
    """One written PNG: its file, a title and what it shows (the HTML and Markdown captions)."""

    name: str
    title: str
    path: Path
    caption: str


def available() -> bool:
    """Whether matplotlib can be imported (the ``report`` extra is installed)."""
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        return False
    return True


def _figure(width: float, height: float) -> Figure:
    import matplotlib

    matplotlib.use("Agg")  # no display on a login node; a GUI backend would try to open one
    from matplotlib.figure import Figure

    return Figure(figsize=(width, height), dpi=DPI, layout="constrained")


def _save(fig: Figure, path: Path) -> Path:
    fig.savefig(path, format="png", dpi=DPI)
    return path


def _log_axis(ax: Axes, axis: str = "y") -> None:
    """A log axis labelled as plain numbers (20, 50, 100; not 2x10^1): latencies are read in ms. Call it after
    drawing: the ticks per decade depend on how many decades the data spans, so labels never collide."""
    import math

    from matplotlib.ticker import FuncFormatter, LogLocator, NullFormatter

    target = ax.yaxis if axis == "y" else ax.xaxis
    (ax.set_yscale if axis == "y" else ax.set_xscale)("log")
    lo, hi = ax.get_ylim() if axis == "y" else ax.get_xlim()
    decades = math.log10(hi / lo) if lo > 0 and hi > lo else 1.0
    subs = (1.0, 2.0, 3.0, 5.0) if decades <= 1.5 else (1.0, 2.0, 5.0) if decades <= 3 else (1.0,)
    target.set_major_locator(LogLocator(base=10, subs=subs))
    target.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}"))
    target.set_minor_formatter(NullFormatter())


def _short(value: float) -> str:
    """A bar's label: three significant digits, never an exponent (1235 kIOPS, not 1.23e+03)."""
    return f"{value:.0f}" if abs(value) >= 100 else f"{value:.3g}"


def _title(run: RunResult, what: str) -> str:
    return f"{what} - {who(run)}"


def latency_percentiles(run: RunResult, path: Path) -> Path | None:
    """p50 / p90 / p99 of each latency per sweep point (LLM: TTFT, TPOT, E2EL; vector: query latency)."""
    points = [p.values for p in run.points]
    if not points:
        return None
    labels = [point_label(p).split(" (")[0] for p in points]
    if run.kind == "llm":
        panels = [("TTFT", "ttft"), ("TPOT", "tpot"), ("E2EL", "e2el")]

        def value(p: Mapping[str, Any], key: str, pct: str) -> float:
            v = llm_ms(p, pct, key)
            return float(v) if isinstance(v, (int, float)) else float("nan")
    elif run.kind == "vector":
        panels = [("query latency", "latency_ms")]

        def value(p: Mapping[str, Any], key: str, pct: str) -> float:
            v = (p.get(key) or {}).get(pct)
            return float(v) if isinstance(v, (int, float)) else float("nan")
    else:
        return None
    if not any(value(p, key, "p50") == value(p, key, "p50") for p in points for _, key in panels):  # all NaN
        return None
    fig = _figure(max(7.0, 4.0 * len(panels) + 1), 4.2)
    axes = fig.subplots(1, len(panels), squeeze=False)[0]
    xs = list(range(len(points)))
    for ax, (name, key) in zip(axes, panels, strict=True):
        for pct, marker in (("p50", "o"), ("p90", "s"), ("p99", "^")):
            ax.plot(xs, [value(p, key, pct) for p in points], marker=marker, label=pct)
        ax.set_xticks(xs, labels, rotation=30 if len(xs) > 6 else 0)
        ax.set_ylim(bottom=0)  # from zero: a 0.1 ms wobble must not look like a trend
        ax.set_title(name)
        ax.set_ylabel(f"{name} (ms)")
        ax.set_xlabel("sweep point")
        ax.grid(alpha=0.3)
        ax.legend(title="percentile")
    fig.suptitle(_title(run, "Latency percentiles per point"))
    return _save(fig, path)


def latency_cdf(run: RunResult, reqs: Sequence[series.PointRequests], path: Path) -> Path | None:
    """The distribution of every request's latency, one curve per point (from requests.jsonl)."""
    with_data = [r for r in reqs if r.latency_ms]
    if not with_data:
        return None
    panels: list[tuple[str, str]] = [("TTFT", "ttft_ms"), ("E2EL", "latency_ms")] if run.kind == "llm" \
        else [("query latency", "latency_ms")]
    fig = _figure(5.0 * len(panels) + 1, 4.2)
    axes = fig.subplots(1, len(panels), squeeze=False)[0]
    for ax, (name, attr) in zip(axes, panels, strict=True):
        for r in with_data:
            xs, ys = series.ecdf(getattr(r, attr))
            ax.step(xs, ys, where="post", label=f"{r.label.replace('concurrency ', 'c=')} (n={len(xs)})")
        _log_axis(ax, "x")
        ax.set_xlabel(f"{name} (ms, log scale)")
        ax.set_ylabel("fraction of requests at or below")
        ax.set_ylim(0, 1.02)
        ax.grid(alpha=0.3, which="both")
        ax.legend(fontsize="small", title="point")
        ax.set_title(f"{name} CDF")
    fig.suptitle(_title(run, "Latency distribution (successful requests)"))
    return _save(fig, path)


def _mark_points(ax: Axes, reqs: Sequence[series.PointRequests]) -> None:
    """Point boundaries as light vertical lines, labelled at the top."""
    for r in reqs:
        ax.axvline(r.offset, color="grey", alpha=0.35, linewidth=0.8)
        ax.text(r.offset, 1.0, " " + r.label.replace("concurrency ", "c="), transform=ax.get_xaxis_transform(),
                fontsize="x-small", va="top", color="dimgrey")


def timeline(run: RunResult, reqs: Sequence[series.PointRequests], server: series.ServerSeries | None,
             path: Path) -> Path | None:
    """Throughput and latency over the run's time (client side), with the server's own timeline below."""
    done = [t for r in reqs for t in r.done]
    if not done:
        return None
    start, end = min(min(r.offset for r in reqs), min(done)), max(done)
    width = series.bucket_width(end - start)
    rows = 3 if server is not None else 2
    fig = _figure(10, 2.6 * rows + 0.6)
    axes = fig.subplots(rows, 1, sharex=True, squeeze=False)[:, 0]
    ax = axes[0]
    if run.kind == "llm":
        tokens = [w for r in reqs for w in r.tokens]
        xs, ys = series.rate_over_time(done, tokens, width, start, end)
        ax.plot(xs, ys, label="output tok/s (client)")
        if server is not None and "generation_tokens_per_s" in server.series:
            sx, sy = zip(*server.series["generation_tokens_per_s"], strict=True)
            ax.plot(sx, sy, linestyle="--", alpha=0.8, label="generated tok/s (server /metrics)")
        ax.set_ylabel("tokens/s")
    else:
        xs, ys = series.rate_over_time(done, None, width, start, end)
        ax.plot(xs, ys, label="queries/s (client)")
        ax.set_ylabel("queries/s")
    ax.set_ylim(bottom=0)
    ax.set_title(f"Throughput over time ({width:g} s buckets, by completion time)")
    ax.legend(fontsize="small", loc="lower right")
    ax = axes[1]
    attr, name = ("ttft_ms", "TTFT") if run.kind == "llm" else ("latency_ms", "query latency")
    for r in reqs:
        ax.scatter(r.sent, getattr(r, attr), s=4, alpha=0.5)
    _log_axis(ax)
    ax.set_ylabel(f"{name} (ms, log scale)")
    ax.set_title(f"{name} of each request, by send time")
    if server is not None:
        ax = axes[2]
        right = None
        for key, samples in server.series.items():
            if key == "generation_tokens_per_s":
                continue  # drawn with the client's throughput above
            sx, sy = zip(*samples, strict=True)
            if key in ("kv_cache_percent", "resident_mib"):
                right = right or ax.twinx()
                right.plot(sx, sy, color="tab:red", linestyle=":", label=server.headers[key])
                right.set_ylabel(server.headers[key])
            else:
                ax.plot(sx, sy, label=server.headers[key], drawstyle="steps-post")
        ax.set_ylabel("requests" if server.family == "vllm" else "per second")
        ax.set_title(f"Server's timeline ({server.family} /metrics)")
        handles = ax.get_legend_handles_labels()
        extra = right.get_legend_handles_labels() if right is not None else ([], [])
        ax.legend(handles[0] + extra[0], handles[1] + extra[1], fontsize="small", loc="upper left")
    for ax in axes:
        _mark_points(ax, reqs)
        ax.grid(alpha=0.3)
    axes[-1].set_xlabel("time since the run started (s)")
    fig.suptitle(_title(run, "Over time"))
    return _save(fig, path)


def sweep_curve(run: RunResult, limits: Sequence[analysis.Limit], path: Path) -> Path | None:
    """Latency vs load with the knee, and throughput vs latency (the operating curve) with the knee marked."""
    curve = analysis.curve_of(run.kind, [p.values for p in run.points])
    pts = [p for p in curve.points if p.latency is not None and p.throughput is not None]
    if len(pts) < 2:
        return None
    knee, sat = analysis.find_knee(curve), analysis.saturation(curve)
    fig = _figure(11, 4.6)
    left, right = fig.subplots(1, 2)
    left.plot([p.load for p in pts], [p.latency for p in pts], marker="o")
    left.set_xlabel(curve.load_name + (" (requests/s offered)" if curve.load_name == "request rate" else ""))
    left.set_ylabel(f"{curve.latency_name} (ms)")
    left.set_title(f"{curve.latency_name} vs {curve.load_name}")
    right.plot([p.throughput for p in pts], [p.latency for p in pts], marker="o")
    for p in pts:
        right.annotate(p.label, (p.throughput or 0, p.latency or 0), textcoords="offset points", xytext=(4, 4),
                       fontsize="small")
    right.set_xlabel(f"throughput ({curve.throughput_unit})")
    right.set_ylabel(f"{curve.latency_name} (ms)")
    right.set_title("operating curve: throughput vs latency")
    if knee is not None:
        k = knee.point
        left.plot([k.load], [k.latency], "o", markersize=14, fillstyle="none", color="tab:red", label=f"knee {k.label}")
        right.plot([k.throughput], [k.latency], "o", markersize=14, fillstyle="none", color="tab:red",
                   label=f"knee {k.label} (max curvature)")
    else:
        left.text(0.02, 0.97, "no knee: the curve does not bend", transform=left.transAxes, va="top",
                  fontsize="small", color="dimgrey")
    if sat is not None and sat.saturated:
        right.axvline(sat.best, color="tab:orange", linestyle="--",
                      label=f"saturation {sat.best:.3g} {curve.throughput_unit}")
    for limit in limits:
        if limit.name in ("e2el", "latency") and limit.percentile == "p99":
            for ax in (left, right):
                ax.axhline(limit.value, color="tab:green", linestyle=":", label=f"SLO {limit.describe()}")
    for ax in (left, right):
        ax.grid(alpha=0.3)
        if ax.get_legend_handles_labels()[0]:
            ax.legend(fontsize="small")
    fig.suptitle(_title(run, "Sweep curve (knee: Kneedle, maximum curvature of the normalised curve)"))
    return _save(fig, path)


def recall_qps(run: RunResult, path: Path) -> Path | None:
    """Recall vs QPS per point, as vector benchmarks show the trade-off (up and right is better)."""
    pts = [p.values for p in run.points if isinstance(p.values.get("qps"), (int, float))]
    if run.kind != "vector" or not pts:
        return None
    key = recall_key(pts[0])
    fig = _figure(7, 4.6)
    ax = fig.subplots()
    recalls, qps = [float(p.get(key) or 0) for p in pts], [float(p["qps"]) for p in pts]
    ax.plot(recalls, qps, marker="o", linestyle="-")
    for p, x, y in zip(pts, recalls, qps, strict=True):
        ax.annotate(point_label(p), (x, y), textcoords="offset points", xytext=(5, 3), fontsize="small")
    lo = min(recalls)
    ax.set_xlim(max(0.0, min(lo - 0.02, 0.9)), 1.015)  # recall 1.0 happens: keep its labels inside
    ax.set_xlabel(f"{key} (fraction of the true neighbours found)")
    ax.set_ylabel("throughput (QPS)")
    ax.grid(alpha=0.3)
    ax.set_title(_title(run, f"{key} vs QPS"))
    return _save(fig, path)


def io500_phases(run: RunResult, path: Path) -> Path | None:
    """IO500's phases as bars (bandwidth GiB/s, metadata kIOPS on a log axis); invalid phases red and hatched."""
    phases = [p for p in run.metrics.get("phases") or [] if isinstance(p, Mapping)
              and isinstance(p.get("value"), (int, float)) and p.get("name") != "timestamp"]
    if run.kind != "io500" or not phases:
        return None
    groups = [("bandwidth", "GiB/s", [p for p in phases if p.get("kind") == "bandwidth"]),
              ("metadata", "kIOPS, log scale", [p for p in phases if p.get("kind") != "bandwidth"])]
    groups = [g for g in groups if g[2]]
    fig = _figure(11, 0.35 * max(len(g[2]) for g in groups) + 2.0)
    axes = fig.subplots(1, len(groups), squeeze=False)[0]
    for ax, (name, unit, group) in zip(axes, groups, strict=True):
        names = [str(p["name"]) + (" [INVALID]" if p.get("invalid") else "") for p in group]
        colors = ["tab:red" if p.get("invalid") else "tab:blue" if p.get("in_score") else "tab:gray" for p in group]
        bars = ax.barh(names, [float(p["value"]) for p in group], color=colors)
        for bar, p in zip(bars, group, strict=True):
            if p.get("invalid"):
                bar.set_hatch("//")
        ax.bar_label(bars, labels=[_short(float(p["value"])) for p in group], padding=3, fontsize="small")
        ax.invert_yaxis()
        if name == "metadata":
            _log_axis(ax, "x")
        ax.margins(x=0.15)  # room for the value labels
        ax.set_xlabel(unit)
        ax.set_title(f"{name} phases")
        ax.grid(alpha=0.3, axis="x")
    from matplotlib.patches import Patch

    fig.legend(handles=[Patch(color="tab:blue", label="in the score"), Patch(color="tab:gray", label="not scored"),
                        Patch(facecolor="tab:red", hatch="//", label="INVALID")], loc="outside lower center", ncols=3)
    score = run.metrics.get("score") or {}
    verdict = "valid" if run.metrics.get("valid") else "INVALID"
    total = score.get("total")
    fig.suptitle(_title(run, f"IO500 phases - score {total:.3f} ({verdict})" if isinstance(total, (int, float))
                        else f"IO500 phases ({verdict})"))
    return _save(fig, path)


def make_plots(run: RunResult, out_dir: Path, limits: Sequence[analysis.Limit] = ()) -> list[Plot]:
    """Every plot that applies to the run's kind, written into ``out_dir`` (created)."""
    out_dir.mkdir(parents=True, exist_ok=True)
    reqs = series.point_requests(run) if run.kind in ("llm", "vector") else []
    server = series.server_series(run) if run.kind in ("llm", "vector") else None
    wanted: list[tuple[str, str, str, Any]] = [
        ("sweep", "Sweep curve", "latency vs load with the knee, and throughput vs latency",
         lambda p: sweep_curve(run, limits, p)),
        ("latency_percentiles", "Latency percentiles per point", "p50, p90 and p99 of each latency",
         lambda p: latency_percentiles(run, p)),
        ("latency_cdf", "Latency CDF", "every successful request's latency, one curve per point",
         lambda p: latency_cdf(run, reqs, p)),
        ("timeline", "Over time", "throughput and latency during the run"
         + (", and the server's timeline from its /metrics" if server else ""),
         lambda p: timeline(run, reqs, server, p)),
        ("recall_qps", "Recall vs QPS", "the recall/throughput trade-off of each point", lambda p: recall_qps(run, p)),
        ("io500_phases", "IO500 phases", "each phase's result; invalid phases in red",
         lambda p: io500_phases(run, p)),
    ]
    plots = []
    for name, title, caption, draw in wanted:
        written = draw(out_dir / f"{name}.png")
        if written is not None:
            plots.append(Plot(name, title, written, caption))
    return plots


__all__ = ["INSTALL_HINT", "Plot", "available", "io500_phases", "latency_cdf", "latency_percentiles", "make_plots",
           "recall_qps", "sweep_curve", "timeline"]
