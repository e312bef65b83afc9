"""What ``bench`` adds around a run: ``--repeat N`` (N whole runs, then one run of means with 95 % intervals)
and ``--reference FILE`` (each figure marked in or out of its expected band, a figure out of band fails the
command). The measuring itself stays in ``commands/bench.py``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from rich.text import Text

from benchctl.commands import CommandError, ParsedArgs
from benchctl.tables import Col, FitTable

if TYPE_CHECKING:
    from benchctl.app import App
    from benchctl.bench.reference import Band
    from benchctl.bench.results import RunResult


def load_reference(args: ParsedArgs) -> list[Band] | None:
    """The bands of ``--reference`` (read before anything runs: a broken file costs no measurement)."""
    if not args.get("reference"):
        return None
    from benchctl.bench.reference import load_bands

    return load_bands(str(args.get("reference")))


def mark_reference(app: App, result: RunResult, bands: list[Band] | None, path: str) -> list[str]:
    """Store the marks in the result (``reference``) and return the out-of-band lines."""
    if bands is None:
        return []
    from benchctl.bench.reference import check, summary

    marks = check(result, bands)
    head, outside = summary(marks)
    result.extra["reference"] = {"file": path, "marks": [m.to_dict() for m in marks]}
    if not marks:
        app.ui.warn(f"reference {path}: no band covers this run (service {result.service.get('name') or '-'}, "
                    f"model {result.config.get('model') or '-'})")
    return [head, *outside]


def say_reference(app: App, lines: list[str]) -> list[str]:
    """Print the reference verdict; returns the problems (figures out of band) for the command's failure."""
    if not lines:
        return []
    outside = lines[1:]
    (app.ui.warn if outside else app.ui.success)(lines[0])
    for line in outside:
        app.ui.text(f"  {line}")
    return [f"{len(outside)} figure(s) outside the reference bands"] if outside else []


def interval_view(result: RunResult) -> FitTable:
    """Per point and headline metric: the mean, its 95 % interval and the coefficient of variation."""
    from benchctl.bench.compare import METRICS, points_of

    table = FitTable([Col("POINT", justify="left"), Col("METRIC", justify="left"), Col("MEAN"),
                      Col("95% CI"), Col("CV")])
    for label, point in points_of(result).items():
        first = True
        for metric in METRICS.get(result.kind, ()):
            ci = (point.get("ci95") or {}).get(metric.name)
            value = metric.read(point)
            if value is None or ci is None:
                continue
            cv = (point.get("cv") or {}).get(metric.name)
            table.add_row(label if first else "", metric.label, f"{value:.{metric.digits}f}",
                          f"{ci[0]:.{metric.digits}f} to {ci[1]:.{metric.digits}f}",
                          f"{100 * cv:.1f}%" if isinstance(cv, (int, float)) else "-")
            first = False
    return table


def run_repeated(app: App, args: ParsedArgs, bench: Callable[[App, ParsedArgs], None]) -> None:
    """``bench … --repeat N``: N complete runs, then the aggregate run (means, ci95, cv) written and indexed."""
    from benchctl.bench.repeat import aggregate
    from benchctl.bench.results import ResultError, RunWriter, read_run, write_json

    count = int(args.get("repeat") or 1)
    bands = load_reference(args)
    runs: list[RunResult] = []
    interrupted: BaseException | None = None
    for i in range(count):
        app.ui.info(f"repetition {i + 1}/{count}")
        app.last_run_id = ""
        once = ParsedArgs(list(args.positionals), {**args.opts, "repeat": 1, "reference": None, "output": None})
        try:
            bench(app, once)
        except (KeyboardInterrupt, CommandError) as exc:
            interrupted = exc
        if app.last_run_id:
            try:
                runs.append(read_run(app.home / "results" / app.last_run_id))
            except ResultError as exc:
                raise CommandError(f"bench --repeat: {exc}") from None
        if interrupted is not None:
            break
    if len(runs) < 2:
        if interrupted is not None:
            raise interrupted
        raise CommandError("bench --repeat: fewer than two runs completed; no interval to give")
    result = aggregate(runs)
    writer = RunWriter(app.home, result.kind, str(result.service.get("name") or result.kind))
    writer.stamp(result)
    manifest = runs[0].extra.get("manifest")
    if isinstance(manifest, dict):
        result.extra["manifest"] = {**manifest, "repeats": [r.run_id for r in runs]}
        write_json(writer.dir / "manifest.json", result.extra["manifest"])
    problems = say_reference(app, mark_reference(app, result, bands, str(args.get("reference") or "")))
    path = writer.finish(result)
    app.last_run_id = result.run_id
    app.ui.print(Text(f"{len(runs)} repetitions (means; 95 % confidence interval by Student's t; CV = sd / mean):"))
    app.ui.renderable(interval_view(result))
    app.ui.info(f"results: {path} (repetitions: {', '.join(r.run_id for r in runs)})")
    if interrupted is not None:
        if isinstance(interrupted, CommandError):
            raise CommandError(f"{interrupted} (the {len(runs)} runs before it are aggregated)")
        raise interrupted
    if problems:
        raise CommandError("bench: " + "; ".join(problems))


def repeat_of(args: ParsedArgs) -> int:
    value: Any = args.get("repeat")
    return int(value) if value else 1


__all__ = ["interval_view", "load_reference", "mark_reference", "repeat_of", "run_repeated", "say_reference"]
