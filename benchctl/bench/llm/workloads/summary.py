"""What the LLM summary shows of the workloads: extra columns of the points table (validity rate, prefix-cache
hit rate) and short lines under it (TTFT per turn, the trace replayed, per-second figures of ramps/traces,
constraint kinds). Everything shown is also in run.json; this only keeps the terminal compact."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from benchctl.tables import Col

MAX_SECONDS_SHOWN = 40


def _pct(value: Any) -> str:
    return f"{100 * value:.0f}%" if isinstance(value, (int, float)) else "-"


def extra_columns(points: Sequence[dict[str, Any]]) -> list[tuple[Col, Callable[[dict[str, Any]], str]]]:
    """(column, cell of a point) for the workload figures some point has."""
    cols: list[tuple[Col, Callable[[dict[str, Any]], str]]] = []
    if any("validity_rate" in p for p in points):
        cols.append((Col("valid", 1), lambda p: _pct(p.get("validity_rate"))))
    if any(p.get("prefix_cache") for p in points):
        cols.append((Col("prefix hit", 1), lambda p: _pct((p.get("prefix_cache") or {}).get("hit_rate"))))
    return cols


def _series(rows: list[dict[str, Any]], key: str) -> str:
    return " ".join("-" if r.get(key) is None else f"{r[key]:g}" for r in rows[:MAX_SECONDS_SHOWN])


def extra_lines(labelled: Sequence[tuple[str, dict[str, Any]]]) -> list[str]:
    """Lines under the table, for each (point label, point values)."""
    out: list[str] = []
    for label, p in labelled:
        info = p.get("structured")
        if info:
            kinds = ", ".join(f"{k} {v.get('valid', 0)}/{v.get('valid', 0) + v.get('invalid', 0)}"
                              for k, v in sorted(info.get("by_kind", {}).items()))
            out.append(f"{label}: structured output valid {_pct(p.get('validity_rate'))} ({kinds}; "
                       f"{info.get('unchecked', 0)} not checkable, {info.get('failed', 0)} failed)")
        turns = p.get("ttft_by_turn")
        if turns:
            out.append(f"{label}: TTFT p50 by turn (ms): " + " · ".join(
                f"{t}: {v['p50_ttft_ms']:.1f}" if v.get("p50_ttft_ms") is not None else f"{t}: -"
                for t, v in sorted(turns.items(), key=lambda kv: int(kv[0]))))
        cache = p.get("prefix_cache")
        if cache:
            out.append(f"{label}: server prefix cache {cache['hits']:.0f} of {cache['queries']:.0f} tokens hit "
                       f"({_pct(cache.get('hit_rate'))})")
        trace = p.get("trace")
        if trace:
            lo, hi = trace["window_s"]
            out.append(f"{label}: trace {trace['name']} ({trace['layout']}), window {lo:g}-{hi:g} s at "
                       f"x{trace['speed']:g}: {trace['sent']} of {trace['requests_in_window']} requests sent")
        rows = p.get("per_second")
        if rows:
            more = f" (first {MAX_SECONDS_SHOWN} s; all in run.json)" if len(rows) > MAX_SECONDS_SHOWN else ""
            out.append(f"{label}: per second{more}: sent {_series(rows, 'sent')} | ok {_series(rows, 'completed')}"
                       f" | errors {_series(rows, 'errors')} | TTFT p50 ms {_series(rows, 'ttft_p50_ms')}")
    return out


__all__ = ["extra_columns", "extra_lines"]
