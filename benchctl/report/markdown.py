"""The Markdown report (``report --md``): the run's facts, the sweep analysis and every table as GitHub-flavoured
Markdown, the plots linked as the PNG files next to it -- for a wiki page, a pull request or a lab notebook.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from benchctl.bench.results import RunResult
from benchctl.report.content import DataTable, facts, notes, tables, who
from benchctl.report.plots import Plot


def _cell(text: str) -> str:
    """A table cell: a pipe or a line break would end it."""
    return text.replace("|", "\\|").replace("\n", " ")


def table_md(table: DataTable) -> str:
    align = ["---"] + ["---:"] * (len(table.headers) - 1)  # numbers right-aligned, as in the terminal
    lines = [f"### {table.title}", "", "| " + " | ".join(_cell(h) for h in table.headers) + " |",
             "| " + " | ".join(align) + " |"]
    for i, row in enumerate(table.rows):
        cells = [_cell(c) for c in row]
        if i in table.flagged:
            cells = [f"**{c}**" if c else c for c in cells]
        lines.append("| " + " | ".join(cells) + " |")
    if table.note:
        lines += ["", f"_{table.note}_"]
    return "\n".join(lines)


def render(run: RunResult, plots: Sequence[Plot], lines: Sequence[str], folder: Path, *,
           plots_note: str = "") -> str:
    """The document; image links are relative to ``folder`` (where report.md is written)."""
    out = [f"# benchctl report: {who(run)}", "", "| | |", "|---|---|"]
    out += [f"| **{_cell(k)}** | {_cell(v)} |" for k, v in facts(run)]
    if lines:
        out += ["", "## Sweep analysis", ""] + [f"- {line}" for line in lines]
    out += ["", "## Results", ""]
    for table in tables(run):
        out += [table_md(table), ""]
    out += [f"{n}  " for n in notes(run)]
    if plots or plots_note:
        out += ["", "## Plots", ""]
    for plot in plots:
        rel = plot.path.relative_to(folder) if plot.path.is_relative_to(folder) else plot.path
        out += [f"### {plot.title}", "", f"![{plot.title}]({rel.as_posix()})", "", f"_{plot.caption}_", ""]
    if plots_note and not plots:
        out += [f"> {plots_note}", ""]
    return "\n".join(out).rstrip() + "\n"


def write_markdown(run: RunResult, plots: Sequence[Plot], lines: Sequence[str], path: Path, *,
                   plots_note: str = "") -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(render(run, plots, lines, path.parent, plots_note=plots_note), encoding="utf-8")
    return path


__all__ = ["render", "table_md", "write_markdown"]
