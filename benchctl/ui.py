"""The one output chokepoint: everything shown goes through ``Ui``, which tees it into the transcript.

The terminal console is created without ``file=`` so it follows ``sys.stdout`` -- inside
``patch_stdout`` that is prompt_toolkit's proxy, and background lines land above the prompt. The
transcript is a never-displayed recording console. Live displays (spinners) go to the terminal only, so
their frames never clutter the record; a summary line follows them. Text from outside (logs, Slurm
messages) is printed with markup and highlighting off: ``[rank0]`` or ``[/scratch/x]`` must survive.
"""

from __future__ import annotations

import contextlib
import os
import sys
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from rich.console import Console, Group, RenderableType
from rich.text import Text

from benchctl.executors.files import private_mkdir
from benchctl.redact import redact, redact_html, redact_line

# rich's page, but long lines wrap in the browser (pre-wrap) instead of running off to the right, and box
# lines sit tight (line-height 1.2) so a table's header rule does not read as an empty row.
HTML_FORMAT = """<!DOCTYPE html>
<html>
<head>
<meta charset="UTF-8">
<style>
{stylesheet}
body {{
    color: {foreground};
    background-color: {background};
}}
pre {{ white-space: pre-wrap; overflow-wrap: anywhere; line-height: 1.2; }}
</style>
</head>
<body>
    <pre style="font-family:Menlo,'DejaVu Sans Mono',consolas,'Courier New',monospace"><code
        style="font-family:inherit">{code}</code></pre>
</body>
</html>
"""


class Transcript:
    """Records everything shown in a session; exports text and HTML without clearing the record."""

    def __init__(self, width: int = 120) -> None:
        self._sink = open(os.devnull, "w")  # noqa: SIM115 - lives as long as the session
        self.console = Console(record=True, file=self._sink, width=width, force_terminal=False,
                               color_system="truecolor", highlight=False)

    def record_input(self, prompt: str, line: str) -> None:
        """The typed line is drawn by prompt_toolkit, not by us: record it explicitly (secrets masked)."""
        self.console.print(Text(f"{prompt}{redact_line(line)}", style="bold"), markup=False, highlight=False)

    def text(self) -> str:
        return self.console.export_text(clear=False)

    def save(self, path: Path, *, html: bool = False) -> Path:
        private_mkdir(path.parent)
        # Whatever was printed (a dry-run script, a URL in a message), secrets seen this session are masked.
        content = (redact_html(self.console.export_html(clear=False, code_format=HTML_FORMAT)) if html
                   else redact(self.console.export_text(clear=False)))
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as fh:
            fh.write(content)
        return path


class Ui:
    """Prints to the terminal and the transcript under one lock (the poller thread prints too)."""

    def __init__(self, console: Console | None = None, transcript: Transcript | None = None) -> None:
        # Piped or redirected output has no width: take the transcript's 120 columns rather than rich's 80,
        # which would cut the wider tables (LLM sweeps) into ellipses. $COLUMNS still wins.
        wide = None if sys.stdout.isatty() or os.environ.get("COLUMNS") else 120
        self.console = console or Console(highlight=False, width=wide)
        self.transcript = transcript or Transcript()
        self._lock = threading.RLock()
        self.errors = 0
        # Batch modes (-e, --script, stdin) send errors to stderr, as scripts calling benchctl expect.
        self.err_console: Console | None = None

    def print(self, *objects: Any, style: str | None = None, markup: bool = True, _error: bool = False,
              wrap: bool = False) -> None:
        # Lines are not re-wrapped (soft_wrap): a tunnel command or a log line must stay copy-pastable.
        # Prose (wrap=True: warnings, notes under a table) wraps between words instead of mid-word.
        soft = not wrap and all(isinstance(o, (str, Text)) for o in objects)
        with self._lock:
            terminal = self.err_console if _error and self.err_console is not None else self.console
            for console in (terminal, self.transcript.console):
                console.print(*objects, style=style, markup=markup, highlight=False, soft_wrap=soft)

    def text(self, line: str, style: str | None = None) -> None:
        """External text: no markup, no highlighting, secrets masked."""
        self.print(Text(redact(line), style=style or ""), markup=False)

    def info(self, message: str) -> None:
        self.print(message)

    def success(self, message: str) -> None:
        self.print(Text(message, style="green"))

    def warn(self, message: str) -> None:
        self.print(Text(f"warning: {redact(message)}", style="yellow"), wrap=True)

    def error(self, message: str) -> None:
        self.errors += 1
        # Messages may echo what was typed: mask secrets.
        self.print(Text(f"error: {redact(message)}", style="bold red"), _error=True)

    def renderable(self, obj: RenderableType) -> None:
        # A Group's lines are printed one by one, so its text lines keep soft wrapping (copy-pastable).
        parts = obj.renderables if isinstance(obj, Group) else [obj]
        for part in parts:
            self.print(part)

    @contextlib.contextmanager
    def status(self, message: str) -> Iterator[Any]:
        """A spinner on the terminal only (never recorded); yields an object with ``update(text)``."""
        if not self.console.is_terminal:
            yield _NoStatus()
            return
        with self.console.status(message) as status:
            yield status


    @contextlib.contextmanager
    def live(self) -> Iterator[Callable[[RenderableType], None]]:
        """Redraw one renderable in place on the terminal (``metrics --watch``) instead of printing it again and
        again; the transcript keeps the last one. Off a terminal every version is printed."""
        if not self.console.is_terminal:
            yield self.renderable
            return
        last: list[RenderableType] = []
        from rich.live import Live

        with Live(console=self.console, auto_refresh=False, transient=False) as live:

            def show(obj: RenderableType) -> None:
                last[:] = [obj]
                with self._lock:
                    live.update(obj, refresh=True)

            yield show
        if last:
            with self._lock:
                self.transcript.console.print(last[0])


class _NoStatus:
    def update(self, *args: Any, **kwargs: Any) -> None:
        pass
