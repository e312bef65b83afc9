"""The command engine: frozen ``Command`` records in an instance-scoped registry.

The records drive dispatch, ``help`` and completion alike. Arguments are parsed here from the same records
and their ``Option``s (no argparse ``SystemExit``s inside a REPL): every value is converted and checked as
the line is parsed, and bad input raises ``CommandError`` with one line.
"""

from __future__ import annotations

import shlex
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from benchctl.errors import UserError
from benchctl.options import Complete, Option, OptionError, find_option, suggest

if TYPE_CHECKING:
    from benchctl.app import App


class CommandError(UserError):
    """Expected, user-facing failure: the message is shown, the shell goes on."""


class AlreadyReported(CommandError):
    """A failure whose cause was already shown (a command inside `source FILE`): fail without another line."""


class ExitRepl(Exception):
    """Raised by ``exit``/``quit`` to leave the loop."""


class HelpRequested(Exception):
    """``--help``/``-h`` on a command line: show that command's help (for the service or kind named before it)."""

    def __init__(self, command: Command, positionals: Sequence[str]) -> None:
        super().__init__(command.name)
        self.command, self.positionals = command, list(positionals)


@dataclass(frozen=True)
class Command:
    """One shell command."""

    name: str
    handler: Callable[[App, ParsedArgs], None]
    usage: str
    summary: str
    args: tuple[Complete, ...] = ()
    options: tuple[Option, ...] = ()
    aliases: tuple[str, ...] = ()
    min_args: int = 0
    # For commands whose options depend on the positional words (start SERVICE → that service's options):
    # called with no words, it gives the options common to every topic.
    options_for: Callable[[App, Sequence[str]], tuple[Option, ...]] | None = None
    # The words ``options_for`` knows (services for start; services and direct kinds for bench): help and
    # completion list them, and ``help start NAME`` refuses a NAME not among them.
    topics: Callable[[App], list[str]] | None = None

    def all_options(self, app: App, positionals: Sequence[str]) -> tuple[Option, ...]:
        extra = self.options_for(app, positionals) if self.options_for else ()
        seen = {o.flag for o in self.options}
        return self.options + tuple(o for o in extra if o.flag not in seen)


@dataclass
class ParsedArgs:
    """Positionals and options after parsing; ``opts`` maps ``dest`` → converted value (True for switches)."""

    positionals: list[str] = field(default_factory=list)
    opts: dict[str, Any] = field(default_factory=dict)

    def get(self, dest: str, default: Any = None) -> Any:
        return self.opts.get(dest, default)


class Registry:
    """Commands by name (aliases resolve to the same record). One per App: nothing global."""

    def __init__(self) -> None:
        self._commands: dict[str, Command] = {}
        self._names: dict[str, str] = {}

    def add(self, command: Command) -> None:
        for name in (command.name, *command.aliases):
            if name in self._names:
                raise ValueError(f"command {name!r} registered twice")
            self._names[name] = command.name
        self._commands[command.name] = command

    def lookup(self, name: str) -> Command | None:
        real = self._names.get(name)
        return self._commands[real] if real else None

    def __iter__(self) -> Iterator[Command]:
        return iter(self._commands.values())

    def names(self) -> list[str]:
        return list(self._commands)


def did_you_mean(word: str, registry: Registry) -> str:
    """`` (did you mean 'status'?)`` for a close misspelling of a command name, else ""."""
    import difflib

    names = [n for c in registry for n in (c.name, *c.aliases)]
    close = difflib.get_close_matches(word, names, n=1, cutoff=0.75)
    return f" (did you mean '{close[0]}'?)" if close else ""


def split_line(line: str) -> list[str]:
    try:
        return shlex.split(line, comments=False)
    except ValueError as exc:
        raise CommandError(f"cannot parse the line: {exc}") from None


def _is_number(word: str) -> bool:
    return word[1:].replace(".", "", 1).isdigit()


def parse_args(app: App, command: Command, argv: Sequence[str]) -> ParsedArgs:
    """Parse ``argv`` against the command's records. ``--opt=value`` and ``--opt value`` both work; every
    value is converted by its option's parser now, before the command runs."""
    parsed = ParsedArgs()
    words = list(argv)
    i = 0
    while i < len(words):
        word = words[i]
        if word.startswith("-") and len(word) > 1 and not _is_number(word):
            flag, eq, inline = word.partition("=")
            # Options of `start` and `bench` depend on the service named before them.
            options = command.all_options(app, parsed.positionals)
            opt = find_option(options, flag)
            if opt is None and flag in ("--help", "-h"):
                raise HelpRequested(command, parsed.positionals)
            if opt is None:
                raise CommandError(f"{command.name}: unknown option {flag}{suggest(flag, options)} "
                                   f"(see 'help {command.name}')")
            if opt.is_switch:
                if eq:
                    raise CommandError(f"{command.name}: {opt.flag} takes no value")
                parsed.opts[opt.dest] = True
            else:
                if eq:
                    value = inline
                elif i + 1 < len(words):
                    i += 1
                    value = words[i]
                else:
                    raise CommandError(f"{command.name}: {opt.flag} needs a value")
                try:
                    converted = opt.convert(value)
                except OptionError as exc:
                    raise CommandError(f"{command.name}: {exc}") from None
                if opt.repeatable:
                    parsed.opts.setdefault(opt.dest, []).append(converted)
                else:
                    parsed.opts[opt.dest] = converted
        else:
            parsed.positionals.append(word)
        i += 1
    for opt in command.options:  # the command's own defaults (a service's or bench kind's apply later)
        if opt.default is not None:
            parsed.opts.setdefault(opt.dest, opt.default)
    if len(parsed.positionals) < command.min_args:
        raise CommandError(f"{command.name}: missing argument; usage: {command.usage}")
    if len(parsed.positionals) > len(command.args):
        extra = parsed.positionals[len(command.args)]
        raise CommandError(f"{command.name}: unexpected argument {extra!r}; usage: {command.usage}")
    return parsed


__all__ = ["AlreadyReported", "Command", "CommandError", "Complete", "ExitRepl", "HelpRequested", "Option",
           "ParsedArgs", "Registry", "did_you_mean", "parse_args", "split_line"]
