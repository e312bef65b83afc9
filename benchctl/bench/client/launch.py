"""The shell's side of a run whose client is several tasks or a Slurm job (``bench --client job``,
``--client-tasks N``): settle the config once (backend, model, prompt size), start the tasks, follow their
progress lines, stop them on Ctrl-C, merge their records (``merge``) and hand the llm kind's usual
``RunResult`` back -- the same summary table, run folder and index entry as a run in this process.
"""

from __future__ import annotations

import contextlib
import json
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from benchctl.bench.client.launchers import Here, JobClient, Launcher
from benchctl.bench.client.merge import merge, task_summary
from benchctl.bench.client.options import ClientPlan
from benchctl.bench.client.task import HEADERS_VARIABLE, PREFIX, point_label
from benchctl.bench.kind import BenchError, BenchTarget, PartialRun, Progress

if TYPE_CHECKING:
    from benchctl.app import App
    from benchctl.bench.llm.config import LlmConfig
    from benchctl.bench.llm.kind import LlmKind
    from benchctl.bench.results import RunResult, RunWriter
    from benchctl.bench.sampler import Sampler

POLL = 0.5  # seconds between reads of the tasks' logs
ENDED_WAIT = 10.0  # seconds the job may take to end after its tasks said they did
STOP_WAIT = 20.0  # seconds the tasks get after Ctrl-C to record what they measured


@dataclass
class Follower:
    """Reads the tasks' progress lines from their logs by offset, as they grow (``executor.files``)."""

    launcher: Launcher
    offsets: dict[str, int] = field(default_factory=dict)
    tasks: dict[int, dict[str, Any]] = field(default_factory=dict)  # the last progress line of each task
    starts: dict[str, float] = field(default_factory=dict)  # point label -> its common start (wall clock)

    def read(self) -> list[dict[str, Any]]:
        events = []
        for log in self.launcher.logs:
            key = str(log)
            offset = self.offsets.get(key, 0)
            try:
                data = self.launcher.files.read_bytes(log, offset)
            except OSError:
                continue  # not written yet
            complete = data[:data.rfind(b"\n") + 1]  # a line still being written is read next time
            self.offsets[key] = offset + len(complete)
            for line in complete.decode("utf-8", "replace").splitlines():
                if line.startswith(PREFIX):
                    try:
                        events.append(json.loads(line[len(PREFIX):]))
                    except ValueError:
                        continue
        for event in events:
            if event.get("event") == "point":
                self.starts.setdefault(str(event["point"]), float(event["start"]))
            if "task" in event:
                self.tasks.setdefault(int(event["task"]), {}).update(event)
        return events

    def ended(self, count: int) -> bool:
        """Whether every task printed its end line."""
        return sum(1 for t in self.tasks.values() if t.get("event") == "end") == count

    def status(self, cfg: LlmConfig, count: int) -> str:
        running = [t for t in self.tasks.values() if t.get("event") == "progress"]
        if not running:
            started = sum(1 for t in self.tasks.values() if t.get("event") != "end")
            return f"{started}/{count} client tasks started…"
        point = running[0].get("point", "")
        ok, failed = sum(int(t.get("ok", 0)) for t in running), sum(int(t.get("failed", 0)) for t in running)
        elapsed = max(float(t.get("elapsed", 0.0)) for t in running)
        if elapsed < 0:  # waiting for the common start
            return f"{point}: {len(running)}/{count} tasks start together in {-elapsed:.0f} s…"
        parts = [f"{point}: {ok} ok" + (f", {failed} failed" if failed else ""),
                 f"{ok / elapsed if elapsed > 0 else 0.0:.1f} req/s", f"{len(running)}/{count} tasks"]
        parts.append(f"{ok + failed}/{cfg.requests + cfg.warmup} requests" if cfg.requests else
                     f"{min(elapsed, cfg.duration):.0f}/{cfg.duration:.0f} s")
        return " · ".join(parts)


def time_limit(cfg: LlmConfig, points: int) -> str:
    """The client job's --time: every point's duration and grace, plus ten minutes for start and merge; a run
    counted in requests has no known length (the configured default)."""
    if cfg.requests:
        return ""
    seconds = int(points * (cfg.duration + cfg.grace + 10) + 600)
    return f"{seconds // 3600:02d}:{seconds // 60 % 60:02d}:{seconds % 60:02d}"


