"""Tables that fit the terminal: when the columns do not fit, the least important ones are left out (and said),
headers fold onto two lines -- numbers are never cut to ``129…``.

rich shrinks every column of a table that is too wide and ellipsises what no longer fits, numbers included.
``FitTable`` decides at render time, when the width is known (the terminal's, or the transcript's 120
columns), which columns to show.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

from rich.console import Console, ConsoleOptions, RenderResult
from rich.table import Table
from rich.text import Text


@dataclass(frozen=True)
class Col:
    """One column: its header, how important it is (0 = always shown; higher = dropped first), alignment."""

    header: str
    drop: int = 0
    justify: str = "right"


@dataclass
class FitTable:
    """A table of ``columns`` and ``rows`` (strings or Text), rendered with as many columns as fit."""

    columns: Sequence[Col]
    rows: list[Sequence[str | Text]] = field(default_factory=list)
    table_args: dict[str, Any] = field(default_factory=dict)

    def add_row(self, *cells: str | Text) -> None:
        self.rows.append(cells)

    def _need(self, index: int, *, fold: bool) -> int:
        """Width column ``index`` needs: its widest cell, and its header (whole, or its longest word if folded)."""
        cells = [len(str(row[index])) for row in self.rows]
        header = self.columns[index].header
        head = max((len(word) for word in header.split()), default=0) if fold else len(header)
        return max([head, *cells])

    def _total(self, keep: list[int], *, fold: bool) -> int:
        return sum(self._need(i, fold=fold) + 2 for i in keep) + max(0, len(keep) - 1)  # padding + rules

    def layout(self, width: int) -> tuple[list[int], bool]:
        """(the columns that fit ``width``, whether headers fold): whole headers if everything fits, else
        folded headers, then the least important columns dropped first."""
        keep = list(range(len(self.columns)))
        if self._total(keep, fold=False) <= width:
            return keep, False
        while True:
            droppable = [i for i in keep if self.columns[i].drop]
            if self._total(keep, fold=True) <= width or not droppable:
                return keep, True
            keep.remove(max(droppable, key=lambda i: (self.columns[i].drop, i)))

    def __rich_console__(self, console: Console, options: ConsoleOptions) -> RenderResult:
        keep, fold = self.layout(options.max_width)
        table = Table(**{"show_edge": False, "header_style": "bold", **self.table_args})
        for i in keep:
            col = self.columns[i]
            header = col.header.replace(" ", "\n") if fold and len(col.header) > self._need(i, fold=True) \
                else col.header
            table.add_column(header, justify=col.justify,  # type: ignore[arg-type]
                             no_wrap=True, min_width=self._need(i, fold=fold))
        for row in self.rows:
            table.add_row(*(row[i] for i in keep))
        yield table
        dropped = [self.columns[i].header for i in range(len(self.columns)) if i not in keep]
        if dropped:
            yield Text(f"(not shown at this width: {', '.join(dropped)}; all of it is in run.json)", style="dim")

    def __iter__(self) -> Iterator[Sequence[str | Text]]:
        return iter(self.rows)
