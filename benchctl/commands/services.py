"""Service commands: start, check, logs, stop, status, bench. Thin: parse → SlurmServer → Ui."""

from __future__ import annotations

import getpass
import os
import time
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from rich.table import Table
from rich.text import Text

from benchctl.commands import ArgKind, Command, CommandError, OptSpec, ParsedArgs, Registry
from benchctl.jobs import Job
from benchctl.slurm import logparse
from benchctl.slurm.states import JobState

if TYPE_CHECKING:
    from benchctl.app import App

_STATE_STYLE = {JobState.RUNNING: "green", JobState.PENDING: "yellow", JobState.COMPLETED: "blue",
                JobState.FAILED: "red", JobState.TIMEOUT: "red", JobState.CANCELLED: "magenta",
                JobState.OUT_OF_MEMORY: "red", JobState.NODE_FAIL: "red"}


def service_names() -> list[str]:
    from benchctl.services import SERVICES

    return sorted(SERVICES)


def _start_options(app: App, positionals: Sequence[str]) -> tuple[OptSpec, ...]:
    from benchctl.services import SERVICES

    cls = SERVICES.get(positionals[0]) if positionals else None
    if cls is None:
        return ()
    kinds = {"int": ArgKind.INT, "choice": ArgKind.CHOICE, "path": ArgKind.PATH}
    return tuple(OptSpec(o.flag, kinds.get(o.kind, ArgKind.TEXT), o.help, o.choices, metavar=o.metavar)
                 for o in cls.start_options())


# ---- target resolution --------------------------------------------------------------------------
def resolve_jobs(app: App, target: str, *, active_only: bool = False, manage: bool = False) -> list[Job]:
    """A job id, or a service name (→ its latest job, or all its active jobs with active_only).

    Service names resolve among the current executor's jobs only. ``manage``: the caller will act on the
    job (stop, wait, bench), which only the executor that started it can do.
    """
    job = app.jobs.get(target)
    if job is not None:
        if manage and job.executor != app.executor_name:
            raise CommandError(f"job {job.id} was started by the {job.executor} executor; "
                               f"manage it with 'benchctl --executor {job.executor}'")
        return [job]
    if target in service_names():
        mine = [j for j in app.jobs.all() if j.service == target and j.executor == app.executor_name]
        active = [j for j in mine if not j.state.is_final]
        if active_only and active:
            return active
        latest = max(active or mine, key=lambda j: j.submitted_at, default=None)
        if latest is None:
            raise CommandError(f"no {target} job tracked (start one with 'start {target}')")
        return [latest]
    raise CommandError(f"{target!r} is neither a tracked job id nor a service (see 'status')")


def refresh(app: App, jobs: Sequence[Job]) -> list[Job]:
    from benchctl.tracking import refresh_jobs

    mine = [j for j in jobs if j.executor == app.executor.name]
    updated = refresh_jobs(app.executor, app.jobs, mine)
    return [updated.get(j.id, j) for j in jobs]


# ---- start ---------------------------------------------------------------------------------------
def load_recipe(path: str, service: Any) -> dict[str, Any]:
    """A YAML recipe: ``{service: NAME, options: {time: ..., cpus: ...}}`` (or the options mapping alone)."""
    import yaml

    try:
        # BaseLoader: every scalar stays text. safe_load (YAML 1.1) reads `time: 12:00:00` as the base-60
        # integer 43200, which Slurm would take as 43200 minutes; Option.convert checks and converts values.
        data = yaml.load(Path(path).expanduser().read_text(), Loader=yaml.BaseLoader)
    except OSError as exc:
        raise CommandError(f"cannot read recipe {path}: {exc.strerror}") from None
    except yaml.YAMLError as exc:
        raise CommandError(f"recipe {path} is not valid YAML: {str(exc).splitlines()[0]}") from None
    if not isinstance(data, dict):
        raise CommandError(f"recipe {path}: expected a mapping of options")
    if "service" in data and data["service"] != service.name:
        raise CommandError(f"recipe {path} is for {data['service']!r}, not {service.name!r}")
    options = data.get("options", {k: v for k, v in data.items() if k != "service"})
    if not isinstance(options, dict):
        raise CommandError(f"recipe {path}: 'options' must be a mapping")
    by_dest = {o.dest: o for o in service.start_options()}
    values = {}
    for key, raw in options.items():
        opt = by_dest.get(str(key).replace("-", "_"))
        if opt is None:
            raise CommandError(f"recipe {path}: unknown option {key!r} for {service.name}")
        values[opt.dest] = _convert(opt, raw, f"recipe {path}")
    return values


