"""The command engine: frozen ``Command`` records in an instance-scoped registry.

The records drive dispatch, ``help`` and completion alike. Argument parsing is done here from the same
records (no argparse ``SystemExit``s inside a REPL): bad input raises ``CommandError`` with one line.
"""

from __future__ import annotations

import shlex
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from enum import Enum
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from benchctl.app import App


class CommandError(Exception):
    """Expected, user-facing failure: the message is shown, the shell goes on."""


class ExitRepl(Exception):
    """Raised by ``exit``/``quit`` to leave the loop."""


class ArgKind(str, Enum):
    """What a positional argument or option value is; the completer offers candidates by kind."""

    SERVICE = "service"
    JOB = "job"            # a tracked job id
    TARGET = "target"      # a service name or a job id
    TARGET_ALL = "target_all"  # ... or "all"
    PATH = "path"
    COMMAND = "command"
    INT = "int"
    TEXT = "text"
    CHOICE = "choice"


@dataclass(frozen=True)
class OptSpec:
    """A command option. ``value`` None means a flag without value."""

    flag: str
    value: ArgKind | None = None
    help: str = ""
    choices: tuple[str, ...] = ()
    short: str = ""
    metavar: str = ""

    @property
    def dest(self) -> str:
        return self.flag.lstrip("-").replace("-", "_")


@dataclass(frozen=True)
class Command:
    """One shell command."""

    name: str
    handler: Callable[[App, ParsedArgs], None]
    usage: str
    summary: str
    args: tuple[ArgKind, ...] = ()
    options: tuple[OptSpec, ...] = ()
    aliases: tuple[str, ...] = ()
    min_args: int = 0
    # For commands whose options depend on the positional words (start SERVICE → that service's options).
    options_for: Callable[[App, Sequence[str]], tuple[OptSpec, ...]] | None = None

    def all_options(self, app: App, positionals: Sequence[str]) -> tuple[OptSpec, ...]:
        extra = self.options_for(app, positionals) if self.options_for else ()
        return self.options + extra


@dataclass
class ParsedArgs:
    """Positionals and options after parsing; ``opts`` maps ``dest`` → value (True for flags)."""

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


def split_line(line: str) -> list[str]:
    try:
        return shlex.split(line, comments=False)
    except ValueError as exc:
        raise CommandError(f"cannot parse the line: {exc}") from None


def find_spec(specs: Sequence[OptSpec], word: str) -> OptSpec | None:
    for spec in specs:
        if word == spec.flag or (spec.short and word == spec.short):
            return spec
    return None


def parse_args(app: App, command: Command, argv: Sequence[str]) -> ParsedArgs:
    """Parse ``argv`` against the command's records. ``--opt=value`` and ``--opt value`` both work."""
    parsed = ParsedArgs()
    # Positionals first pass: options of `start` depend on the service named before them.
    words = list(argv)
    i = 0
    while i < len(words):
        word = words[i]
        if word.startswith("-") and len(word) > 1 and not _is_number(word):
            flag, eq, inline = word.partition("=")
            spec = find_spec(command.all_options(app, parsed.positionals), flag)
            if spec is None:
                hint = _suggest(flag, command.all_options(app, parsed.positionals))
                raise CommandError(f"{command.name}: unknown option {flag}{hint} (see 'help {command.name}')")
            if spec.value is None:
                if eq:
                    raise CommandError(f"{command.name}: {spec.flag} takes no value")
                parsed.opts[spec.dest] = True
            else:
                if eq:
                    value = inline
                elif i + 1 < len(words):
                    i += 1
                    value = words[i]
                else:
                    raise CommandError(f"{command.name}: {spec.flag} needs a value")
                parsed.opts[spec.dest] = _convert(command, spec, value)
        else:
            parsed.positionals.append(word)
        i += 1
    if len(parsed.positionals) < command.min_args:
        raise CommandError(f"{command.name}: missing argument; usage: {command.usage}")
    if len(parsed.positionals) > len(command.args):
        extra = parsed.positionals[len(command.args)]
        raise CommandError(f"{command.name}: unexpected argument {extra!r}; usage: {command.usage}")
    return parsed


def _is_number(word: str) -> bool:
    return word[1:].replace(".", "", 1).isdigit()


def _convert(command: Command, spec: OptSpec, value: str) -> Any:
    if spec.value is ArgKind.INT:
        try:
            number = int(value)
        except ValueError:
            raise CommandError(f"{command.name}: {spec.flag} expects a number, got {value!r}") from None
        if number < 0:
            raise CommandError(f"{command.name}: {spec.flag} must not be negative")
        return number
    if spec.value is ArgKind.CHOICE and spec.choices and value not in spec.choices:
        raise CommandError(f"{command.name}: {spec.flag} must be one of {', '.join(spec.choices)}, got {value!r}")
    return value


def _suggest(flag: str, specs: Sequence[OptSpec]) -> str:
    import difflib

    close = difflib.get_close_matches(flag, [s.flag for s in specs], n=1)
    return f" (did you mean {close[0]}?)" if close else ""
