"""One client task: ``python -m benchctl.bench.client.task --spec SPEC.json --out DIR [--task I --of N]``.

Started N times by one ``srun`` (the task index from ``SLURM_PROCID``/``SLURM_NTASKS``) or as N local
processes. Each runs the llm kind's sweep with the typed config of the spec (its own share of every point,
``split``), the points starting at one wall-clock instant in every task (a file barrier in ``DIR``, which
all nodes see), and writes into ``DIR``:

    requests-<i>.jsonl  every request (``records``), flushed at least every second
    task-<i>.json       the task's points: counts, duration, CPU, event-loop lag samples, client health
    ready-<p>-<i>       its arrival at point p (the barrier)

and progress lines on stdout (``BENCHCTL_CLIENT {json}``) that the shell follows in the job's log. The API
key, if any, comes in the environment (``BENCHCTL_CLIENT_HEADERS``), never in the spec file.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import socket
import sys
import time
from collections.abc import Coroutine
from pathlib import Path
from types import FrameType
from typing import Any, TypeVar

from benchctl.bench.client import records as rec
from benchctl.bench.client.split import idle, sweep, task_config, users
from benchctl.bench.llm.config import LlmConfig

PREFIX = "BENCHCTL_CLIENT "
HEADERS_VARIABLE = "BENCHCTL_CLIENT_HEADERS"
START_MARGIN = 2.0  # seconds from the last task's arrival to the common start: time to open the connections
BARRIER_TIMEOUT = 120.0  # a task that never arrives (it failed) must not hold the others for ever
MAX_LAG_SAMPLES = 20000  # event-loop lag samples kept per point (100/s: over 3 minutes)
STOP_FILE = "stop"  # written by the shell into DIR: every task ends its point, records it and exits
T = TypeVar("T")


class Stopped(Exception):
    """The shell asked the tasks to stop (the stop file appeared)."""


async def until_stopped(coro: Coroutine[Any, Any, T], stop: Path) -> T:
    """``coro``, cancelled when ``stop`` appears. A file, not a signal: srun turns a TERM into a forced
    termination of the whole step (SIGKILL after its wait), and the tasks would lose their last records."""
    main = asyncio.current_task()

    async def watch() -> None:
        while not stop.exists():  # a stat every 0.25 s, on the shared file system: negligible
            await asyncio.sleep(0.25)
        if main is not None:
            main.cancel()

    watcher = asyncio.create_task(watch())
    try:
        return await coro
    finally:
        watcher.cancel()


def emit(event: dict[str, Any]) -> None:
    """A progress line for the shell (stdout is the job's log under Slurm)."""
    print(PREFIX + json.dumps(event, separators=(",", ":")), flush=True)


def config_from(spec: dict[str, Any]) -> LlmConfig:
    """The typed config of the spec (unknown keys -- written by a newer shell -- are ignored)."""
    known = set(LlmConfig.__dataclass_fields__)
    cfg = LlmConfig(**{k: v for k, v in spec["config"].items() if k in known and k != "loaded_prompts"})
    if cfg.prompts:
        from benchctl.bench.llm.prompts import load_prompts

        cfg.loaded_prompts = load_prompts(Path(cfg.prompts))
    return cfg


def point_label(concurrency: int, rate: float | None) -> str:
    """As the llm kind names its points (records and run.json use it)."""
    return f"rate {rate:g}/s" if rate is not None else f"concurrency {concurrency}"


def barrier(out: Path, point: int, index: int, count: int) -> float:
    """The common start of ``point`` (wall clock): every task writes when it arrived, and all take the latest
    arrival + START_MARGIN, each computing the same value from the same files."""
    mine = out / f"ready-{point}-{index}"
    tmp = mine.with_suffix(".tmp")
    tmp.write_text(repr(time.time()))
    tmp.replace(mine)  # whole or absent: another task never reads half a number
    deadline = time.monotonic() + BARRIER_TIMEOUT
    while True:
        times = []
        for i in range(count):
            try:
                times.append(float((out / f"ready-{point}-{i}").read_text()))
            except (OSError, ValueError):
                break
        if len(times) == count:
            return max(times) + START_MARGIN
        if (out / STOP_FILE).exists():
            raise Stopped
        if time.monotonic() > deadline:
            emit({"task": index, "event": "warning", "text": f"point {point}: not every task arrived in "
                  f"{BARRIER_TIMEOUT:g} s; starting without them"})
            return time.time() + 0.5
        time.sleep(0.05)


def run_task(spec: dict[str, Any], out: Path, index: int, count: int) -> int:
    """The task's sweep; its exit status (0, or 128+signal when stopped)."""
    from benchctl import aio
    from benchctl.bench.llm.http import RequestFailed
    from benchctl.bench.llm.loadgen import PointState, point_metrics, run_point
    from benchctl.bench.llm.stream import RequestResult
    from benchctl.bench.llm.workloads import plan_for

    whole = config_from(spec)
    headers = json.loads(os.environ.get(HEADERS_VARIABLE) or "{}")
    node = os.environ.get("SLURMD_NODENAME") or socket.gethostname().split(".")[0]
    result: dict[str, Any] = {"task": index, "count": count, "node": node, "pid": os.getpid(), "points": [],
                              "status": "running", "error": ""}
    records = rec.RecordFile(out / f"requests-{index}.jsonl")
    emit({"task": index, "event": "start", "node": node})
    code = 0
    try:
        # The workload (its files, its sizes by the server's tokenizer) is made here, in every task, the way
        # the shell made it: the same config gives the same requests. Then the task's share of the load.
        whole.task_index, whole.task_count = index, count  # the workload's ids (a chat's) interleave too
        aio.run(plan_for(whole).prepare(spec["url"], headers))
        cfg = task_config(whole, index, count)
        for p, (total, rate) in enumerate(sweep(whole)):
            label = point_label(total, rate)
            mine = users(total, whole.scheduled, index, count)
            start_wall = barrier(out, p, index, count)
            emit({"task": index, "event": "point", "point": label, "start": start_wall})
            if idle(cfg, whole, mine):
                result["points"].append({"point": label, "users": 0, "idle": True})
                continue
            state = PointState()
            start = time.perf_counter() + (start_wall - time.time())
            seen: set[int] = set()
            done = [0, 0]
            last = [0.0]

            def on_done(r: RequestResult, label: str = label, start: float = start,
                        seen: set[int] = seen, done: list[int] = done) -> None:
                seen.add(id(r))
                records.write(rec.dump(r, start, label, index))
                done[0 if r.ok else 1] += 1

            def tick(label: str = label, start: float = start, done: list[int] = done,
                     last: list[float] = last) -> None:
                now = time.perf_counter()
                if now - last[0] >= 1.0:
                    last[0] = now
                    emit({"task": index, "event": "progress", "point": label, "ok": done[0], "failed": done[1],
                          "elapsed": round(now - start, 2)})

            stopped: BaseException | None = None
            try:
                outcome = aio.run(until_stopped(run_point(spec["url"], cfg, mine, rate, on_done, tick, headers,
                                                          state, start_at=start), out / STOP_FILE))
            except RequestFailed as exc:
                result["points"].append({"point": label, "users": mine, "error": f"cannot reach the server: {exc}"})
                emit({"task": index, "event": "warning", "text": f"{label}: cannot reach the server: {exc}"})
                continue
            except (KeyboardInterrupt, SystemExit, asyncio.CancelledError) as exc:
                signal.signal(signal.SIGTERM, signal.SIG_IGN)  # a repeated TERM must not cut the recording
                outcome, stopped = state.outcome(interrupted=True), exc
            for r in outcome.results:  # cut at the end without the callback: recorded all the same
                if id(r) not in seen and r.end:
                    records.write(rec.dump(r, start, label, index))
            records.flush()
            health = point_metrics(cfg, outcome, mine, rate)["client_health"]
            lag = outcome.loop_lag[-MAX_LAG_SAMPLES:]
            result["points"].append({
                "point": label, "users": mine, "completed": done[0], "failed": done[1],
                "duration": outcome.duration, "cpu_seconds": outcome.cpu_seconds, "started_late_s":
                max(0.0, state.t0 - start), "loop_lag": [round(x, 6) for x in lag], "client_health": health,
                "interrupted": outcome.interrupted})
            emit({"task": index, "event": "point_done", "point": label, "ok": done[0], "failed": done[1]})
            if stopped is not None:
                code = stopped.code if isinstance(stopped, SystemExit) and isinstance(stopped.code, int) else 0
                code = 130 if isinstance(stopped, KeyboardInterrupt) else code
                result["status"] = "interrupted"
                break
    except Stopped:
        result["status"] = "interrupted"
    except (KeyboardInterrupt, SystemExit) as exc:  # between points (the barrier)
        result["status"] = "interrupted"
        code = exc.code if isinstance(exc, SystemExit) and isinstance(exc.code, int) else 130
    except Exception as exc:  # a bug or a bad spec: said in the task's result and log, never silent
        result["status"], result["error"] = "failed", f"{type(exc).__name__}: {exc}"
        code = 1
    finally:
        records.close()
        if result["status"] == "running":
            result["status"] = "complete"
        tmp = out / f".task-{index}.json.tmp"
        tmp.write_text(json.dumps(result))
        tmp.replace(out / f"task-{index}.json")
        emit({"task": index, "event": "end", "status": result["status"], "error": result["error"]})
    return code


def _stop(signum: int, frame: FrameType | None) -> None:
    # Outside the event loop (between points): leave like the loop does, so the result file is written; a
    # second TERM (srun forwards the one scancel sent) must not cut that short.
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    raise SystemExit(128 + signum)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchctl.bench.client.task", description=__doc__.split("\n")[0])
    parser.add_argument("--spec", required=True, type=Path, help="the run's spec (JSON written by the shell)")
    parser.add_argument("--out", required=True, type=Path, help="folder for the records and results")
    parser.add_argument("--task", type=int, default=None, help="this task's index (default: $SLURM_PROCID)")
    parser.add_argument("--of", type=int, default=None, help="number of tasks (default: $SLURM_NTASKS)")
    args = parser.parse_args(argv)
    index = args.task if args.task is not None else int(os.environ.get("SLURM_PROCID", "0"))
    count = args.of if args.of is not None else int(os.environ.get("SLURM_NTASKS", "1"))
    if not 0 <= index < count:
        parser.error(f"task {index} of {count}")
    signal.signal(signal.SIGTERM, _stop)
    spec = json.loads(args.spec.read_text())
    args.out.mkdir(parents=True, exist_ok=True)
    return run_task(spec, args.out, index, count)


if __name__ == "__main__":
    sys.exit(main())
