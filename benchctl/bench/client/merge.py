"""A run's points from its client tasks: computed from the UNION of their per-request records.

Percentiles of several processes are never averaged: every task's requests are put back on the point's
common clock (``records.load``) and ``loadgen.point_metrics`` computes the point from all of them, as if one
process had sent them -- TTFT/TPOT/ITL/E2EL statistics, throughput, errors, vLLM's record. The client's health
is kept per task (``client_health.tasks``); the point's own health is the union's dispatch lag and event-loop
lag, with the busiest task's CPU (a task is one process: one core is its limit). A task that may have been
the limit gets a warning line naming it.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from benchctl.bench.client import records as rec
from benchctl.bench.client.split import share, sweep
from benchctl.bench.client.task import point_label
from benchctl.bench.llm.config import LlmConfig
from benchctl.bench.llm.loadgen import PointOutcome, client_limited, point_metrics
from benchctl.bench.llm.stream import RequestResult

LOOP_LAG_LIMIT_MS = 20.0  # as the dispatch lag's limit in loadgen.client_limited: a loop this late delays sends


@dataclass
class Merged:
    """The merged points (dicts as the llm kind writes them), warnings, the tasks' own results, and every
    request (label, task, its record on the common clock) for the run's requests.jsonl."""

    points: list[dict[str, Any]] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    tasks: list[dict[str, Any]] = field(default_factory=list)
    requests: list[tuple[str, int, RequestResult]] = field(default_factory=list)
    interrupted: bool = False


def _warm(r: Mapping[str, Any], cfg: LlmConfig, count: int) -> bool:
    """Whether a record is a warm-up request: the open loop numbers requests in the one schedule; a closed-loop
    task numbers its own interleaved with the others' (``LlmConfig.number``), and warms up with its share of
    --warmup."""
    if cfg.scheduled:
        return int(r["i"]) < cfg.warmup
    return int(r["i"]) // count < share(cfg.warmup, int(r["task"]), count)


def union(cfg: LlmConfig, count: int, records: Sequence[Mapping[str, Any]]) -> list[tuple[int, RequestResult]]:
    """(task, request) of one point's records, numbered so that ``point_metrics`` leaves out exactly the
    warm-up requests: below ``cfg.warmup`` the warm-up ones, from it on the measured ones, in sending order."""
    loaded = sorted(((int(r["task"]), rec.load(dict(r)), _warm(r, cfg, count)) for r in records),
                    key=lambda x: (x[1].sent or x[1].scheduled, x[0]))
    if cfg.scheduled:  # already one numbering: the schedule's
        return [(task, r) for task, r, _ in loaded]
    out, warm_n, measured_n = [], 0, 0
    for task, r, warm in loaded:
        if warm:
            r.index, warm_n = warm_n, warm_n + 1
        else:
            r.index, measured_n = cfg.warmup + measured_n, measured_n + 1
        out.append((task, r))
    return out


def task_warning(task: Mapping[str, Any], point: Mapping[str, Any]) -> str:
    """Why this task may have limited the point ("" when it did not), by the client health's thresholds."""
    health = point.get("client_health")
    if not isinstance(health, Mapping):
        return ""
    figures = {"client_health": health, "duration": point.get("duration", 0.0),
               "completed": point.get("completed", 0), "failed": point.get("failed", 0)}
    why = client_limited(figures)
    lag = float(health.get("event_loop_lag_ms", {}).get("p99", 0.0) or 0.0)
    if not why and lag > LOOP_LAG_LIMIT_MS and figures["duration"] >= 2.0:
        why = f"its event loop ran up to {lag:.0f} ms late (p99): it may limit this run"
    return f"client task {task.get('task')} on {task.get('node') or '?'}: {why}" if why else ""


