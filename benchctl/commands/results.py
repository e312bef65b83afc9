"""Saved runs as commands: ``results`` (list, ``--json``, ``--forget RUN``) and ``compare RUN_A RUN_B ...``.

``results`` reads ``results/index.jsonl`` only (each line holds the run's headline figures), so thousands of
runs list at once; ``compare`` loads the named runs and formats ``bench.compare``'s verdict. A regression
fails the command after the table is printed, so ``benchctl -e "compare A B"`` exits non-zero.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from rich.text import Text

from benchctl.commands import Command, CommandError, ParsedArgs, Registry
from benchctl.errors import UserError
from benchctl.options import Complete, Option, OptionError, integer, text
from benchctl.tables import Col, FitTable

if TYPE_CHECKING:
    from benchctl.app import App
    from benchctl.bench.compare import Comparison, Delta, Metric
    from benchctl.bench.results import RunEntry, RunResult

MAX_RUNS = 5  # the baseline and four changes fit 80 columns (the values of the other runs give way first)


def newest_first(root: Path) -> list[RunEntry]:
    """The indexed runs, newest first (by start time; the index order breaks ties)."""
    from benchctl.bench.results import iter_runs

    entries = list(iter_runs(root))
    order = sorted(range(len(entries)), key=lambda i: (entries[i].started_at, i), reverse=True)
    return [entries[i] for i in order]


def find_entry(app: App, word: str, entries: Sequence[RunEntry], what: str) -> RunEntry:
    """The run ``word`` names in the index: its id, ``last``/``last~N``, or a unique prefix of its id."""
    from benchctl.bench.compare import nth_newest

    index = app.home / "results" / "index.jsonl"
    nth = nth_newest(word)
    if nth is not None:
        if nth >= len(entries):
            raise CommandError(f"{what}: {word}: only {len(entries)} run(s) in {index}")
        return entries[nth]
    exact = [e for e in entries if e.run_id == word]
    found = exact or [e for e in entries if e.run_id.startswith(word)]
    if len(found) > 1 and not exact:
        raise CommandError(f"{what}: {word!r} matches {len(found)} runs ({', '.join(e.run_id for e in found[:3])}"
                           f"{', ...' if len(found) > 3 else ''}); give more of the id")
    if not found:
        raise CommandError(f"{what}: no run {word!r} in {index} (see 'results')")
    return found[0]


def load_run(app: App, word: str, entries: Sequence[RunEntry]) -> RunResult:
    """A run by id, prefix, ``last~N``, or the path of its ``run.json`` / folder (an unlisted run too)."""
    from benchctl.bench.compare import nth_newest
    from benchctl.bench.results import ResultError, read_run

    root = app.home / "results"
    path = Path(word).expanduser()
    try:
        if "/" in word or word.endswith(".json") or (nth_newest(word) is None and path.exists()):
            return read_run(path)
        if (root / word / "run.json").is_file():  # taken out of the index by --forget: its files stay
            return read_run(root / word)
        entry = find_entry(app, word, entries, "compare")
        folder = Path(entry.dir) if Path(entry.dir, "run.json").is_file() else root / entry.run_id
        return read_run(folder)
    except ResultError as exc:
        raise CommandError(f"compare: {exc}") from None


# ---- results ---------------------------------------------------------------------------------------------
def headline_text(kind: str, head: dict[str, Any]) -> str:
    """``12.3 req/s, TTFT 41/95 ms`` -- a run's headline in a table cell."""
    def num(name: str, digits: int = 1) -> str:
        value = head.get(name)
        if not isinstance(value, (int, float)):
            return "-"
        return f"{value:.0f}" if abs(value) >= 1000 else f"{value:.{digits}f}"

    if kind == "llm" and "request_throughput" in head:
        return f"{num('request_throughput', 2)} req/s, TTFT {num('ttft_p50', 0)}/{num('ttft_p99', 0)} ms"
    if kind == "vector" and "qps" in head:
        return f"{num('qps')} QPS, recall {num('recall', 3)}"
    if kind == "io500" and "score" in head:
        return f"score {num('score', 2)}"
    return "-"


