"""Service commands: start, check, logs, stop, status. Thin: parse → service (``SlurmServer``) → ``Ui``."""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from rich.text import Text

from benchctl.commands import Command, CommandError, ParsedArgs, Registry
from benchctl.commands.jobs import STATE_STYLE
from benchctl.commands.lifecycle import not_mine, refresh, resolve_jobs, start_values, wait_for, wait_timeout
from benchctl.executors.base import ExecutorError
from benchctl.executors.files import tail_lines
from benchctl.jobs import Job
from benchctl.options import Complete, Option, integer, path
from benchctl.redact import secrets_in
from benchctl.services.server import Server
from benchctl.slurm.states import JobState

if TYPE_CHECKING:
    from benchctl.app import App
    from benchctl.services.base import SlurmServer



def start_options(app: App, positionals: Sequence[str]) -> tuple[Option, ...]:
    """The options of ``start SERVICE``: the service's own and the common ones."""
    if not positionals:
        from benchctl.services.options import COMMON_OPTIONS

        return COMMON_OPTIONS
    cls = app.services.get(positionals[0])
    return cls.start_options() if cls is not None else ()


# ---- start ---------------------------------------------------------------------------------------
def cmd_start(app: App, args: ParsedArgs) -> None:
    """Submit a service as a job: a Slurm batch job (or, with the local executor, a process on this machine).
    --dry-run prints the batch script and submits nothing."""
    service = app.service(args.positionals[0])
    if not service.startable:
        raise CommandError(f"{service.name} is submitted by its own command: 'help {service.name}'")
    submit(app, service, args)


def submit(app: App, service: SlurmServer, args: ParsedArgs) -> None:
    """Submit ``service`` with the options of ``args`` and say where it went (start, pull)."""
    values = start_values(app, service, args)
    refuse_secrets(service.name, values)
    running = [j for j in app.jobs.all() if j.service == service.name and not j.state.is_final
               and app.owns(j)]
    if running and not args.get("dry_run"):
        app.ui.info(f"note: {service.name} already runs as " + ", ".join(f"{j.id} ({j.state.value})" for j in running)
                    + "; this starts another (bench and check take a job id to choose)")
    from benchctl.templates import TemplateError

    try:
        if args.get("dry_run"):
            script = service.render(values, service.new_run_dir())
            site_notices(app)
            app.ui.print(Text(script.rstrip("\n")), markup=False)
            app.ui.info(f"(dry run: nothing submitted; executor {app.executor.name}, runtime {values['runtime']})")
            return
        with app.ui.status(f"submitting {service.name} ({app.executor.name})…"):
            job = service.submit(values)
    except TemplateError as exc:
        raise CommandError(f"cannot render {service.template}: {exc}") from None
    # The local executor has no partition: do not name one.
    keys = ("time",) if app.executor.name == "local" else ("partition", "time")
    where = ", ".join(f"{k} {values[k]}" for k in keys if values.get(k))
    site_notices(app)
    app.ui.success(f"submitted {service.name} as job {job.id} ({where or 'local'}; runtime {values['runtime']})")
    app.ui.info(f"  logs in {job.run_dir}")
    app.ui.info(f"  next: 'check {service.name} --wait' waits until it is ready")


def cmd_pull(app: App, args: ParsedArgs) -> None:
    """Submit a short CPU job that pulls the pinned images of SERVICE (or all) into the SIF cache, once, so that
    the jobs of a run find them instead of each pulling from Docker Hub (anonymous pulls are limited)."""
    from benchctl.services.pull import Pull

    pull = app.service("pull")
    assert isinstance(pull, Pull)
    keys = pull.images_for(args.positionals[0].split(","))
    args.opts["images"] = ",".join(keys)
    submit(app, pull, args)


def site_notices(app: App) -> None:
    """What the site decided for this start (the account from Slurm, a reservation, a scratch fallback)."""
    for notice in app.service_context().site.take_notices():
        app.ui.info(notice)


def refuse_secrets(name: str, values: dict[str, Any]) -> None:
    """A secret in a start value would be written into the job script (readable by the admins, kept with the
    job's files): refuse it and say how to pass it instead."""
    for key, value in values.items():
        if isinstance(value, str) and secrets_in(value):
            flag = "--" + key.replace("_", "-")
            raise CommandError(
                f"start {name}: {flag} holds a secret (an API key, token or password), which would be written into "
                "the job script. benchctl gives every server job a key of its own ('check' says how to reach it; "
                "--no-auth turns that off); pass your own secrets by the NAME of an environment variable that "
                "holds them (--hf-token-env, --api-key-env).")


