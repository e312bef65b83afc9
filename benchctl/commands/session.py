"""Session commands: help, history, save, config, exit."""

from __future__ import annotations

import inspect
import json
from pathlib import Path
from typing import TYPE_CHECKING

from rich.table import Table
from rich.text import Text

from benchctl.commands import AlreadyReported, Command, CommandError, ExitRepl, ParsedArgs, Registry, did_you_mean
from benchctl.options import Complete, Option
from benchctl.redact import redact_line

if TYPE_CHECKING:
    from benchctl.app import App


def cmd_help(app: App, args: ParsedArgs) -> None:
    """List commands, or describe one command and its options: 'help start vllm' and 'help bench chroma' list
    exactly the options that apply to that service (or benchmark), with their defaults."""
    if not args.positionals:
        table = Table(show_edge=False, show_header=False, box=None, padding=(0, 2))
        for command in app.registry:
            table.add_row(Text(command.usage, style="bold"), Text(command.summary))
        app.ui.renderable(table)
        app.ui.text("services: " + ", ".join(app.services.names()) + "    ('help CMD' for details, or CMD --help)")
        return
    found = app.registry.lookup(args.positionals[0])
    if found is None:
        word = args.positionals[0]
        raise CommandError(f"no command {word!r}{did_you_mean(word, app.registry)} (try 'help')")
    command = found
    topic = args.positionals[1] if len(args.positionals) > 1 else ""
    topics = command.topics(app) if command.topics else []
    if topic and topic not in topics:
        known = f": {', '.join(topics)}" if topics else ""
        raise CommandError(f"help {command.name}: no topic {topic!r}{known}")
    app.ui.print(Text(f"usage: {command.usage}", style="bold"))
    app.ui.text(inspect.cleandoc(command.handler.__doc__ or command.summary))
    if command.aliases:
        app.ui.text(f"aliases: {', '.join(command.aliases)}")
    options = list(command.all_options(app, [topic] if topic else []))
    if options:
        app.ui.text(f"options for {command.name} {topic}:" if topic else
                    ("common options:" if topics else "options:"))
        _option_table(app, options)
    if topics and not topic:
        app.ui.text(f"{command.name} takes: {', '.join(topics)}    ('help {command.name} NAME' lists its options)")


def _option_table(app: App, options: list[Option]) -> None:
    table = Table(show_edge=False, show_header=False, box=None, padding=(0, 2))
    for opt in [*options, Option("--help", "this help", None, short="-h")]:
        flags = f"{opt.short}, {opt.flag}" if opt.short else opt.flag
        value = f" {opt.value_name}" if opt.value_name else ""
        # Text, not markup: help such as "[ior-easy] transferSize" must print its brackets.
        table.add_row(Text(f"  {flags}{value}"), Text(opt.help_text))
    app.ui.renderable(table)


def cmd_history(app: App, args: ParsedArgs) -> None:
    """Show the last N commands (default 20) from the history file."""
    text = args.positionals[0] if args.positionals else "20"
    if not text.isdigit():
        raise CommandError(f"history: N must be a number, got {text!r}")
    count = int(text)
    if not app.history_strings:  # -e / --script: the shell's history file, oldest first
        from benchctl.config import state_dir
        from benchctl.history import make_history

        app.history_strings = list(reversed(list(make_history(state_dir() / "history").load_history_strings())))
    lines = app.history_strings[-count:] if count else []
    width = len(str(len(app.history_strings)))
    start = len(app.history_strings) - len(lines) + 1
    for i, line in enumerate(lines, start):
        app.ui.text(f"{i:>{width}}  {redact_line(line)}")  # this session's lines are in memory unmasked


