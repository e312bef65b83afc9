"""What a report says, independent of where it is shown: the run's facts, the table of its points, the server's
timeline per point, IO500's phases and score. Plain strings, so the terminal (rich), HTML and Markdown writers
format the same figures; nothing here imports rich or matplotlib.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from benchctl.bench.results import RunResult
from benchctl.bench.timeline import FAMILIES, cell


@dataclass
class DataTable:
    """A titled table of strings. ``drop``: per column, 0 = always shown, higher = left out first when narrow."""

    title: str
    headers: list[str]
    rows: list[list[str]] = field(default_factory=list)
    drop: list[int] = field(default_factory=list)
    note: str = ""
    flagged: set[int] = field(default_factory=set)  # rows to highlight (an invalid IO500 phase)

    def column(self, header: str) -> list[str]:
        i = self.headers.index(header)
        return [row[i] for row in self.rows]


def num(value: Any, digits: int = 1) -> str:
    """A figure for a cell: ``-`` when absent; no decimals from 1000 on (the digits tell nothing there)."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or value != value:
        return "-"
    return f"{value:.0f}" if abs(value) >= 1000 else f"{value:.{digits}f}"


def point_label(p: Mapping[str, Any]) -> str:
    rate = p.get("rate")
    mark = " (interrupted)" if p.get("interrupted") else " (cut)" if p.get("stopped_early") or (
        isinstance(p.get("client_health"), Mapping) and p["client_health"].get("stopped_early")) else ""
    return (f"rate {rate:g}/s" if isinstance(rate, (int, float)) else f"c={p.get('concurrency')}") + mark


def llm_ms(p: Mapping[str, Any], pct: str, name: str) -> Any:
    """An LLM point's ``pct`` (p50, p99) of ``name`` (ttft, tpot, itl, e2el) in ms: vLLM writes p50 as
    ``median_*`` and benchctl both; runs written by other tools may have only one of them."""
    keys = (f"median_{name}_ms", f"p50_{name}_ms") if pct == "p50" else (f"{pct}_{name}_ms",)
    return next((p[k] for k in keys if p.get(k) is not None), None)


def recall_key(p: Mapping[str, Any]) -> str:
    return next((k for k in p if k.startswith("recall@")), "recall@10")


def _duration(run: RunResult) -> str:
    try:
        secs = (datetime.fromisoformat(run.ended_at) - datetime.fromisoformat(run.started_at)).total_seconds()
    except ValueError:
        return "-"
    return f"{secs:.0f} s" if secs < 120 else f"{secs / 60:.1f} min"


def who(run: RunResult) -> str:
    """``llm vllm meta-llama/...``: the kind, service and model, each once (``bench llm --url`` names its
    service after the kind)."""
    parts = (run.kind, run.service.get("name"), run.config.get("model"))
    return " ".join(dict.fromkeys(str(x) for x in parts if x))


def facts(run: RunResult) -> list[tuple[str, str]]:
    """The run's identity: what ran against what, when, from which benchctl."""
    svc = run.service
    service = " ".join(str(x) for x in (svc.get("name"), f"job {svc['job_id']}" if svc.get("job_id") else "",
                                        svc.get("endpoint") or svc.get("nodes") or "") if x)
    out = [("run", run.run_id or "-"), ("kind", run.kind), ("service", service or "-")]
    model = run.config.get("model") or svc.get("model")
    if model:
        out.append(("model", str(model)))
    out += [("started", run.started_at[:19].replace("T", " ") or "-"), ("duration", _duration(run)),
            ("status", run.status)]
    if run.errors:
        out.append(("failures", ", ".join(f"{k} x{v}" for k, v in sorted(run.errors.items()))))
    version = run.benchctl_version + (f" ({run.git_sha[:10]})" if run.git_sha else "")
    out += [("host", run.host or "-"), ("benchctl", version or "-")]
    if run.command_line:
        out.append(("command", run.command_line))
    return out


def llm_points(run: RunResult) -> DataTable:
    goodput = bool(run.config.get("slo"))
    headers = ["POINT", "OK", "FAIL", "req/s", "out tok/s", "TTFT p50", "TTFT p99", "TPOT p50", "TPOT p99",
               "ITL p50", "E2EL p50", "E2EL p99"] + (["goodput"] if goodput else [])
    table = DataTable("Sweep points", headers, drop=[0, 0, 0, 0, 3, 0, 2, 0, 2, 4, 1, 1] + ([1] if goodput else []),
                      note="times in ms; TTFT to the first token-carrying chunk, TPOT = (last - first) / (n - 1), "
                           "ITL = gaps between chunks, E2EL = end-to-end latency")
    for point in run.points:
        p = point.values
        row = [point_label(p), str(p.get("completed", "-")), str(p.get("failed", "-")),
               num(p.get("request_throughput"), 2), num(p.get("output_throughput"), 0)]
        row += [num(llm_ms(p, pct, name)) for pct, name in (("p50", "ttft"), ("p99", "ttft"), ("p50", "tpot"),
                                                              ("p99", "tpot"), ("p50", "itl"), ("p50", "e2el"),
                                                              ("p99", "e2el"))]
        if goodput:
            row.append(num(p.get("request_goodput"), 2))
        table.rows.append(row)
    return table