# ---- check ---------------------------------------------------------------------------------------
def readiness(job: Job) -> tuple[str, str]:
    """(word, style) of a RUNNING server job's readiness, as check, status and the toolbar show it."""
    if job.ready:
        return "ready", "bold green"
    if job.health == "stopped":
        return "service stopped", "bold red"
    if job.health:
        return job.health, "bold red"
    return "not ready yet", "yellow"


def describe(app: App, job: Job, *, cached: bool = False) -> None:
    """Print one job's state, node, endpoint, readiness and tunnel hint."""
    service = app.service(job.service)
    style = STATE_STYLE.get(job.state, "")
    head = Text.assemble(f"{job.service} job {job.id}: ", (job.state.value, style))
    if cached:
        head.append(" (last known)", style="dim")
    if job.state is JobState.PENDING and job.reason:
        head.append(f" ({job.reason})")
    node = job.host or job.nodes
    if node:
        head.append(f" on {node}")
    ep = service.endpoint(job)
    if ep and not job.state.is_final:
        head.append(f"  {ep.host}:{ep.port}")
    if job.state is JobState.RUNNING and isinstance(service, Server):
        word, word_style = readiness(job)
        head.append(f"  {word}", style=word_style)
    app.ui.print(head)
    rows = list(service.details(job))
    if isinstance(service, Server) and not job.state.is_final:
        rows.append(("auth", service.auth_line(job)))
    if isinstance(service, Server) and job.out_path and job.state is not JobState.PENDING:
        from benchctl.coldstart import cold_start

        started = cold_start(job.submitted_at, service.log_info(job).markers)
        if started is not None and started.line():
            rows.append(("start", started.line()))  # short: a longer label would re-align every row
    if job.port and node and not job.state.is_final:
        tunnel = service.tunnel(job, job.port) if isinstance(service, Server) else ""
        if tunnel:
            rows.append(("tunnel", tunnel))
        rows.append(("url", f"http://{ep.host if ep else node}:{job.port}{getattr(service, 'health_path', '')}"))
    rows.append(("logs", str(job.out_path)))
    width = max(len(label) for label, _ in rows) + 1
    notes = []
    if not app.owns(job):
        notes.append(f"(last seen state: {not_mine(app, job)})")
    if job.state.is_final and job.state is not JobState.COMPLETED:
        notes.append(service.failure_reason(job))
    elif job.state is JobState.COMPLETED and job.exit_code not in (None, 0):
        notes.append(f"exit code {job.exit_code}")
    for note in notes:
        app.ui.text(f"  {note}")
    for label, value in rows:
        app.ui.text(f"  {label + ':':<{width}} {value}")


def cmd_check(app: App, args: ParsedArgs) -> None:
    """Show Slurm state, node, endpoint, readiness and the tunnel command; --wait blocks until ready."""
    if args.get("timeout") is not None and not args.get("wait"):
        raise CommandError("check: --timeout is how long --wait waits; add --wait")
    if args.get("json"):
        from benchctl.commands.jobs import print_json

        targets = (resolve_jobs(app, args.positionals[0], active_only=True) if args.positionals
                   else [j for j in app.jobs.all() if not j.state.is_final])
        print_json(app, refresh(app, targets))
        return
    if args.positionals:  # a service: all its active jobs (else its latest)
        jobs = resolve_jobs(app, args.positionals[0], active_only=True, manage=bool(args.get("wait")))
    else:
        mine = [j for j in app.jobs.all() if app.owns(j)]
        jobs = [j for j in mine if not j.state.is_final] or mine[-1:]
        if not jobs:
            raise CommandError("no jobs tracked (start one with 'start SERVICE')")
    if args.get("wait"):
        jobs = refresh(app, jobs)
        # A job found ended on refresh (cancelled elsewhere) is not waited for when others still run.
        if args.positionals:
            jobs = [j for j in jobs if not j.state.is_final] or jobs
        timeout = wait_timeout(app, args.get("timeout"))
        jobs = [wait_for(app, job, timeout) for job in jobs]
        return
    try:
        jobs = refresh(app, jobs)
    except ExecutorError as exc:  # what is known, then one line (one query failed: no retry per job)
        for job in jobs:
            describe(app, job, cached=True)
        raise CommandError(f"{exc} (the states above are the last known)") from None
    for job in jobs:
        service = app.service(job.service)
        if isinstance(service, Server):
            job = service.check_health(job)  # "ready" is re-checked, never taken from the past
        describe(app, job)


