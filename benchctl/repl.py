"""The interactive loop: prompt_toolkit session, patch_stdout, the poller thread, the error boundary."""

from __future__ import annotations

import logging

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
    app.ui.info(f"benchctl — executor {app.executor_name}, profile {app.settings.text('profile')}, "
                f"home {app.home}. 'help' lists commands, Ctrl-D exits.")
    poller.start()
    try:
        with patch_stdout(raw=True):
            while True:
                app.history_strings = list(session.history.get_strings())
                try:
                    line = session.prompt([("class:prompt", PROMPT)])
                except KeyboardInterrupt:
                    continue
                except EOFError:
                    break
                app.ui.transcript.record_input(PROMPT, line)
                try:
                    app.run_line(line)
                except ExitRepl:
                    break
                poller.poke()
    finally:
        poller.stop()
        saved = app.autosave()
        if saved:
            app.ui.console.print(f"transcript saved to {saved}", markup=False, highlight=False)