def _convert(opt: Any, raw: Any, where: str) -> Any:
    from benchctl.services.options import OptionError

    try:
        return opt.convert(raw)
    except OptionError as exc:
        raise CommandError(f"{where}: {exc}") from None


def cmd_start(app: App, args: ParsedArgs) -> None:
    """Submit a service as a Slurm job. --dry-run prints the batch script and submits nothing."""
    service = app.service(args.positionals[0])
    recipe = load_recipe(args.get("recipe"), service) if args.get("recipe") else {}
    options = {o.dest: _convert(o, args.get(o.dest), "start") for o in service.start_options()
               if args.get(o.dest) is not None}
    values = service.resolve(options, recipe)
    from benchctl.templates import TemplateError

    try:
        if args.get("dry_run"):
            script = service.render(values, service.new_run_dir())
            app.ui.print(Text(script.rstrip("\n")), markup=False)
            app.ui.info(f"(dry run: nothing submitted; executor {app.executor.name}, runtime {values['runtime']})")
            return
        with app.ui.status(f"submitting {service.name} ({app.executor.name})…"):
            job = service.submit(values)
    except TemplateError as exc:
        raise CommandError(f"cannot render {service.template}: {exc}") from None
    where = ", ".join(f"{k} {values[k]}" for k in ("partition", "time") if values.get(k))
    app.ui.success(f"submitted {service.name} as job {job.id} ({where or 'local'}; runtime {values['runtime']})")
    app.ui.info(f"  logs in {job.run_dir}")
    app.ui.info(f"  next: 'check {service.name} --wait' waits until it is ready")


# ---- check ---------------------------------------------------------------------------------------
def describe(app: App, job: Job) -> None:
    """Print one job's state, node, endpoint, readiness and tunnel hint."""
    service = app.service(job.service)
    style = _STATE_STYLE.get(job.state, "")
    head = Text.assemble(f"{job.service} job {job.id}: ", (job.state.value, style))
    if job.state is JobState.PENDING and job.reason:
        head.append(f" ({job.reason})")
    node = job.host or job.nodes
    if node:
        head.append(f" on {node}")
    ep = service.endpoint(job)
    if ep and not job.state.is_final:
        head.append(f"  {ep.host}:{ep.port}")
    if job.state is JobState.RUNNING and not service.is_batch:
        head.append("  ready" if job.ready else "  not ready yet", style="bold green" if job.ready else "yellow")
    app.ui.print(head)
    for label, value in service.details(job):
        app.ui.text(f"  {label + ':':<7} {value}")
    if job.executor != app.executor_name:
        app.ui.text(f"  (last seen state: this job belongs to the {job.executor} executor)")
    if job.state.is_final and job.state is not JobState.COMPLETED:
        app.ui.text(f"  {service.failure_reason(job)}")
    elif job.state is JobState.COMPLETED and job.exit_code not in (None, 0):
        app.ui.text(f"  exit code {job.exit_code}")
    if job.port and node and not job.state.is_final:
        s = app.settings
        host = s.text("tunnel.host")
        if host:
            user = s.text("tunnel.user") or os.environ.get("USER") or getpass.getuser()
            app.ui.text(f"  tunnel: ssh -p {s.get('tunnel.port')} {user}@{host} -NL {job.port}:{node}:{job.port}")
        app.ui.text(f"  url:    http://{ep.host if ep else node}:{job.port}{service.health_path}")
    app.ui.text(f"  logs:   {job.out_path}")


