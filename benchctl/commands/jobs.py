"""The job table as commands: ``status`` (``--watch``, ``--json``), ``forget``."""

from __future__ import annotations

import json
import time
from collections.abc import Sequence
from typing import TYPE_CHECKING

from rich.table import Table
from rich.text import Text

from benchctl.commands import Command, CommandError, ParsedArgs, Registry
from benchctl.commands.lifecycle import refresh
from benchctl.jobs import Job
from benchctl.options import Complete, Option
from benchctl.slurm.states import JobState

if TYPE_CHECKING:
    from benchctl.app import App

STATE_STYLE = {JobState.RUNNING: "green", JobState.PENDING: "yellow", JobState.COMPLETED: "blue",
               JobState.FAILED: "red", JobState.TIMEOUT: "red", JobState.OUT_OF_MEMORY: "red",
               JobState.NODE_FAIL: "red", JobState.CANCELLED: "magenta", JobState.GONE: "dim"}


def job_table(app: App, jobs: Sequence[Job]) -> Table:
    table = Table(show_edge=False, header_style="bold")
    for col in ("JOB", "SERVICE", "STATE", "NODE", "ENDPOINT", "READY", "AGE", "REASON"):
        table.add_column(col, no_wrap=col != "REASON")
    now = time.time()
    for job in jobs:
        age = int(now - job.submitted_at)
        ep = app.service(job.service).endpoint(job) if job.port and not job.state.is_final else None
        endpoint = f"{ep.host}:{ep.port}" if ep else ""
        reason = job.reason or (f"exit {job.exit_code}" if job.exit_code not in (None, 0) else "")
        # A job of a login node reached over SSH (the ssh executor) names it: a laptop may drive several.
        remote = str(job.extra.get("remote") or "").rpartition("@")[2].split(":")[0]
        node = job.host or job.nodes
        table.add_row(job.id, job.service, Text(job.state.value, style=STATE_STYLE.get(job.state, "")),
                      f"{node}@{remote}" if remote else node, endpoint, "yes" if job.ready else job.health,
                      f"{age // 3600}h{age % 3600 // 60:02d}m" if age >= 3600 else f"{age // 60}m{age % 60:02d}s",
                      reason)
    return table


def print_json(app: App, jobs: Sequence[Job]) -> None:
    """The job records as one JSON document (like ``squeue --json``): plain text, no markup, for scripts."""
    records = []
    for job in jobs:
        record = job.to_dict()
        ep = app.service(job.service).endpoint(job) if job.port and not job.state.is_final else None
        record["endpoint"] = ep.url if ep else None
        records.append(record)
    app.ui.text(json.dumps({"jobs": records}, indent=1, default=str))


def cmd_status(app: App, args: ParsedArgs) -> None:
    """Table of all tracked jobs (refreshed from the scheduler). --watch redraws it as states change (Ctrl-C
    ends); --json prints the records for scripts."""
    jobs = app.jobs.all()
    if not jobs and not args.get("watch"):
        if args.get("json"):
            print_json(app, [])
        else:
            app.ui.info("no jobs tracked")
        return
    from benchctl.executors import ExecutorError

    def current() -> list[Job]:
        shown = app.jobs.all()
        shown = shown if args.get("all") else shown[-20:]
        try:
            return refresh(app, shown)
        except ExecutorError as exc:
            app.ui.warn(f"states may be stale: {exc}")
            return shown

    if args.get("json"):
        print_json(app, current())
        return
    if not args.get("watch"):
        app.ui.renderable(job_table(app, current()))
        return
    interval = float(app.settings.get("ui.poll_interval"))
    seen: list[tuple[str, str, bool, str]] | None = None
    try:
        while True:
            shown = current()
            now = [(j.id, j.state.value, j.ready, j.health) for j in shown]
            if now != seen:  # a new table only when something changed: the transcript stays readable
                app.ui.info(time.strftime("%H:%M:%S") + " (Ctrl-C ends --watch)")
                app.ui.renderable(job_table(app, shown) if shown else Text("no jobs tracked"))
                seen = now
            time.sleep(interval)
    except KeyboardInterrupt:
        app.ui.info("watch ended")


def cmd_forget(app: App, args: ParsedArgs) -> None:
    """Remove job records from the table (a job Slurm no longer knows, an old run). A job that may still run
    is refused unless --force (it would keep running, untracked)."""
    targets = args.positionals[0].split(",") if args.positionals else []
    if not targets:
        raise CommandError("forget: name a job id (see 'status')")
    jobs = []
    for target in targets:
        job = app.jobs.get(target)
        if job is None:
            raise CommandError(f"forget: no tracked job {target!r} (see 'status --all')")
        if not job.state.is_final and not args.get("force"):
            raise CommandError(f"forget: {job.label} is {job.state.value}; stop it first, or 'forget {job.id} "
                               "--force' to drop the record while it runs")
        jobs.append(job)
    for job in jobs:
        app.jobs.remove(job.id)
        app.ui.info(f"forgot {job.label}")


def register(registry: Registry) -> None:
    registry.add(Command("status", cmd_status, "status [--all] [--watch] [--json]", "table of tracked jobs", (),
                         (Option("--all", "all jobs, not just the last 20", None),
                          Option("--watch", "redraw when states change (Ctrl-C ends)", None, short="-w"),
                          Option("--json", "the job records as JSON (for scripts)", None))))
    registry.add(Command("forget", cmd_forget, "forget JOBID[,JOBID...] [--force]",
                         "remove job records from the table", (Complete.JOB,),
                         (Option("--force", "also a job that may still run (it keeps running, untracked)", None),),
                         min_args=1))