def _date(started_at: str) -> str:
    try:
        return datetime.fromisoformat(started_at).astimezone().strftime("%Y-%m-%d %H:%M")
    except ValueError:
        return started_at[:16]


def listing_rows(entries: Sequence[RunEntry]) -> list[dict[str, Any]]:
    """What ``results`` shows of each run. A line written before the index held headlines: read its run.json
    (only the runs shown, so the cost stays bounded by --last)."""
    from benchctl.bench.compare import headline
    from benchctl.bench.results import ResultError

    rows = []
    for e in entries:
        head, model, status = dict(e.headline), e.model, e.status
        if not status:
            try:
                run = e.load()
                model = str(run.config.get("model") or run.service.get("model") or "")
                head, status = headline(run), run.status
            except ResultError:
                status = "unreadable"
        rows.append({"run_id": e.run_id, "started_at": e.started_at, "kind": e.kind, "service": e.service,
                     "model": model, "status": status, "headline": head, "dir": e.dir})
    return rows


def cmd_results(app: App, args: ParsedArgs) -> None:
    """Saved benchmark runs, newest first, from ~/benchctl/results/index.jsonl: id, date, kind, service, model,
    headline figures (LLM: best req/s and TTFT p50/p99 there; vector: best QPS and its recall; IO500: score) and
    status. --json prints the rows for scripts. --forget RUN takes a run out of the listing (its folder stays)
    and deletes its figures from the running monitor's Pushgateway."""
    root = app.home / "results"
    entries = newest_first(root)
    if args.get("forget"):
        forget(app, find_entry(app, args.get("forget"), entries, "results --forget"))
        return
    total = len(entries)
    if args.get("kind"):
        entries = [e for e in entries if e.kind == args.get("kind")]
    if args.get("service"):
        entries = [e for e in entries if e.service == args.get("service")]
    matching, last = len(entries), int(args.get("last"))
    rows = listing_rows(entries[:last] if last else entries)
    if args.get("json"):
        # One run a line: still one JSON document, and 5,000 runs print in a fraction of the indented form's time.
        app.ui.text('{"runs": [\n' + ",\n".join(" " + json.dumps(row, default=str) for row in rows) + "\n]}")
        return
    if not rows:
        app.ui.info(f"no runs in {root / 'index.jsonl'}" + (f" ({total} without the filters)" if total else ""))
        return
    table = FitTable([Col("RUN", justify="left"), Col("DATE", 6, "left"), Col("KIND", 5, "left"),
                      Col("SERVICE", 4, "left"), Col("MODEL", 3, "left"), Col("HEADLINE", 0, "left"),
                      Col("STATUS", 2, "left")])
    for row in rows:
        table.add_row(row["run_id"], _date(row["started_at"]), row["kind"], row["service"], row["model"] or "-",
                      headline_text(row["kind"], row["headline"]),
                      Text(row["status"], style="" if row["status"] == "complete" else "yellow"))
    app.ui.renderable(table)
    if len(rows) < matching:
        app.ui.info(f"(the newest {len(rows)} of {matching}; --last N shows more, --last 0 all)")


def forget(app: App, entry: RunEntry) -> None:
    """Take ``entry`` out of the index, then delete what was pushed of it to a running monitor."""
    from benchctl.bench.results import unlist_run

    root = app.home / "results"
    if not unlist_run(root, entry.run_id):
        raise CommandError(f"results --forget: {entry.run_id} is no longer in {root / 'index.jsonl'}")
    app.ui.info(f"forgot run {entry.run_id} (taken out of {root / 'index.jsonl'}; its files stay in {entry.dir})")
    from benchctl.monitor.push import PushError, forget_run
    from benchctl.services.monitor import Monitor

    if app.services.get("monitor") is None:
        return
    try:
        monitor = app.service("monitor")
        job = monitor.active() if isinstance(monitor, Monitor) else None
        gateway = monitor.gateway(job) if job is not None and isinstance(monitor, Monitor) else None
        if job is None or gateway is None:
            return  # no monitor running: nothing was kept anywhere else
        deleted = forget_run(gateway, entry.run_id)
    except (PushError, UserError) as exc:  # the run is forgotten; only the monitor keeps its figures
        app.ui.warn(f"its figures may remain on the monitor's Pushgateway: {exc}")
        return
    app.ui.info(f"deleted {deleted} point group(s) of {entry.run_id} from the Pushgateway of monitor job {job.id}"
                if deleted else f"the monitor's Pushgateway (job {job.id}) held nothing of {entry.run_id}")


