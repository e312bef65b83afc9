"""Each client task's share of one load, so that the tasks together make exactly the requested load.

Closed loop: ``c`` users over ``n`` tasks are ``c // n`` each, one more for the first ``c % n`` tasks; a
``--requests`` (and ``--warmup``) count is split the same way. Open loop (``--rate``, ``--ramp``, a trace):
every task computes the whole arrival schedule (seeded, or the trace's) and takes every ``n``-th arrival from
its index (``loadgen.run_point`` with ``cfg.task_index``/``cfg.task_count``), so the union is the one-process
schedule. A workload's request shapes (structured, chat, prefix) travel with the config: each task builds its
own requests the same way, and each chat user holds its conversation in the task that runs it.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence

from benchctl.bench.llm.config import LlmConfig
from benchctl.bench.llm.loadgen import arrival_offsets


def share(total: int, index: int, count: int) -> int:
    """Task ``index`` of ``count``'s part of ``total`` (the parts differ by at most one and sum to it)."""
    if count < 1 or not 0 <= index < count:
        raise ValueError(f"task {index} of {count}")
    return total // count + (1 if index < total % count else 0)


def users(concurrency: int, open_loop: bool, index: int, count: int) -> int:
    """Task ``index``'s users (closed loop) or in-flight cap (open loop). An open loop's cap is at least 1 per
    task: its arrivals are fixed by the schedule, and a task without a slot could send none of them."""
    mine = share(concurrency, index, count)
    return max(1, mine) if open_loop else mine


def task_offsets(n: int, rate: float, arrival: str, burstiness: float, seed: int, index: int,
                 count: int) -> list[tuple[int, float]]:
    """(request index, offset) of the arrivals of task ``index`` of ``count``: what its dispatcher sends."""
    offsets = arrival_offsets(n, rate, arrival, burstiness, seed)
    return [(k, offsets[k]) for k in range(index, n, count)]


def task_config(cfg: LlmConfig, index: int, count: int) -> LlmConfig:
    """The config task ``index`` runs with. Closed loop: its share of the users and of --requests/--warmup.
    Open loop: the whole schedule's size (it takes its own arrivals from it) and its share of the cap."""
    mine = dataclasses.replace(cfg, task_index=index, task_count=count,
                               concurrency=[users(c, cfg.scheduled, index, count) for c in cfg.concurrency])
    if not cfg.scheduled:
        mine.requests = share(cfg.requests, index, count) if cfg.requests else 0
        mine.warmup = share(cfg.warmup, index, count)
    return mine


def idle(cfg: LlmConfig, whole: LlmConfig, concurrency: int) -> bool:
    """Whether a task has nothing to do at a point: no users of its own, or no requests while the run counts
    them (``requests = 0`` would mean "until --duration" and run a task that should stay idle)."""
    if concurrency < 1:
        return True
    return not whole.scheduled and bool(whole.requests) and cfg.requests + cfg.warmup == 0


def sweep(cfg: LlmConfig) -> list[tuple[int, float | None]]:
    """The run's points as the llm kind runs them: one per --rate (capped by the first --concurrency), else
    one per --concurrency."""
    if cfg.rate:
        return [(cfg.concurrency[0], r) for r in cfg.rate]
    return [(c, None) for c in cfg.concurrency]


def split_counts(total: int, count: int) -> Sequence[int]:
    """Every task's share of ``total`` (for messages and tests)."""
    return [share(total, i, count) for i in range(count)]


__all__ = ["idle", "share", "split_counts", "sweep", "task_config", "task_offsets", "users"]
