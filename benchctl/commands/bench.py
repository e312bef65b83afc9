"""``bench``: target → bench kind → run → summary. Thin: the kinds (``benchctl.bench``) do the work.

``bench SERVICE`` runs the service's bench kind against its job: a server is waited for until it is ready,
a batch run (IO500) is submitted with its start options (or taken with ``--job``) and waited for until it
has finished. ``bench llm|vector --url URL`` runs a kind against any endpoint.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from benchctl.bench.client.options import CLIENT_OPTIONS, client_plan
from benchctl.bench.kind import COMMON_OPTIONS, BenchError, BenchKind, BenchTarget, PartialRun
from benchctl.commands import Command, CommandError, ParsedArgs, Registry
from benchctl.commands.lifecycle import refresh, resolve_jobs, start_values, wait_for, wait_timeout
from benchctl.executors.base import ExecutorError
from benchctl.options import Complete, Option, integer

if TYPE_CHECKING:
    from benchctl.app import App
    from benchctl.jobs import Job
    from benchctl.services.base import SlurmServer

# Options of a service target: which job, and how long to wait for it.
TARGET_OPTIONS: tuple[Option, ...] = (
    Option("--job", "benchmark this job of the service (a batch run: collect its results instead of submitting "
           "a new one)", metavar="JOBID", complete=Complete.JOB),
    Option("--timeout", "seconds to wait for the job (default: ui.wait_timeout; x8 for batch runs)", integer(1),
           metavar="S"),
)


def resolve_kind(app: App, target: str) -> tuple[BenchKind, type[SlurmServer] | None]:
    """The bench kind for ``target`` (a service, a tracked job id, or a kind run against a URL) and the service
    class."""
    job = app.jobs.get(target)
    cls = app.services.get(job.service if job is not None else target)
    if cls is not None:
        if not cls.bench_kind:
            raise CommandError(f"{cls.name} has no benchmark client yet")
        kind = app.bench_kinds.get(cls.bench_kind)
        if kind is None:
            raise CommandError(f"{target}: bench kind {cls.bench_kind!r} is not registered")
        return kind, cls
    kind = app.bench_kinds.get(target)
    if kind is not None and kind.direct:
        return kind, None
    raise CommandError(f"unknown service {target!r} (available: {', '.join(app.services.names())}; or "
                       f"{' | '.join(k.name for k in app.bench_kinds if k.direct)} --url URL)")


def bench_options(app: App, positionals: Sequence[str]) -> tuple[Option, ...]:
    """The options of ``bench TARGET``: the kind's, the target's, and a batch run's start options."""
    if not positionals:
        return COMMON_OPTIONS
    try:
        kind, cls = resolve_kind(app, positionals[0])
    except CommandError:
        return ()
    from benchctl.services.server import BatchRun

    if cls is None:
        return COMMON_OPTIONS + kind.options + kind.direct_options + CLIENT_OPTIONS
    start = cls.start_options() if issubclass(cls, BatchRun) else ()
    return COMMON_OPTIONS + TARGET_OPTIONS + kind.options + kind.service_options + CLIENT_OPTIONS + start


def bench_topics(app: App) -> list[str]:
    """What ``bench`` takes: services with a benchmark, and the kinds that run against a URL."""
    names = [cls.name for cls in app.services if cls.bench_kind]
    return sorted(names) + sorted(k.name for k in app.bench_kinds if k.direct and k.name not in names)


def service_target(app: App, name: str, args: ParsedArgs) -> BenchTarget:
    """A ready server's endpoint (waiting for it like `check --wait`), or a finished batch run's job."""
    from benchctl.services.server import BatchRun, Server

    service = app.service(name)
    if isinstance(service, BatchRun):
        if args.get("job"):
            job = resolve_jobs(app, args.get("job"), manage=True)[0]
            if job.service != name:
                raise CommandError(f"job {job.id} is a {job.service} job, not {name}")
        else:
            from benchctl.templates import TemplateError

            try:
                job = service.submit(start_values(app, service, args))
            except TemplateError as exc:
                raise CommandError(f"bench {name}: {exc}") from None
            for notice in app.service_context().site.take_notices():
                app.ui.info(notice)
            app.ui.success(f"submitted {name} as job {job.id} (run dir {job.run_dir})")
        job = wait_for(app, job, wait_timeout(app, args.get("timeout"), factor=8))
        return BenchTarget(name=name, job=job, service=service,
                           record={"name": name, "job_id": job.id, "nodes": job.host or job.nodes})
    job = pick_server_job(app, name, args.get("job"))
    from benchctl.services import ServiceError

    try:
        ready = service.is_ready(job)
    except ServiceError as exc:  # the service stopped inside its job: say so now, do not wait
        raise CommandError(str(exc)) from None
    if not ready and (job.ready or job.health) and isinstance(service, Server):
        job = service.check_health(job)
        raise CommandError(f"{job.label} was ready but does not answer now ({job.health}); 'check {job.id}' and "
                           f"'logs {job.id}' show more")
    if not ready:
        # Started a moment ago: wait for it like `check --wait` does (progress lines, clear failure).
        job = wait_for(app, job, wait_timeout(app, args.get("timeout")))
    endpoint = service.endpoint(job)
    if endpoint is None:
        raise CommandError(f"{job.label} has no endpoint yet ('check {name}')")
    record = {"name": name, "job_id": job.id, "nodes": job.host or job.nodes, "endpoint": endpoint.url,
              "image": job.options.get("image", ""), "runtime": job.options.get("runtime", ""),
              "model": job.options.get("model", ""), "options": dict(job.options)}
    # What the client connects to: the same endpoint, through a local forward when benchctl runs on a laptop.
    client = service.client_endpoint(job) if isinstance(service, Server) else None
    return BenchTarget(name=name, url=(client or endpoint).url, job=job, service=service, record=record,
                       headers=service.credentials(job), sidecars=exporter_targets(app, job))