def cmd_check(app: App, args: ParsedArgs) -> None:
    """Show Slurm state, node, endpoint, readiness and the tunnel command; --wait blocks until ready."""
    if args.positionals:
        jobs = resolve_jobs(app, args.positionals[0], manage=bool(args.get("wait")))
    else:
        mine = [j for j in app.jobs.all() if j.executor == app.executor_name]
        jobs = [j for j in mine if not j.state.is_final] or mine[-1:]
        if not jobs:
            raise CommandError("no jobs tracked (start one with 'start SERVICE')")
    jobs = refresh(app, jobs)
    if args.get("wait"):
        timeout = float(args.get("timeout") or app.settings.get("ui.wait_timeout"))
        jobs = [wait_for(app, job, timeout) for job in jobs]
        return
    for job in jobs:
        service = app.service(job.service)
        if job.state is JobState.RUNNING and not job.ready and job.port and service.probe(job):
            job = app.jobs.update(job.id, ready=True) or job
        describe(app, job)


def wait_for(app: App, job: Job, timeout: float) -> Job:
    """Block until ``job`` is ready. Each state change is printed as a line (and so recorded in the
    transcript); the spinner shows the elapsed time on a terminal."""
    from benchctl.services import ServiceError

    service = app.service(job.service)
    seen: list[tuple[object, ...]] = []
    with app.ui.status(f"waiting for {job.label}…") as status:
        def progress(j: Job, elapsed: float) -> None:
            where = f" on {j.host or j.nodes}" if (j.host or j.nodes) else ""
            why = f" ({j.reason})" if j.reason and j.state is JobState.PENDING else ""
            key = (j.state, j.reason, where)
            if not seen or seen[-1] != key:
                seen.append(key)
                app.ui.text(f"  {elapsed:5.1f}s  {j.label} {j.state.value}{why}{where}")
            status.update(f"waiting for {j.label}: {j.state.value}{why}{where}, {elapsed:.0f}s / {timeout:.0f}s")

        started = time.monotonic()
        try:
            job = service.wait_ready(job, timeout, progress)
        except ServiceError as exc:
            raise CommandError(str(exc)) from None
    done = "finished" if service.is_batch else "ready"
    app.ui.success(f"  {time.monotonic() - started:5.1f}s  {job.label} {done}")
    describe(app, job)
    return job


# ---- logs ----------------------------------------------------------------------------------------
def cmd_logs(app: App, args: ParsedArgs) -> None:
    """Print the last lines of a job's output (--err: its error file); --follow keeps printing (Ctrl-C ends)."""
    job = refresh(app, resolve_jobs(app, args.positionals[0]))[0]
    path = Path(job.err_path if args.get("err") else job.out_path)
    count = args.get("n", 50)
    if not path.exists():
        state = f"job is {job.state.value}" + (f" ({job.reason})" if job.reason else "")
        app.ui.info(f"no output yet at {path} ({state})")
        if not args.get("follow"):
            return
    app.ui.info(f"==> {path} <==")
    for line in logparse.tail(path, count):
        app.ui.text(line)
    if args.get("follow"):
        follow(app, job, path)


def follow(app: App, job: Job, path: Path) -> None:
    """Print lines appended to ``path`` until the job ends or the user presses Ctrl-C."""
    pos = path.stat().st_size if path.exists() else 0
    last_check = 0.0
    try:
        while True:
            if path.exists():
                with path.open("rb") as fh:
                    fh.seek(pos)
                    chunk = fh.read()
                if chunk:
                    pos += len(chunk)
                    for line in chunk.decode("utf-8", errors="replace").splitlines():
                        app.ui.text(line)
            if time.monotonic() - last_check > 2:
                last_check = time.monotonic()
                job = refresh(app, [job])[0]
                if job.state.is_final:
                    app.ui.info(f"(job {job.id} ended: {job.state.value})")
                    return
            time.sleep(0.3)
    except KeyboardInterrupt:
        app.ui.info("(stopped following)")


