"""What several commands do to jobs: find them from a target word, refresh them, wait until they are ready,
and turn ``start`` options (and a recipe) into a service's start values.

``start``, ``check``, ``logs``, ``stop`` and ``bench`` all build on these; they are the public surface other
command modules import.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from benchctl.commands import CommandError, ParsedArgs
from benchctl.jobs import Job
from benchctl.options import OptionError, convert_all
from benchctl.slurm.states import JobState

if TYPE_CHECKING:
    from benchctl.app import App
    from benchctl.services.base import SlurmServer


# ---- targets -----------------------------------------------------------------------------------------
def not_mine(app: App, job: Job) -> str:
    """Why this session cannot manage ``job``, and how to reach the session that can."""
    remote = str(job.extra.get("remote") or "")
    if job.executor == app.executor_name and remote:  # the ssh executor, another login node
        return f"job {job.id} runs on {remote}; manage it with 'benchctl --remote {remote}'"
    return (f"job {job.id} was started by the {job.executor} executor; manage it with "
            f"'benchctl --executor {job.executor}'")


def resolve_jobs(app: App, target: str, *, active_only: bool = False, manage: bool = False) -> list[Job]:
    """A job id, or a service name (→ its latest job, or all its active jobs with active_only).

    Service names resolve among the current executor's jobs only. ``manage``: the caller will act on the
    job (stop, wait, bench), which only the executor that started it can do.
    """
    job = app.jobs.get(target)
    if job is not None:
        if manage and not app.owns(job):
            raise CommandError(not_mine(app, job))
        return [job]
    if target in app.services:
        mine = [j for j in app.jobs.all() if j.service == target and app.owns(j)]
        active = [j for j in mine if not j.state.is_final]
        if active_only and active:
            return active
        latest = max(active or mine, key=lambda j: j.submitted_at, default=None)
        if latest is None:
            raise CommandError(f"no {target} job tracked (start one with 'start {target}')")
        return [latest]
    raise CommandError(f"{target!r} is neither a tracked job id nor a service (see 'status')")


def refresh(app: App, jobs: Sequence[Job]) -> list[Job]:
    """The jobs with their latest scheduler state and log markers (jobs of other executors as they were)."""
    from benchctl.tracking import refresh_jobs

    mine = [j for j in jobs if app.owns(j)]
    updated = refresh_jobs(app.executor, app.jobs, mine)
    return [updated.get(j.id, j) for j in jobs]


# ---- start values ------------------------------------------------------------------------------------
def load_recipe(path: str, service: SlurmServer) -> dict[str, Any]:
    """A YAML recipe: ``{service: NAME, options: {time: ..., cpus: ...}}`` (or the options mapping alone)."""
    import yaml

    try:
        # BaseLoader: every scalar stays text. safe_load (YAML 1.1) reads `time: 12:00:00` as the base-60
        # integer 43200, which Slurm would take as 43200 minutes; the options check and convert values.
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
    try:
        return convert_all(service.start_options(), options, f"recipe {path}")
    except OptionError as exc:
        message = str(exc)
        raise CommandError(message + (f" for {service.name}" if "unknown option" in message else "")) from None


def start_values(app: App, service: SlurmServer, args: ParsedArgs) -> dict[str, Any]:
    """The service's effective start values: the parsed options > the ``--recipe`` file > settings."""
    recipe = load_recipe(args.get("recipe"), service) if args.get("recipe") else {}
    options = {o.dest: args.get(o.dest) for o in service.start_options() if args.get(o.dest) is not None}
    return service.resolve(options, recipe)


# ---- waiting -----------------------------------------------------------------------------------------
def wait_for(app: App, job: Job, timeout: float) -> Job:
    """Block until ``job`` is ready. Each state change is printed as a line (and so recorded in the
    transcript); the spinner shows the elapsed time on a terminal."""
    from benchctl.commands.services import describe
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
    app.ui.success(f"  {time.monotonic() - started:5.1f}s  {job.label} {service.ready_word}")
    describe(app, job)
    return job


def wait_timeout(app: App, given: float | None, factor: float = 1.0) -> float:
    """Seconds to wait: the option's value, else ``ui.wait_timeout`` (x ``factor``) from the settings."""
    return float(given) if given else float(app.settings.get("ui.wait_timeout")) * factor


__all__ = ["load_recipe", "refresh", "resolve_jobs", "start_values", "wait_for", "wait_timeout"]
