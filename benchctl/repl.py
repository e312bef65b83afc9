"""The interactive loop: prompt_toolkit session, patch_stdout, the poller thread, the error boundary."""

from __future__ import annotations

import contextlib
import logging
import sys
from collections.abc import Iterator

from prompt_toolkit import PromptSession
from prompt_toolkit.auto_suggest import AutoSuggestFromHistory
from prompt_toolkit.patch_stdout import patch_stdout
from prompt_toolkit.styles import Style

from benchctl.app import PROMPT, App
from benchctl.commands import ExitRepl
from benchctl.completion import BenchctlCompleter
from benchctl.config import state_dir
from benchctl.history import make_history
from benchctl.keybindings import make_key_bindings
from benchctl.poller import Poller
from benchctl.toolbar import make_toolbar

log = logging.getLogger(__name__)

STYLE = Style.from_dict({
    "prompt": "bold ansicyan",
    "bottom-toolbar": "noreverse bg:#222222 #aaaaaa",
    "toolbar.running": "#ffaf00",
    "toolbar.pending": "#888888",
    "toolbar.ready": "bold #5fd75f",
    "toolbar.error": "bold #ff5f5f",
})


@contextlib.contextmanager
def quiet_type_ahead() -> Iterator[None]:
    """While a command runs, keys typed ahead are not echoed over its output (they used to land on the spinner
    line, out of order); the terminal keeps them, and the next prompt starts with them. Ctrl-C still works
    (only ECHO is turned off, not signals or line editing)."""
    try:
        import termios

        fd = sys.stdin.fileno()
        saved = termios.tcgetattr(fd)
    except (ImportError, OSError, ValueError, AttributeError):  # not a terminal (tests, pipes)
        yield
        return
    quiet = list(saved)
    quiet[3] &= ~(termios.ECHO | termios.ECHONL)
    try:
        termios.tcsetattr(fd, termios.TCSANOW, quiet)
    except termios.error:
        yield
        return
    try:
        yield
    finally:
        with contextlib.suppress(termios.error):
            termios.tcsetattr(fd, termios.TCSANOW, saved)  # TCSANOW: keep what was typed ahead


def expand_bang(line: str, history: list[str]) -> str:
    """``!N`` is line N of ``history`` (as the `history` command numbers them), ``!!`` the last one."""
    word = line.strip()
    if word == "!!":
        word = f"!{len(history)}"
    if len(word) > 1 and word[0] == "!" and word[1:].isdigit():
        n = int(word[1:])
        if not 1 <= n <= len(history):
            raise ValueError(f"{word}: no such history entry (1..{len(history)}; see 'history')")
        return history[n - 1]
    return line


def ask(question: str) -> bool:
    """A yes/no question in the shell (default no)."""
    from prompt_toolkit.shortcuts import confirm

    try:
        return bool(confirm(question + " "))
    except (KeyboardInterrupt, EOFError):
        return False


def build_session(app: App, poller: Poller | None = None, **overrides: object) -> PromptSession[str]:
    history = make_history(state_dir() / "history")
    kwargs: dict[str, object] = dict(
        history=history,
        completer=BenchctlCompleter(app),
        complete_while_typing=bool(app.settings.get("ui.complete_while_typing")),
        auto_suggest=AutoSuggestFromHistory(),
        enable_history_search=False,
        bottom_toolbar=make_toolbar(app, poller),
        key_bindings=make_key_bindings(),
        style=STYLE,
        refresh_interval=None,
    )
    kwargs.update(overrides)
    return PromptSession(**kwargs)  # type: ignore[arg-type]


def run_repl(app: App, **session_overrides: object) -> None:
    """Read-eval-print until exit/EOF. Jobs keep running after exit; the transcript is autosaved."""
    poller = Poller(app, float(app.settings.get("ui.poll_interval")))
    session = build_session(app, poller, **session_overrides)
    poller.on_change = lambda: session.app.invalidate() if session.app.is_running else None
    # Two short lines: at 80 columns one long line wrapped mid-word.
    app.ui.info(f"benchctl — executor {app.executor_name}, profile {app.settings.text('profile')}, home {app.home}")
    app.ui.info("'help' lists commands (CMD --help: its options), Tab completes, Ctrl-D exits.")
    app.confirm = ask
    poller.start()
    try:
        with patch_stdout(raw=True):
            while True:
                # The history up to, not including, this line (the session adds the line once accepted).
                app.history_strings = list(session.history.get_strings())
                try:
                    line = session.prompt([("class:prompt", PROMPT)])
                except KeyboardInterrupt:
                    continue
                except EOFError:
                    break
                try:
                    expanded = expand_bang(line, app.history_strings)
                except ValueError as exc:
                    app.ui.error(str(exc))
                    continue
                if expanded != line:
                    app.ui.print(f"{PROMPT}{expanded}", markup=False)
                    line = expanded
                try:
                    # A pasted block arrives as one text: each of its lines is a command, run in turn.
                    for one in line.splitlines() or [""]:
                        app.ui.transcript.record_input(PROMPT, one)
                        with quiet_type_ahead():
                            app.run_line(one)
                except ExitRepl:
                    break
                poller.poke()
    finally:
        poller.stop()
        saved = app.autosave()
        if saved:
            app.ui.console.print(f"transcript saved to {saved}", markup=False, highlight=False)