def run_client(app: App, plan: ClientPlan, kind: LlmKind, target: BenchTarget, cfg: LlmConfig, writer: RunWriter,
               progress: Progress) -> RunResult:
    """Run the llm kind's sweep as ``plan`` says; interrupted (Ctrl-C), the tasks are stopped and what they
    recorded is merged and raised inside ``PartialRun``."""
    from benchctl import aio
    from benchctl.bench.llm.backends import BACKENDS
    from benchctl.bench.llm.kind import auth_headers
    from benchctl.bench.llm.workloads import WorkloadError, plan_for
    from benchctl.bench.sampler import Sampler

    kind._settle(target, cfg)
    headers = auth_headers(cfg.api_key_env) or dict(target.headers)
    kind._size_prompts(target.url, cfg, headers, progress)  # once, here: every task sends the same prompts
    try:  # here for the user's notes and a bad file said at once; every task prepares its own copy the same way
        for note in aio.run(plan_for(cfg).prepare(target.url, headers)):
            progress.info(note)
    except WorkloadError as exc:
        raise BenchError(f"bench {target.name}: {exc}") from None
    with Sampler.for_server(writer.dir, target.url, BACKENDS[cfg.backend].metrics, cfg.server_metrics_interval,
                            headers, target.sidecars) as timeline:
        return _run(app, plan, kind, target, cfg, writer, progress, headers, timeline)


def _run(app: App, plan: ClientPlan, kind: LlmKind, target: BenchTarget, cfg: LlmConfig, writer: RunWriter,
         progress: Progress, headers: dict[str, str], timeline: Sampler) -> RunResult:
    from benchctl.bench.client.split import split_counts, sweep
    from benchctl.bench.llm import server_metrics as sm
    from benchctl.bench.llm.workloads import plan_for
    from benchctl.bench.sampler import Window

    launcher: Launcher = (Here(app, writer.dir / "client", plan.tasks) if plan.where == "here" else
                          JobClient(app, plan.tasks, plan.nodes, plan.partition or
                                    app.settings.text("slurm.partition_cpu"), time_limit(cfg, len(sweep(cfg)))))
    before = sm.scrape(target.url, headers)
    spec = {"config": cfg.record(), "url": target.url}
    launcher.start(spec, {HEADERS_VARIABLE: json.dumps(headers)} if headers else {})
    shares = {c: split_counts(c, plan.tasks) for c, _ in sweep(cfg)}
    progress.note(f"  client: {launcher.label}; users per task " + ", ".join(
        f"c={c}: {'+'.join(map(str, s))}" for c, s in shares.items()) if not cfg.scheduled else
        f"  client: {launcher.label}; each sends one arrival in {plan.tasks} of the schedule")
    follower = Follower(launcher)
    prefix = PrefixScrapes(target.url, headers) if plan_for(cfg).scrape_per_point else None
    interrupted: BaseException | None = None
    ended: str | None = None
    ended_at = 0.0
    try:
        while ended is None:
            for event in follower.read():
                if prefix is not None and event.get("event") == "point":
                    prefix.starting(str(event["point"]))
                if event.get("event") == "warning":
                    progress.warn(f"client task {event.get('task')}: {event.get('text')}")
                elif event.get("event") == "start":
                    progress.note(f"  client task {event['task']} on {event.get('node')}")
            waiting = launcher.waiting()
            progress.status(waiting or follower.status(cfg, plan.tasks))
            ended = launcher.poll()
            if ended is None and follower.ended(plan.tasks):
                # Every task said it ended: its records are written. The scheduler may lag behind (or not
                # answer for a while): a few seconds for the job's own end, then on.
                ended_at = ended_at or time.monotonic()
                if time.monotonic() - ended_at > ENDED_WAIT:
                    ended = ""
            if ended is None:
                time.sleep(POLL)
        follower.read()
    except KeyboardInterrupt as exc:  # Ctrl-C: stop the tasks; what they recorded is merged below
        interrupted = exc
        progress.warn(f"interrupted: stopping {launcher.label} (its tasks record what they measured)…")
        stop(launcher, follower, plan.tasks, progress)
    if ended:
        progress.warn(f"{launcher.label}: {ended}")
    if prefix is not None and interrupted is None:
        prefix.starting("")  # the last point's "after"
    records, results = read_outputs(launcher, plan.tasks)
    merged = merge(cfg, plan.tasks, records, results)
    if not merged.points and interrupted is None:
        raise BenchError(f"bench {target.name}: the client tasks measured nothing"
                         + (f" ({ended})" if ended else "") + f"; their output: {launcher.logs[0]}")
    workload, said = plan_for(cfg), set[str]()
    # A workload may name its points (a ramp, a trace): their records carry that name, as in this process.
    names = {point_label(c, r): workload.label(c, r) or point_label(c, r) for c, r in sweep(cfg)}
    for label, task, r in merged.requests:  # the run's requests.jsonl, as a run in this process writes it
        writer.request({"point": names.get(label, label), "task": task, **r.to_record(0.0)})
    for point in merged.points:
        label = point_label(point["concurrency"], point["rate"])
        named = workload.label(point["concurrency"], point["rate"])
        if named:
            point["workload_label"] = named
        if prefix is not None and not point.get("interrupted") and (stats := prefix.of(label)) is not None:
            point["prefix_cache"] = stats
        start = follower.starts.get(label)
        if start is not None:
            begin = timeline.elapsed() - (time.time() - start)
            summary = timeline.summary(Window(label, begin, begin + float(point["duration"])))
            if summary is not None:
                point["server_timeline"] = summary
        progress.note(f"  {named or label}: {point['completed']} ok, {point['failed']} failed, "
                      f"{point['request_throughput']:.1f} req/s ({plan.tasks} client tasks)")
        for warning in workload.new_warnings(point, said):
            progress.warn(f"{named or label}: {warning}")
    for warning in merged.warnings:
        progress.warn(warning)
    gone = any(p["client_health"]["unreachable"] or "stalled" in p["client_health"]["stopped_early"]
               for p in merged.points)
    stopped = interrupted is not None or merged.interrupted
    result = kind._result(target, cfg, target.url, headers, before, merged.points, writer, timeline, stopped, gone)
    result.client_health["tasks"] = [{**t, **s} for t, s in zip(merged.tasks, _pad(task_summary(merged.points),
                                                                                  len(merged.tasks)), strict=True)]
    job = getattr(launcher, "job", None)
    result.extra["client"] = {"where": plan.where, "tasks": plan.tasks, "nodes": plan.nodes,
                              "folder": str(launcher.folder), **({"job_id": job.id} if job is not None else {})}
    if interrupted is not None:
        raise PartialRun(result, interrupted)
    return result