# ---- logs ----------------------------------------------------------------------------------------
def cmd_logs(app: App, args: ParsedArgs) -> None:
    """Print the last lines of a job's output (--err: its error file); --follow keeps printing (Ctrl-C ends)."""
    job = refresh(app, resolve_jobs(app, args.positionals[0]))[0]
    path = job.err_path if args.get("err") else job.out_path
    files = app.executor.files
    if not path or not files.exists(path):
        state = f"job is {job.state.value}" + (f" ({job.reason})" if job.reason else "")
        app.ui.info(f"no output yet at {path} ({state})")
        if not args.get("follow"):
            return
    app.ui.info(f"==> {path} <==")
    lines = tail_lines(files, path, args.get("n"))
    for line in lines:
        app.ui.text(line)
    if not lines and not args.get("follow"):
        app.ui.text("(empty)")
    if args.get("follow"):
        follow(app, job, path)


def follow(app: App, job: Job, path: str) -> None:
    """Print lines appended to ``path`` until the job ends or the user presses Ctrl-C."""
    files = app.executor.files
    info = files.stat(path)
    pos = info.size if info else 0
    last_check = 0.0
    try:
        while True:
            info = files.stat(path)
            if info is not None and info.size < pos:  # truncated (or replaced): go on from its start
                app.ui.info("(the log was truncated; following it from its start)")
                pos = 0
            if info is not None and info.size > pos:
                try:
                    chunk = files.read_bytes(path, pos)
                except OSError:
                    chunk = b""
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
        jobs = [j for j in app.jobs.active() if app.owns(j)]
        if not jobs:
            app.ui.info("no active jobs")
            return
    else:
        jobs = resolve_jobs(app, target, active_only=True, manage=True)
    if len(jobs) > 1 and not args.get("yes") and not app.confirm(
            f"stop {len(jobs)} jobs ({', '.join(j.label for j in jobs)})?"):
        app.ui.info("nothing stopped")
        return
    grace = float(app.settings.get("slurm.stop_grace"))
    failed: list[str] = []
    for job in jobs:  # every job it can: one that fails to stop is reported, the others still stop
        if job.state.is_final:
            app.ui.info(f"{job.label} already ended ({job.state.value})")
            continue
        try:
            with app.ui.status(f"stopping {job.label}…"):
                job = app.service(job.service).stop(job, grace)
        except ExecutorError as exc:
            failed.append(job.id)
            app.ui.error(f"cannot stop {job.label}: {exc}")
            continue
        if job.state is JobState.GONE:
            app.ui.info(f"{job.label}: the scheduler no longer knows this job; marked GONE "
                        f"('forget {job.id}' removes the record)")
            continue
        app.ui.print(Text.assemble(f"stopped {job.service} job {job.id}: ",
                                   (job.state.value, STATE_STYLE.get(job.state, ""))))
    if failed:
        raise CommandError(f"stop: {len(failed)} job(s) not stopped: {', '.join(failed)}")


def register(registry: Registry) -> None:
    target = (Complete.TARGET,)
    registry.add(Command("start", cmd_start, "start SERVICE [options] [--recipe FILE] [--dry-run]",
                         "submit a service as a job (Slurm, or a process here)", (Complete.SERVICE,),
                         (Option("--dry-run", "print the batch script, submit nothing", None),
                          Option("--recipe", "YAML file with start options", path, metavar="FILE",
                                 complete=Complete.PATH)),
                         min_args=1, options_for=start_options,
                         topics=lambda app: sorted(c.name for c in app.services if c.startable)))
    registry.add(Command("pull", cmd_pull, "pull SERVICE[,SERVICE...]|all [start options]",
                         "pull container images once, ahead of a run", (Complete.IMAGES,),
                         (Option("--dry-run", "print the batch script, submit nothing", None),),
                         min_args=1, options_for=lambda app, words: start_options(app, ["pull"])))
    registry.add(Command("check", cmd_check, "check [SERVICE|JOBID] [--wait [--timeout S]]",
                         "state, node, endpoint, readiness, tunnel hint", target,
                         (Option("--wait", "block until ready (or failed)", None),
                          Option("--timeout", "seconds --wait waits (default: ui.wait_timeout)", integer(0),
                                 metavar="S"),
                          Option("--json", "the job records as JSON (for scripts)", None))))
    registry.add(Command("logs", cmd_logs, "logs SERVICE|JOBID [--follow] [--err] [-n N]",
                         "show a job's output", target,
                         (Option("--follow", "keep printing new lines (Ctrl-C ends)", None, short="-f"),
                          Option("--err", "the error file instead of the output file", None),
                          Option("-n", "number of lines", integer(0), default=50, metavar="N")),
                         min_args=1))
    registry.add(Command("stop", cmd_stop, "stop SERVICE|JOBID|all [--yes]", "stop cleanly, then cancel the job",
                         (Complete.TARGET_ALL,),
                         (Option("--yes", "no question when several jobs match (the shell asks; scripts never do)",
                                 None, short="-y"),), min_args=1))