def cmd_save(app: App, args: ParsedArgs) -> None:
    """Save the session transcript (text, and HTML with --html) plus a summary of the session's jobs."""
    if args.positionals:
        target = Path(args.positionals[0]).expanduser()
        if target.is_dir() or args.positionals[0].endswith("/"):
            target = target / "transcript.txt"
    else:
        target = app.session_dir / "transcript.txt"
    try:
        app.ui.transcript.save(target)
        saved = [target]
        if args.get("html"):
            saved.append(app.ui.transcript.save(target.with_suffix(".html"), html=True))
        jobs_file = target.with_name(target.stem + "-jobs.json")
        jobs_file.write_text(json.dumps([j.to_dict() for j in app.jobs.all()], indent=1))
    except OSError as exc:
        raise CommandError(f"cannot save to {target}: {exc.strerror}") from None
    app.saved_to[target] = bool(args.get("html"))  # autosave refreshes it (and its HTML) at the end
    app.ui.success("saved " + ", ".join(str(p) for p in saved) + f" (jobs and their log paths: {jobs_file.name})")


def cmd_source(app: App, args: ParsedArgs) -> None:
    """Run the commands of FILE (one per line, # comments), stopping at the first failure unless --keep-going."""
    name = args.positionals[0]
    try:
        lines = Path(name).expanduser().read_text().splitlines()
    except (OSError, UnicodeDecodeError) as exc:
        raise CommandError(f"source: cannot read {name}: {getattr(exc, 'strerror', None) or exc}") from None
    if app.sourcing >= 8:
        raise CommandError(f"source: {name}: sourced files nest too deep (a file sourcing itself?)")
    app.sourcing += 1
    try:
        failures = app.run_lines(lines, keep_going=bool(args.get("keep_going")))
    finally:
        app.sourcing -= 1
    if failures:
        if app.sourcing:  # inside another `source`: the failed command said why; the outermost sums up
            raise AlreadyReported(name)
        raise CommandError(f"source {name}: {failures} command(s) failed")


def cmd_config(app: App, args: ParsedArgs) -> None:
    """Show the effective configuration and where each value came from (config KEY: one setting)."""
    import difflib

    table = Table(show_edge=False, header_style="bold")
    for col in ("SETTING", "VALUE", "FROM"):
        table.add_column(col)
    s = app.settings
    keys = sorted(s.values)
    if args.positionals:
        key = args.positionals[0]
        if key not in s.values:
            close = difflib.get_close_matches(key, keys, n=1, cutoff=0.7)
            raise CommandError(f"config: no setting {key!r}" + (f" (did you mean {close[0]}?)" if close else "")
                               + " ('config' lists them)")
        keys = [key]
    for key in keys:
        table.add_row(key, Text(json.dumps(s.values[key]) if not isinstance(s.values[key], str) else s.values[key]),
                      s.sources.get(key, ""))
    app.ui.renderable(table)
    from benchctl.config import user_config_path

    if not args.positionals:
        app.ui.text(f"user config: {user_config_path()}    benchctl home: {app.home}")


def cmd_exit(app: App, args: ParsedArgs) -> None:
    """Leave benchctl (jobs keep running; a later benchctl re-attaches to them)."""
    raise ExitRepl


def register(registry: Registry) -> None:
    registry.add(Command("help", cmd_help, "help [COMMAND [SERVICE|KIND]]", "list commands or describe one",
                         (Complete.COMMAND, Complete.TOPIC)))
    registry.add(Command("history", cmd_history, "history [N]", "show recent commands", (Complete.NUMBER,)))
    registry.add(Command("save", cmd_save, "save [PATH] [--html]", "save the session transcript",
                         (Complete.PATH,), (Option("--html", "also write an HTML transcript", None),)))
    registry.add(Command("source", cmd_source, "source FILE [--keep-going]", "run the commands of a file",
                         (Complete.PATH,), (Option("--keep-going", "continue after a failed command", None),),
                         min_args=1))
    registry.add(Command("config", cmd_config, "config [KEY]", "effective settings and their sources",
                         (Complete.NONE,)))
    registry.add(Command("exit", cmd_exit, "exit", "leave benchctl (jobs keep running)", aliases=("quit",)))