# ---- compare ---------------------------------------------------------------------------------------------
def _value(metric: Metric, value: float | None) -> str:
    if value is None:
        return "-"
    return f"{value:.0f}" if abs(value) >= 1000 else f"{value:.{metric.digits}f}"


def _change(metric: Metric, cell: Delta) -> Text:
    if cell.change is None:
        return Text("-")
    if metric.absolute:
        shown = f"{cell.change:+.{metric.digits}f}" + (" pt" if metric.name == "success_rate" else "")
    else:
        shown = f"{cell.change:+.1f}%"
    better = cell.change > 0 if metric.higher_is_better else cell.change < 0
    if cell.noise:  # both repeated, intervals overlap: no claim either way
        return Text(shown + " ~", style="dim")
    return Text(shown + (" !" if cell.regressed else ""),
                style="bold red" if cell.regressed else "green" if better and abs(cell.change) > 1e-9 else "")


def _limit(metric: Metric, limit: float) -> str:
    sign = "-" if metric.higher_is_better else "+"
    return f"{sign}{limit:g}" + (" pt" if metric.name == "success_rate" else "" if metric.absolute else "%")


def comparison_view(comparison: Comparison) -> list[Text | FitTable]:
    """The legend (which letter is which run), the table per point and metric, and the thresholds."""
    letters = [chr(ord("A") + i) for i in range(len(comparison.runs))]
    parts: list[Text | FitTable] = []
    for letter, run in zip(letters, comparison.runs, strict=True):
        what = " ".join(x for x in (run.service.get("name"), str(run.config.get("model") or "")) if x)
        parts.append(Text(f"{letter} {run.run_id}  {what}" + ("  (baseline)" if letter == "A" else "")))
    cols = [Col("POINT", justify="left"), Col("METRIC", justify="left"), Col("A")]
    for i, letter in enumerate(letters[1:], start=1):
        cols += [Col(letter, 10 + i), Col(f"Δ{letter}")]  # the values of later runs give way first
    table = FitTable(cols)
    previous = ""
    for row in comparison.rows:
        cells: list[str | Text] = [row.point if row.point != previous else "", row.metric.label,
                                   _value(row.metric, row.cells[0].value)]
        for cell in row.cells[1:]:
            cells += [_value(row.metric, cell.value), _change(row.metric, cell)]
        table.add_row(*cells)
        previous = row.point
    parts.append(table)
    metrics = {row.metric.name: row.metric for row in comparison.rows}
    gated = [f"{name} {_limit(metrics[name], limit)}" for name, limit in comparison.thresholds.items()
             if limit is not None and name in metrics]
    parts.append(Text("Δ against A; ! = worse than its threshold (" + (", ".join(gated) or "none") + ")"
                      + ("; ~ = within noise (95 % intervals of the repeated runs overlap)"
                         if any(c.noise for row in comparison.rows for c in row.cells) else "")))
    return parts


def regression_summary(comparison: Comparison) -> str:
    """One line naming the regressed metrics of each run."""
    letters = [chr(ord("A") + i) for i in range(len(comparison.runs))]
    by_run: dict[int, list[str]] = {}
    for reg in comparison.regressions:
        names = by_run.setdefault(reg.run, [])
        if reg.metric not in names:
            names.append(reg.metric)
    return "compare: regressed against A: " + "; ".join(
        f"{letters[i]} ({comparison.runs[i].run_id}) {', '.join(names)}" for i, names in sorted(by_run.items()))


def threshold_list(raw: str) -> list[tuple[str, float | None]]:
    """``metric=PCT[,metric=PCT...]`` (value parser of --threshold)."""
    from benchctl.bench.compare import CompareError, parse_thresholds

    try:
        return parse_thresholds(raw)
    except CompareError as exc:
        raise OptionError(str(exc)) from None