def merge(cfg: LlmConfig, count: int, records: Sequence[Mapping[str, Any]],
          tasks: Sequence[Mapping[str, Any] | None]) -> Merged:
    """The points of a run of ``count`` tasks from their records and results (``tasks[i]`` is None when task
    i wrote none: killed, or its node lost; its records so far still count)."""
    out = Merged()
    for i, task in enumerate(tasks):
        if task is None:
            out.warnings.append(f"client task {i} left no result (killed?): its records so far are merged")
            out.interrupted = True
            out.tasks.append({"task": i, "status": "missing"})
            continue
        out.tasks.append({k: task.get(k) for k in ("task", "node", "status", "error")})
        if task.get("status") != "complete":
            out.interrupted = True
        if task.get("error"):
            out.warnings.append(f"client task {i} on {task.get('node')}: {task['error']}")
    by_point: dict[str, list[Mapping[str, Any]]] = {}
    for r in records:
        by_point.setdefault(str(r["point"]), []).append(r)
    for total, rate in sweep(cfg):
        label = point_label(total, rate)
        mine = [(i, t, next((p for p in t.get("points", []) if p.get("point") == label), None))
                for i, t in enumerate(tasks) if t is not None]
        ran = [(i, t, p) for i, t, p in mine if p is not None]
        if not by_point.get(label) and not ran:
            continue  # not reached (interrupted before it, or the server could not be reached)
        pairs = union(cfg, count, by_point.get(label, []))
        results = [r for _, r in pairs]
        out.requests += [(label, task, r) for task, r in pairs]
        timed = [p for _, _, p in ran if "duration" in p]
        end = max((r.end for r in results if r.end), default=0.0)
        duration = max([end, *(float(p["duration"]) + float(p.get("started_late_s", 0.0)) for p in timed)])
        health = [p.get("client_health") or {} for p in timed]
        outcome = PointOutcome(
            results, duration, [float(x) for p in timed for x in p.get("loop_lag", [])],
            max((float(p.get("cpu_seconds", 0.0)) for p in timed), default=0.0),
            next((str(h.get("stopped_early")) for h in health if h.get("stopped_early")), ""),
            any(bool(h.get("unreachable")) for h in health),
            any(p.get("interrupted") for p in timed) or len(timed) < count - sum(1 for *_, p in ran if p.get("idle")),
            t0=0.0)  # the records' common clock starts at the point's start
        metrics = point_metrics(cfg, outcome, total, rate)
        metrics["client_health"]["tasks"] = [
            {"task": i, "node": t.get("node", ""), "users": p.get("users", 0),
             **({"idle": True} if p.get("idle") else {}), **(p.get("client_health") or {}),
             **({"error": p["error"]} if p.get("error") else {})} for i, t, p in ran]
        metrics["client_health"]["client_cpu_percent_note"] = "the busiest task's share of one core"
        metrics["client_tasks"] = count
        if outcome.interrupted:
            metrics["interrupted"] = True
        out.points.append(metrics)
        for _, t, p in ran:
            warning = task_warning(t, p)
            if warning:
                out.warnings.append(f"{label}: {warning}")
    return out


def task_summary(points: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """Per task, over the run: its points' users, requests and worst health figures (for run.json's
    top-level ``client_health.tasks``)."""
    tasks: dict[int, dict[str, Any]] = {}
    for p in points:
        for t in p.get("client_health", {}).get("tasks", []):
            entry = tasks.setdefault(int(t["task"]), {"task": t["task"], "node": t.get("node", ""), "points": []})
            entry["points"].append({"point": point_label(p["concurrency"], p["rate"]), "users": t.get("users", 0),
                                    "client_cpu_percent": t.get("client_cpu_percent", 0.0),
                                    "dispatch_lag_p99_ms": t.get("dispatch_lag_ms", {}).get("p99", 0.0),
                                    "event_loop_lag_p99_ms": t.get("event_loop_lag_ms", {}).get("p99", 0.0)})
    return [tasks[k] for k in sorted(tasks)]


__all__ = ["Merged", "merge", "task_summary", "task_warning", "union"]
