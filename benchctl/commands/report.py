"""``report [RUN] [--html] [--md] [--slo SPEC]``: a saved run as tables, terminal plots and the sweep analysis in
the shell, PNG plots (matplotlib, the optional ``report`` extra) and, on request, a self-contained HTML page
and a Markdown file, all written into the run folder's ``report/``.

Without matplotlib the shell view is complete and one line says how to install the extra; ``--html`` and
``--md`` then hold the tables without plots (and say so).
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from rich.text import Text

from benchctl.commands import Command, CommandError, ParsedArgs, Registry
from benchctl.options import Complete, Option, OptionError

if TYPE_CHECKING:
    from benchctl.app import App
    from benchctl.bench.results import RunResult
    from benchctl.report.analysis import Limit
    from benchctl.report.plots import Plot

REPORT_DIR = "report"


def slo_spec(raw: str) -> tuple[Limit, ...]:
    """Value parser of ``--slo``: ``ttft:MS,tpot:MS`` (LLM, p99), ``p50_ttft:MS``, ``recall:0.9`` (vector)."""
    from benchctl.report.analysis import SloError, parse_slo

    try:
        return parse_slo(raw)
    except SloError as exc:
        raise OptionError(str(exc)) from None


def resolve_run(app: App, word: str) -> RunResult:
    """The run ``word`` names: its id, a unique prefix, ``last``/``last~N``, or the path of its run.json or folder
    (an unlisted run too)."""
    from benchctl.bench.compare import nth_newest
    from benchctl.bench.results import ResultError, read_run
    from benchctl.commands.results import find_entry, newest_first

    root = app.home / "results"
    path = Path(word).expanduser()
    try:
        if "/" in word or word.endswith(".json") or (nth_newest(word) is None and path.exists()):
            return read_run(path)
        if (root / word / "run.json").is_file():  # taken out of the index by `results --forget`: its files stay
            return read_run(root / word)
        entry = find_entry(app, word, newest_first(root), "report")
        return read_run(Path(entry.dir) if Path(entry.dir, "run.json").is_file() else root / entry.run_id)
    except ResultError as exc:
        raise CommandError(f"report: {exc}") from None


def _plots(app: App, run: RunResult, folder: Path, limits: tuple[Limit, ...]) -> list[Plot]:
    from benchctl.report.plots import make_plots

    with app.ui.status("drawing the plots..."):
        try:
            return make_plots(run, folder, limits)
        except OSError as exc:
            raise CommandError(f"report: cannot write the plots in {folder}: {exc.strerror or exc}") from None


def cmd_report(app: App, args: ParsedArgs) -> None:
    """A saved run (default: the newest) as a report: its facts and tables, bars and sparklines in the shell, the
    sweep analysis (the knee of p99 latency vs load by maximum curvature, the saturation throughput, the highest
    load meeting --slo), and PNG plots in the run folder's report/: latency percentiles per point, latency CDF,
    throughput and latency over time with the server's timeline, the sweep curve with the knee, recall vs QPS
    (vector), IO500 phases with invalid ones marked. --html writes one self-contained page (images embedded,
    nothing fetched), --md a Markdown file next to the PNGs. --slo: LLM ttft:MS,tpot:MS,itl:MS,e2el:MS against
    each point's p99 (p50_ttft:MS for another percentile; default: the run's own --slo); vector recall:0.9 (a
    floor) and latency:MS. RUN: a run id, a unique prefix, last / last~N, or a run.json / run folder path."""
    from benchctl.executors.files import private_mkdir
    from benchctl.report import plots as plotting
    from benchctl.report.analysis import limits_of, sweep_summary
    from benchctl.report.terminal import terminal_view

    run = resolve_run(app, args.positionals[0] if args.positionals else "last")
    if run.path is None:  # read_run always sets it; a guard for mypy and for callers building runs by hand
        raise CommandError("report: the run has no folder")
    limits = args.get("slo") or limits_of(run.config.get("slo") if run.kind == "llm" else None)
    lines = sweep_summary(run, limits)
    for part in terminal_view(run, lines):
        app.ui.print(part, wrap=isinstance(part, Text))
    folder = run.path.parent / REPORT_DIR
    try:
        private_mkdir(folder)
    except OSError as exc:
        raise CommandError(f"report: cannot create {folder}: {exc.strerror or exc}") from None
    plots: list[Plot] = []
    note = ""
    if plotting.available():
        plots = _plots(app, run, folder, limits)
        if plots:
            app.ui.text(f"plots: {', '.join(p.path.name for p in plots)} in {folder}")  # text: no markup in paths
    else:
        note = plotting.INSTALL_HINT
        app.ui.text(note)  # text, not markup: "[report]" is not a style
    from benchctl.report.html import write_html
    from benchctl.report.markdown import write_markdown

    for flag, what, write, name in (("html", "HTML", write_html, "report.html"),
                                    ("md", "Markdown", write_markdown, "report.md")):
        if not args.get(flag):
            continue
        try:
            path = write(run, plots, lines, folder / name, plots_note=note)
        except OSError as exc:  # a full disk, a run folder of someone else's
            raise CommandError(f"report: cannot write {folder / name}: {exc.strerror or exc}") from None
        app.ui.success(f"{what} report: {path}" + (" (tables only: the plots need matplotlib)" if note else ""))


def register(registry: Registry) -> None:
    registry.add(Command(
        "report", cmd_report, "report [RUN] [--html] [--md] [--slo SPEC]",
        "a saved run as tables, plots and sweep analysis (HTML / Markdown too)", (Complete.RUN,),
        (Option("--html", "also write a self-contained HTML page (report/report.html in the run folder)", None),
         Option("--md", "also write Markdown with the PNGs next to it (report/report.md)", None),
         Option("--slo", "the SLO to find the highest load meeting: ttft:MS,tpot:MS (p99) or recall:0.9",
                slo_spec, metavar="SPEC"))))


__all__ = ["REPORT_DIR", "cmd_report", "register", "resolve_run", "slo_spec"]