def exporter_targets(app: App, job: Job) -> list[Any]:
    """The job's --exporters sidecars (node-exporter, DCGM) as the sampler's extra targets: read from the
    monitor's targets/exporters files, with the monitor's password (the exporters ask for it)."""
    from benchctl.bench.sampler import ScrapeTarget
    from benchctl.bench.timeline import FAMILIES
    from benchctl.services.monitor import Monitor

    monitor = app.service("monitor")
    mon_job = monitor.active() if isinstance(monitor, Monitor) and job.options.get("exporters") else None
    if mon_job is None or not isinstance(monitor, Monitor):
        return []
    folder = Path(mon_job.run_dir) / "targets" / "exporters"
    out = []
    try:
        names = [n for n in app.executor.files.listdir(folder) if n.startswith(f"{job.id}-")]
        for name in sorted(names):
            entry = json.loads(app.executor.files.read_text(folder / name))[0]
            kind = str(entry["labels"]["exporter"])
            # node:port as this machine reaches it (over ssh: a forward, as for the server itself)
            node, _, port = str(entry["targets"][0]).rpartition(":")
            host, local = app.executor.reach(node, int(port))
            out.append(ScrapeTarget(f"{kind}@{entry['labels']['node']}", f"http://{host}:{local}/metrics",
                                    FAMILIES[kind], monitor.credentials(mon_job)))
    except (OSError, ValueError, KeyError, IndexError, TypeError, ExecutorError):
        return out  # the timeline then has the server alone
    return out


def pick_server_job(app: App, name: str, wanted: str | None) -> Job:
    """The job ``bench NAME`` measures: ``wanted`` (--job, or the job id given instead of the service), else
    the newest job of the service that is ready, else the newest one still starting (it is waited for). Says
    which when there is a choice."""
    if wanted:
        job = refresh(app, resolve_jobs(app, wanted, manage=True))[0]
        if job.service != name:
            raise CommandError(f"job {job.id} is a {job.service} job, not {name}")
        if job.state.is_final:
            raise CommandError(f"{job.label} has ended ({job.state.value}); 'status' lists the running jobs")
        return job
    jobs = [j for j in refresh(app, resolve_jobs(app, name, active_only=True, manage=True)) if not j.state.is_final]
    if not jobs:
        raise CommandError(f"no active {name} job to benchmark (start one with 'start {name}')")
    jobs.sort(key=lambda j: j.submitted_at)
    ready = [j for j in jobs if j.ready]
    job = (ready or jobs)[-1]
    if len(jobs) > 1:
        why = "the newest ready one" if ready else "none is ready yet: the newest"
        others = ", ".join(j.id for j in jobs if j is not job)
        app.ui.info(f"bench {name}: job {job.id} ({why}; also running: {others}; --job ID picks another)")
    return job


class UiProgress:
    """``Progress`` over the shell's Ui: the status goes to the spinner, lines to the screen and transcript."""

    def __init__(self, app: App, status: Any, quiet: bool) -> None:
        self.app, self._status, self.quiet = app, status, quiet

    def status(self, text: str) -> None:
        self._status.update(text)

    def note(self, text: str) -> None:
        if not self.quiet:
            self.app.ui.text(text)

    def info(self, text: str) -> None:
        self.app.ui.info(text)

    def warn(self, text: str) -> None:
        self.app.ui.warn(text)


def attach_manifest(app: App, result: Any, target: BenchTarget, kind: str, values: dict[str, Any],
                    folder: Path) -> None:
    """The run's manifest into run.json (``manifest``) and ``manifest.json``; a fact it cannot learn is left
    out, and a manifest that cannot be written never costs the measurement."""
    from benchctl.bench.manifest import build_manifest
    from benchctl.bench.results import write_json

    try:
        manifest = build_manifest(app, target, kind, values)
        result.extra["manifest"] = manifest
        write_json(folder / "manifest.json", manifest)
    except OSError as exc:
        app.ui.warn(f"manifest.json not written: {exc.strerror}")