class PrefixScrapes:
    """The server's prefix-cache counters at each point's start (what the workload's hit rate is measured
    between). A point's start line reaches the shell before its load begins (every task waits START_MARGIN
    after the barrier, and all have finished the point before): that scrape ends the previous point too."""

    def __init__(self, url: str, headers: dict[str, str]) -> None:
        self.url, self.headers = url, headers
        self.order: list[str] = []
        self.scrapes: dict[str, dict[str, float]] = {}

    def starting(self, label: str) -> None:
        """Point ``label`` is about to start ("" = the run ended)."""
        from benchctl.bench.llm import server_metrics as sm

        if label in self.scrapes:
            return
        self.order.append(label)
        self.scrapes[label] = sm.scrape(self.url, self.headers)

    def of(self, label: str) -> dict[str, Any] | None:
        """The point's prefix-cache figures, from its start to the next point's start (or the run's end)."""
        from benchctl.bench.llm.workloads.prefix import prefix_cache_stats

        if label not in self.order or self.order.index(label) + 1 >= len(self.order):
            return None
        after = self.order[self.order.index(label) + 1]
        return prefix_cache_stats(self.scrapes[label], self.scrapes[after])


def stop(launcher: Launcher, follower: Follower, count: int, progress: Progress) -> None:
    """Ask the tasks to stop, wait (bounded) until each said it ended, then make sure they are gone (the
    job cancelled). A second Ctrl-C skips the wait."""
    try:
        launcher.request_stop()
        deadline = time.monotonic() + STOP_WAIT
        while time.monotonic() < deadline and not follower.ended(count) and launcher.poll() is None:
            progress.status(f"stopping {launcher.label}…")
            time.sleep(POLL)
            follower.read()
    except KeyboardInterrupt:
        pass
    finally:
        launcher.stop()


def _pad(items: list[dict[str, Any]], n: int) -> list[dict[str, Any]]:
    by_task = {int(i["task"]): i for i in items}
    return [by_task.get(k, {}) for k in range(n)]


def read_outputs(launcher: Launcher, count: int) -> tuple[list[dict[str, Any]], list[dict[str, Any] | None]]:
    """Every task's records and result file (None where it wrote none), read through the launcher's files."""
    from benchctl.bench.client.records import parse_lines

    records: list[dict[str, Any]] = []
    results: list[dict[str, Any] | None] = []
    for i in range(count):
        with contextlib.suppress(OSError):  # a task that never started wrote nothing
            records += parse_lines(launcher.files.read_text(launcher.folder / f"requests-{i}.jsonl"))
        try:
            data = json.loads(launcher.files.read_text(launcher.folder / f"task-{i}.json"))
            results.append(data if isinstance(data, dict) else None)
        except (OSError, ValueError):
            results.append(None)
    return records, results


__all__ = ["Follower", "read_outputs", "run_client", "time_limit"]
