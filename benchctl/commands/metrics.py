"""``metrics SERVICE|JOBID [--watch]``: the few series that matter for a service, with sparklines.

With a monitor running, the last minutes come from its Prometheus (what Grafana shows); without one, the
service's own ``/metrics`` is sampled now, and ``--watch`` keeps sampling, so the sparklines grow.
"""

from __future__ import annotations

import json
import time
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING

from rich.console import Group
from rich.text import Text

from benchctl.commands import Command, CommandError, ParsedArgs, Registry
from benchctl.commands.lifecycle import refresh, resolve_jobs
from benchctl.options import Complete, Option, number

if TYPE_CHECKING:
    from benchctl.app import App
    from benchctl.bench.results import RunResult
    from benchctl.jobs import Job
    from benchctl.services.server import Server

HISTORY_MINUTES = 5.0


def _fmt(value: float) -> str:
    if value != value:  # NaN
        return "-"
    if abs(value) >= 1000:
        return f"{value:,.0f}"
    return f"{value:.3g}" if abs(value) < 10 else f"{value:.1f}"


def _view(job: Job, data: dict[str, list[tuple[float, float]]], source: str) -> Group:
    """A title line and the table of series: now, mean, max and a sparkline."""
    from benchctl.monitor.prom import sparkline
    from benchctl.tables import Col, FitTable

    table = FitTable([Col("series", justify="left"), Col("now"), Col("mean", drop=2), Col("max", drop=1),
                      Col(f"last {HISTORY_MINUTES:g} min" if source == "prometheus" else "samples", justify="left",
                          drop=3)])
    for label, points in data.items():
        values = [v for _, v in points]
        if not values:
            table.add_row(label, "-", "-", "-", "")
            continue
        table.add_row(label, _fmt(values[-1]), _fmt(sum(values) / len(values)), _fmt(max(values)), sparkline(values))
    where = "from the monitor" if source == "prometheus" else "its /metrics"
    return Group(Text(f"{job.label} metrics ({where}, {time.strftime('%H:%M:%S')})"), table)


def cmd_metrics(app: App, args: ParsedArgs) -> None:
    """The series that matter for a service (requests running/waiting, KV cache, tokens/s for LLM servers),
    from the monitor's Prometheus when one runs (its last minutes), else from the service's own /metrics.
    --watch refreshes until Ctrl-C."""
    from benchctl.monitor.prom import PromError, history, rates, sample
    from benchctl.services.monitor import Monitor
    from benchctl.services.server import Server

    job = refresh(app, resolve_jobs(app, args.positionals[0], active_only=False))[0]
    service = app.service(job.service)
    if not isinstance(service, Server) or not service.key_series:
        raise CommandError(f"metrics: {job.service} has no metrics endpoint benchctl reads")
    if job.state.is_final:
        raise CommandError(f"metrics: {job.label} has ended ({job.state.value})")
    monitor = app.service("monitor")
    mon_job = monitor.active() if isinstance(monitor, Monitor) else None
    # client_endpoint: through a forward of the SSH connection when benchctl runs on a laptop (--remote).
    prom = monitor.client_endpoint(mon_job) if isinstance(monitor, Monitor) and mon_job is not None else None
    interval = float(args.get("interval") or 2.0)
    samples: list[tuple[float, dict[str, float]]] = []

    def current() -> Group | None:
        nonlocal prom
        if prom is not None and isinstance(monitor, Monitor) and mon_job is not None:
            try:
                return _view(job, history(prom.url, monitor.credentials(mon_job), service.key_series,
                                          f'job_id="{job.id}"', HISTORY_MINUTES), "prometheus")
            except PromError as exc:
                app.ui.warn(f"{exc}; reading the service's /metrics instead")
                prom = None
        samples.append((time.time(), sample(_scrape(service, job), service.key_series)))
        if len(samples) == 1:  # a counter's rate needs two scrapes
            return None
        return _view(job, rates(samples[-200:], service.key_series), "direct")

    if not args.get("watch"):
        view = current()
        if view is None:  # direct: the second scrape a second later
            time.sleep(1.0)
            view = current()
        if view is not None:
            app.ui.renderable(view)
        return
    try:
        with app.ui.live() as show:
            while True:
                view = current()
                if view is not None:
                    show(view)
                time.sleep(interval if view is not None else 1.0)
    except KeyboardInterrupt:
        app.ui.info("watch ended")


def _scrape(service: Server, job: Job) -> dict[str, float]:
    from benchctl.bench.llm.server_metrics import scrape

    ep = service.client_endpoint(job)
    if ep is None:
        raise CommandError(f"metrics: {job.label} has no endpoint yet ('check {job.id}')")
    values = scrape(ep.url, service.credentials(job))
    if not values:
        raise CommandError(f"metrics: {ep.url}{service.metrics_path} did not answer")
    return values


def report_to_monitor(app: App, result: RunResult, run_dir: Path) -> None:
    """After a bench, with a monitor running: push the run's headline figures to its Pushgateway (Grafana's
    "benchmark runs") and keep the service's key series over the run window as Prometheus recorded them
    (``prometheus_series.json`` in the run folder), to compare runs with what Grafana shows."""
    from benchctl.executors.files import LocalFiles
    from benchctl.monitor.prom import PromError, query_range
    from benchctl.monitor.push import PushError, push_run
    from benchctl.services.monitor import Monitor

    monitor = app.service("monitor")
    job = monitor.active() if isinstance(monitor, Monitor) else None
    if job is None or not isinstance(monitor, Monitor) or not result.points:
        return
    gateway = monitor.gateway(job)
    if gateway is not None:
        try:
            count = push_run(gateway, result)
            app.ui.info(f"pushed {count} point(s) to the monitor's Pushgateway (run_id {result.run_id})")
        except PushError as exc:  # the run is saved; the monitor only misses it
            app.ui.warn(f"not pushed to the monitor ({job.id}): {exc}")
    service = app.services.get(str(result.service.get("name") or ""))
    key_series = tuple(getattr(service, "key_series", ()))
    job_id = str(result.service.get("job_id") or "")
    prom = monitor.client_endpoint(job)
    if not key_series or not job_id or prom is None:
        return
    try:
        start = datetime.fromisoformat(result.started_at).timestamp()
        end = datetime.fromisoformat(result.ended_at).timestamp()
    except ValueError:
        return
    step = max(1.0, (end - start) / 500)
    try:
        series = {s.label: {"promql": s.promql(f'job_id="{job_id}"'),
                            "values": query_range(prom.url, monitor.credentials(job), s.promql(f'job_id="{job_id}"'),
                                                  start, end, step)}
                  for s in key_series}
    except PromError as exc:
        app.ui.warn(f"the monitor's series of this run are not kept: {exc}")
        return
    path = run_dir / "prometheus_series.json"
    # results live where benchctl runs (the laptop with --remote), not on the job's side
    LocalFiles().write_text(path, json.dumps({"prometheus": prom.url, "job_id": job_id, "start": start, "end": end,
                                              "step": step, "series": series}, indent=1))
    app.ui.info(f"the monitor's view of the run: {path}")


def register(registry: Registry) -> None:
    registry.add(Command("metrics", cmd_metrics, "metrics SERVICE|JOBID [--watch] [--interval S]",
                         "a service's key series with sparklines (monitor's Prometheus, or its /metrics)",
                         (Complete.TARGET,),
                         (Option("--watch", "refresh until Ctrl-C", None, short="-w"),
                          Option("--interval", "seconds between refreshes with --watch", number(0.2),
                                 default=2.0, metavar="S")),
                         min_args=1))