# ---- stop ----------------------------------------------------------------------------------------
def cmd_stop(app: App, args: ParsedArgs) -> None:
    """Stop a service's jobs, one job, or all: the service shuts down cleanly, then the job is cancelled."""
    target = args.positionals[0]
    if target == "all":
        jobs = [j for j in app.jobs.active() if j.executor == app.executor.name]
        if not jobs:
            app.ui.info("no active jobs")
            return
    else:
        jobs = resolve_jobs(app, target, active_only=True, manage=True)
    grace = float(app.settings.get("slurm.stop_grace"))
    for job in jobs:
        if job.state.is_final:
            app.ui.info(f"{job.label} already ended ({job.state.value})")
            continue
        with app.ui.status(f"stopping {job.label}…"):
            job = app.service(job.service).stop(job, grace)
        app.ui.print(Text.assemble(f"stopped {job.service} job {job.id}: ",
                                   (job.state.value, _STATE_STYLE.get(job.state, ""))))


# ---- status --------------------------------------------------------------------------------------
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
        table.add_row(job.id, job.service, Text(job.state.value, style=_STATE_STYLE.get(job.state, "")),
                      job.host or job.nodes, endpoint, "yes" if job.ready else "",
                      f"{age // 3600}h{age % 3600 // 60:02d}m" if age >= 3600 else f"{age // 60}m{age % 60:02d}s",
                      reason)
    return table


def cmd_status(app: App, args: ParsedArgs) -> None:
    """Table of all tracked jobs (refreshed from the scheduler)."""
    jobs = app.jobs.all()
    if not jobs:
        app.ui.info("no jobs tracked")
        return
    shown = jobs if args.get("all") else jobs[-20:]
    from benchctl.executors import ExecutorError

    try:
        shown = refresh(app, shown)
    except ExecutorError as exc:
        app.ui.warn(f"states may be stale: {exc}")
    app.ui.renderable(job_table(app, shown))


def register(registry: Registry) -> None:
    target = (ArgKind.TARGET,)
    registry.add(Command("start", cmd_start, "start SERVICE [options] [--recipe FILE] [--dry-run]",
                         "submit a service as a Slurm job", (ArgKind.SERVICE,),
                         (OptSpec("--dry-run", None, "print the batch script, submit nothing"),
                          OptSpec("--recipe", ArgKind.PATH, "YAML file with start options", metavar="FILE")),
                         min_args=1, options_for=_start_options))
    registry.add(Command("check", cmd_check, "check [SERVICE|JOBID] [--wait [--timeout S]]",
                         "state, node, endpoint, readiness, tunnel hint", target,
                         (OptSpec("--wait", None, "block until ready (or failed)"),
                          OptSpec("--timeout", ArgKind.INT, "seconds --wait waits", metavar="S"))))
    registry.add(Command("logs", cmd_logs, "logs SERVICE|JOBID [--follow] [--err] [-n N]",
                         "show a job's output", target,
                         (OptSpec("--follow", None, "keep printing new lines (Ctrl-C ends)", short="-f"),
                          OptSpec("--err", None, "the error file instead of the output file"),
                          OptSpec("-n", ArgKind.INT, "number of lines (default 50)", metavar="N")),
                         min_args=1))
    registry.add(Command("stop", cmd_stop, "stop SERVICE|JOBID|all", "stop cleanly, then cancel the job",
                         (ArgKind.TARGET_ALL,), min_args=1))
    registry.add(Command("status", cmd_status, "status [--all]", "table of tracked jobs", (),
                         (OptSpec("--all", None, "all jobs, not just the last 20"),)))

