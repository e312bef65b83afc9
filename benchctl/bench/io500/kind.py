"""The ``io500`` bench kind: an IO500 run is a batch job; ``bench io500`` submits it (with io500's start
options) or takes ``--job``, waits until it finished, and reads its result directory into a ``RunResult``.
Its summary is the phase/score table, invalid rows flagged."""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from benchctl.bench.io500.parse import Io500Result
from benchctl.bench.kind import BenchError, BenchKind, BenchTarget, Progress

if TYPE_CHECKING:
    from rich.console import RenderableType
    from rich.table import Table

    from benchctl.bench.results import RunResult, RunWriter


class Io500Kind(BenchKind):
    name = "io500"
    summary = "IO500 storage benchmark (a batch job): phases, bandwidth/IOPS/TOTAL scores, validity"

    def config(self, values: Mapping[str, Any]) -> dict[str, Any]:
        return {}  # the run's settings are the job's start options

    def run(self, target: BenchTarget, config: Any, writer: RunWriter, progress: Progress) -> RunResult:
        from benchctl.services.server import BatchRun

        job, service = target.job, target.service
        if job is None or not isinstance(service, BatchRun):
            raise BenchError("io500 runs as a batch job ('bench io500' submits one, or --job ID)")
        result = service.results(job)
        if result is None:
            raise BenchError(f"{job.label}: no IO500 results found ('logs {job.id}')")
        return writer.stamp(result)

    def summary_view(self, result: RunResult) -> RenderableType:
        from rich.console import Group
        from rich.text import Text

        detail = result.detail if isinstance(result.detail, Io500Result) else Io500Result.from_dict(result.metrics)
        table = result_table(detail, title=f"IO500 job {result.service.get('job_id', '')}".rstrip())
        warnings = []
        if not detail.valid:
            warnings.append(Text("warning: this run is INVALID for IO500 (see the flagged rows)", style="yellow"))
        if detail.mismatches:
            warnings.append(Text("warning: the printed scores do not match the phases (see the recomputed values)",
                                 style="yellow"))
        return Group(table, *warnings) if warnings else table



def _fmt(value: float, digits: int = 3) -> str:
    return f"{value:.{digits}f}" if math.isfinite(value) else str(value)


def result_table(result: Io500Result, *, title: str | None = None) -> Table:
    """A rich Table (phase, value, unit, time, flag). Invalid rows are shown in red with ``INVALID`` in the
    flag column, and the caption lists every reason: an invalid run must be obvious, not hidden.

    Cells are ``Text`` objects, not markup strings: notes such as ``[ior-easy-write] ...`` would otherwise
    be read as rich markup tags and vanish.
    """
    from rich.table import Table  # lazily: parsing must not need rich
    from rich.text import Text

    invalid_flag = Text("INVALID", style="bold red")
    head = f"IO500 {result.version}".rstrip() + (f" ({result.mode})" if result.mode else "")
    heading = Text(title) if title else Text.assemble(
        f"{head} — ", ("VALID", "bold green") if result.valid else ("INVALID", "bold red"))
    table = Table(title=heading, title_justify="left")
    table.add_column("phase")
    table.add_column("value", justify="right")
    table.add_column("unit")
    table.add_column("time (s)", justify="right")
    table.add_column("flag")
    for p in result.phases:
        note = "" if p.in_score else "SCOREX only" if p.in_scorex else "not scored"
        flag = invalid_flag if p.invalid else Text(note, style="dim")
        table.add_row(Text(p.name), _fmt(p.value, p.decimals), p.unit, _fmt(p.time_s), flag,
                      style="red" if p.invalid else None)
    again = {r.label: r for r in result.recomputed}
    for score in (result.score, result.score_extended):
        if score is None:
            continue
        style = "bold red" if score.invalid else "bold"
        table.add_section()
        check = again.get(score.label)
        for what, value, digits, unit, mine in (
                ("bandwidth", score.bandwidth, score.decimals[0], score.bandwidth_unit, check and check.bandwidth),
                ("IOPS", score.iops, score.decimals[1], "kiops", check and check.iops),
                ("TOTAL", score.total, score.decimals[2], "", check and check.total)):
            off = check is not None and any(m.startswith(f"{score.label} {what} ") for m in check.mismatches)
            flag = Text.assemble(invalid_flag if score.invalid else "",
                                 (f" recomputed {_fmt(float(mine or 0), digits)}", "bold yellow") if off else "")
            table.add_row(f"{score.label} {what}", _fmt(value, digits), unit, "", flag, style=style)
    lines = []
    if result.invalid_reasons:
        lines.append(Text("invalid: " + "; ".join(result.invalid_reasons), style="red"))
    if result.mismatches:
        lines.append(Text("does not add up (IO500's formula on the phases above): " + "; ".join(result.mismatches),
                          style="yellow"))
    if lines:
        table.caption = Text("\n").join(lines)
        table.caption_justify = "left"
    return table


__all__ = ["Io500Kind", "result_table"]