def say_sweep(app: App, result: Any) -> None:
    """A sweep of three points or more ends with its analysis (knee, saturation, the SLO when the run has one):
    the lines ``report`` starts with, so the user sees where the service saturates without another command."""
    from benchctl.report.analysis import SloError, sweep_summary

    if len(result.points) < 3:
        return
    try:
        lines = sweep_summary(result)
    except SloError as exc:  # the run's own --slo was checked before it ran; say it rather than lose the run
        lines = [f"SLO: {exc}"]
    for line in lines:
        app.ui.print(line, wrap=True)  # prose: wrapped between words


def cmd_bench(app: App, args: ParsedArgs) -> None:
    """Benchmark a ready service with its client (LLM servers: streaming load with vLLM's metrics; vector
    databases: ingest, recall@k and a QPS sweep; IO500: submit, wait, scores), or any endpoint with `bench llm
    --url URL` / `bench vector --url URL --store S`. Results go to ~/benchctl/results/<run-id>/."""
    from benchctl.bench.results import RunWriter
    from benchctl.commands.repeat import load_reference, mark_reference, repeat_of, run_repeated, say_reference

    if repeat_of(args) > 1:
        run_repeated(app, args, cmd_bench)
        return
    bands = load_reference(args)
    kind, cls = resolve_kind(app, args.positionals[0])
    if cls is not None and app.jobs.get(args.positionals[0]) is not None and not args.get("job"):
        args.opts["job"] = args.positionals[0]  # `bench JOBID` = `bench SERVICE --job JOBID`
    values = {o.dest: args.get(o.dest) for o in bench_options(app, args.positionals) if args.get(o.dest) is not None}
    try:
        config = kind.config(values)  # checked before anything waits or is submitted
        plan, note = client_plan(kind.name, values, app.settings.text("bench.client"))
        if note:
            app.ui.info(note)
        target = kind.direct_target(config) if cls is None else service_target(app, cls.name, args)
    except BenchError as exc:
        raise CommandError(str(exc)) from None
    try:
        writer = RunWriter(app.home, kind.name, target.name)
    except OSError as exc:
        raise CommandError(f"cannot write results: {exc.strerror}: {exc.filename}") from None
    interrupted: BaseException | None = None
    try:
        with app.ui.status(f"bench {target.name}: starting…") as status:
            progress = UiProgress(app, status, bool(args.get("quiet")))
            plan, note = plan.for_url(target.url)
            if note:
                progress.info(note)
            if plan.in_process:
                result = kind.run(target, config, writer, progress)
            else:  # client tasks, here or as a Slurm job (bench.client)
                from benchctl.bench.client.launch import run_client

                result = run_client(app, plan, kind, target, config, writer, progress)  # type: ignore[arg-type]
    except BenchError as exc:
        raise CommandError(str(exc)) from None
    except PartialRun as exc:  # Ctrl-C / SIGTERM / a failure mid-run: keep and show what was measured
        result, interrupted = exc.result, exc.cause
    output = Path(args.get("output")).expanduser() if args.get("output") else None
    attach_manifest(app, result, target, kind.name, values, writer.dir)
    reference = mark_reference(app, result, bands, str(args.get("reference") or ""))
    try:
        path = writer.finish(result, extra_output=output)
    except OSError as exc:  # a full disk: what was measured is still shown, and the failure said as such
        app.ui.renderable(kind.summary_view(result))
        raise CommandError(f"results not saved: {exc.strerror}: {exc.filename or writer.dir} (the summary above "
                           "is all that is left of this run)") from None
    app.last_run_id = result.run_id
    app.ui.renderable(kind.summary_view(result))
    if interrupted is None:
        say_sweep(app, result)
    app.ui.info(f"results: {path}" + (f" (and {output})" if output else ""))
    if writer.index_error is not None:
        app.ui.warn(f"the run is saved but not listed in {writer.root / 'index.jsonl'}: {writer.index_error.strerror}")
    if writer.write_error is not None:
        app.ui.warn(f"per-request records incomplete: {writer.write_error.strerror} "
                    f"({writer.dir / 'requests.jsonl'})")
    if isinstance(interrupted, BenchError):
        raise CommandError(f"{interrupted} (what was measured until then is saved)")
    if interrupted is not None:
        app.ui.warn("interrupted: what was measured until then is saved (the last point is marked interrupted)")
        raise interrupted
    from benchctl.commands.metrics import report_to_monitor

    report_to_monitor(app, result, writer.dir)
    problems = kind.problems(result) + say_reference(app, reference)
    if problems:
        raise CommandError(f"bench {target.name}: " + "; ".join(problems))


def register(registry: Registry) -> None:
    registry.add(Command("bench", cmd_bench, "bench SERVICE|JOBID [options] | bench llm|vector --url URL [options]",
                         "benchmark a ready service", (Complete.BENCH,), min_args=1, options_for=bench_options,
                         topics=bench_topics))