def reference_marks(app: App, runs: Sequence[RunResult], path: str | None) -> str:
    """``compare --reference FILE``: each run's figures against the bands; the failure text, or ""."""
    if not path:
        return ""
    from benchctl.bench.reference import check, load_bands, summary

    bands, outside = load_bands(path), 0
    for letter, run in zip("ABCDE", runs, strict=False):
        head, lines = summary(check(run, bands))
        outside += len(lines)
        (app.ui.warn if lines else app.ui.info)(f"{letter} {head}")
        for line in lines:
            app.ui.text(f"  {line}")
    return f"{outside} figure(s) outside the reference bands" if outside else ""


def cmd_compare(app: App, args: ParsedArgs) -> None:
    """Compare saved runs of one kind point by point (same concurrency or rate) against the first, the baseline:
    LLM req/s, output tok/s, TTFT/TPOT/ITL p50 and p99, E2EL p99, success rate; vector QPS, recall, latency
    p50/p99; IO500 score, bandwidth, IOPS. A RUN (up to 5) is a run id, a unique prefix of one, last / last~N, or
    the path of a run.json or run folder. A change worse than its threshold is a regression: the command fails after
    the table (non-zero exit status in -e/--script). Defaults: p99 latencies +10 %, throughputs -10 %, success rate
    -1 point, recall -0.01; [compare] thresholds in the config and --threshold override them (names: a metric,
    or p99, latency, throughput, success, recall; 'off' shows without gating)."""
    from benchctl.bench.compare import CompareError, compare, parse_thresholds

    entries = newest_first(app.home / "results")
    runs = [load_run(app, word, entries) for word in args.positionals]
    configured = app.settings.get("compare.thresholds")
    try:
        overrides = parse_thresholds(",".join(configured)) if configured else []
    except CompareError as exc:
        raise CommandError(f"compare: config compare.thresholds: {exc}") from None
    try:
        comparison = compare(runs, [*overrides, *(args.get("threshold") or [])])
    except CompareError as exc:
        raise CommandError(f"compare: {exc}") from None
    if args.get("json"):
        app.ui.text(json.dumps(comparison.to_dict(), indent=1, default=str))
    else:
        for part in comparison_view(comparison):  # prose wraps between words (run ids hold no spaces)
            app.ui.print(part, wrap=isinstance(part, Text))
        for note in comparison.notes:
            app.ui.print(Text(f"note: {note}", style="dim"), wrap=True)
    problems = reference_marks(app, runs, args.get("reference"))
    if comparison.regressions:
        raise CommandError(regression_summary(comparison) + (f"; {problems}" if problems else ""))
    if problems:
        raise CommandError(f"compare: {problems}")
    if not args.get("json"):
        app.ui.success("no regression beyond the thresholds")


def register(registry: Registry) -> None:
    registry.add(Command(
        "results", cmd_results, "results [--kind K] [--service S] [--last N] [--json] [--forget RUN]",
        "list saved benchmark runs", (),
        (Option("--kind", "only runs of this bench kind (llm, vector, io500)", text, metavar="KIND"),
         Option("--service", "only runs against this service", text, metavar="NAME", complete=Complete.SERVICE),
         Option("--last", "the N newest runs (0: all)", integer(0), default=20, metavar="N"),
         Option("--json", "the rows as JSON (for scripts)", None),
         Option("--forget", "take a run out of the listing (its folder stays) and off the monitor", text,
                metavar="RUN", complete=Complete.RUN))))
    registry.add(Command(
        "compare", cmd_compare, "compare RUN_A RUN_B [RUN ...] [--threshold METRIC=PCT,...] [--json]",
        "compare saved runs point by point; fail on a regression", (Complete.RUN,) * MAX_RUNS,
        (Option("--threshold", "tolerated worsening, e.g. ttft_p99=20,throughput=5,recall=off", threshold_list,
                metavar="METRIC=PCT,..."),
         Option("--json", "the comparison as JSON (for scripts)", None),
         Option("--reference", "YAML file of expected bands: each run's figures marked in or out", text,
                metavar="FILE", complete=Complete.PATH)),
        min_args=2))