def vector_points(run: RunResult) -> DataTable:
    key = recall_key(run.points[0].values) if run.points else "recall@10"
    table = DataTable("Sweep points", ["POINT", "REQUESTS", "ERRORS", "QPS", "p50 ms", "p90 ms", "p99 ms", key],
                      drop=[0, 2, 0, 0, 0, 3, 0, 0], note="latency of one query as the client saw it, ms")
    serial = run.metrics.get("serial")
    if isinstance(serial, Mapping):
        lat = serial.get("latency_ms") or {}
        table.rows.append(["serial", str(serial.get("queries", "-")), "", "", num(lat.get("p50"), 2),
                           num(lat.get("p90"), 2), num(lat.get("p99"), 2), num(serial.get(key), 3)])
    for point in run.points:
        p = point.values
        lat = p.get("latency_ms") or {}
        table.rows.append([point_label(p), str(p.get("requests", "-")), str(p.get("errors", "-")),
                           num(p.get("qps"), 0), num(lat.get("p50"), 2), num(lat.get("p90"), 2),
                           num(lat.get("p99"), 2), num(p.get(key), 3)])
    return table


def vector_ingest(run: RunResult) -> str:
    ing = run.metrics.get("ingest")
    if not isinstance(ing, Mapping) or "vectors" not in ing:
        return ""
    lat = ing.get("batch_latency_ms") or {}
    return (f"ingest: {ing['vectors']} vectors in {num(ing.get('insert_s'), 2)} s = {num(ing.get('vectors_per_s'), 0)} "
            f"vectors/s (batch p50 {num(lat.get('p50'))} ms, p99 {num(lat.get('p99'))} ms)")


def server_timeline(run: RunResult) -> DataTable | None:
    """Each point's server figures (peak / mean of gauges, rates of counters) when the run sampled /metrics."""
    status = run.extra.get("server_timeline")
    family = FAMILIES.get(str(status.get("family", ""))) if isinstance(status, Mapping) else None
    if family is None or not isinstance(status, Mapping):
        return None
    rows = [(point_label(p.values), p.values.get("server_timeline") or {}) for p in run.points]
    shown = [f for f in family.figures if any(t.get(f.key) is not None for _, t in rows)]
    if not shown:
        return None
    table = DataTable(f"Server's timeline (/metrics every {float(status.get('interval_s', 0)):g} s)",
                      ["POINT", *(f.header for f in shown)], drop=[0, *range(1, len(shown) + 1)],
                      note="gauges: peak / mean over the point; counters: rate per second")
    for label, t in rows:
        table.rows.append([label, *(cell(f, t.get(f.key)) for f in shown)])
    return table


def io500_phases(run: RunResult) -> DataTable:
    table = DataTable("IO500 phases", ["PHASE", "VALUE", "UNIT", "TIME s", "SCORE", "VALID"], drop=[0, 0, 0, 2, 1, 0],
                      note="SCORE: counts towards the standard score (x: extended score only)")
    for ph in run.metrics.get("phases") or []:
        if not isinstance(ph, Mapping) or ph.get("name") == "timestamp":  # a marker line of IO500, not a phase
            continue
        if ph.get("invalid"):
            table.flagged.add(len(table.rows))
        in_score = "yes" if ph.get("in_score") else "x" if ph.get("in_scorex") else ""
        table.rows.append([str(ph.get("name")), num(ph.get("value"), 3), str(ph.get("unit", "")),
                           num(ph.get("time_s"), 1), in_score, "INVALID" if ph.get("invalid") else "ok"])
    return table


def io500_score(run: RunResult) -> DataTable:
    m = run.metrics
    table = DataTable("IO500 score", ["SCORE", "TOTAL", "BANDWIDTH GiB/s", "METADATA kIOPS", "IO500 SAYS"],
                      drop=[0, 0, 0, 0, 1])
    for label, key in (("standard", "score"), ("extended", "score_extended")):
        s = m.get(key)
        if isinstance(s, Mapping) and s:
            table.rows.append([label, num(s.get("total"), 3), num(s.get("bandwidth"), 3), num(s.get("iops"), 3),
                               "INVALID" if s.get("invalid") else "valid"])
    reasons = [str(r) for r in m.get("invalid_reasons") or []]
    table.note = ("run INVALID: " + "; ".join(reasons)) if reasons else "run valid (no invalid phase or note)"
    return table


def tables(run: RunResult) -> list[DataTable]:
    """Every table of the report for this run's kind, in reading order."""
    if run.kind == "llm":
        out = [llm_points(run)]
    elif run.kind == "vector":
        out = [vector_points(run)]
    elif run.kind == "io500":
        return [io500_score(run), io500_phases(run)]
    else:
        return []
    timeline = server_timeline(run)
    return out + ([timeline] if timeline is not None else [])


def notes(run: RunResult) -> list[str]:
    """Lines under the tables: the vector ingest, the server's view, a run that did not finish."""
    out = []
    if run.kind == "vector" and (line := vector_ingest(run)):
        out.append(line)
    means = run.metrics.get("server_means_ms")
    if isinstance(means, Mapping) and means:
        out.append("server's view (/metrics, mean over the run): " + ", ".join(
            f"{name} {num(value)} ms" for name, value in means.items()))
    if run.status != "complete":
        out.append(f"this run is {run.status}: its last point may be partial")
    if run.extra.get("requests_incomplete"):
        out.append(str(run.extra["requests_incomplete"]))
    return out


__all__ = [
    "DataTable",
    "facts",
    "io500_phases",
    "io500_score",
    "llm_ms",
    "llm_points",
    "notes",
    "num",
    "point_label",
    "recall_key",
    "server_timeline",
    "tables",
    "vector_ingest",
    "vector_points",
    "who",
]
