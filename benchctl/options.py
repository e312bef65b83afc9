"""The one option system: ``Option`` records drive parsing, ``help``, completion and validation alike.

Commands, services (``start`` options), bench kinds and recipes all declare their options as ``Option``
records. A record carries the flag, the value parser, the default (shown by ``help``), the choices and which
kind of value the completer offers. A bad value is refused when the line (or recipe) is parsed -- before
anything waits or is submitted -- with one message naming the option.

Value parsers are plain functions ``str -> value`` that raise ``OptionError`` with a message that does not
name the flag (``Option.convert`` prefixes it), so the same parser serves every option that takes that kind
of value.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from enum import Enum
from typing import Any

Parser = Callable[[str], Any]


class OptionError(ValueError):
    """A value does not fit its option; the message names the option."""


class Complete(str, Enum):
    """What a positional argument or option value is; the completer offers candidates by kind."""

    NONE = "none"
    SERVICE = "service"        # a service `start` takes
    IMAGES = "images"          # a service with a pinned image, or "all" (pull)
    JOB = "job"                # a tracked job id
    TARGET = "target"          # a service name or a job id
    TARGET_ALL = "target_all"  # ... or "all"
    BENCH = "bench"            # a service with a benchmark client, or a bench kind (llm, vector)
    PATH = "path"
    COMMAND = "command"
    CHOICE = "choice"
    NUMBER = "number"
    TOPIC = "topic"            # what the command named before it takes (help start SERVICE, help bench KIND)
    RUN = "run"                # a saved benchmark run's id (results/index.jsonl), or last


# ---- value parsers ---------------------------------------------------------------------------------
def text(raw: str) -> str:
    """Any non-empty text."""
    value = raw.strip()
    if not value:
        raise OptionError("empty value")
    return value


def integer(minimum: int | None = 0, maximum: int | None = None) -> Parser:
    """A whole number within bounds (``minimum`` None: any)."""
    def parse(raw: str) -> int:
        value = raw.strip()
        if not re.fullmatch(r"[-+]?\d+", value):
            raise OptionError(f"expects a number, got {raw!r}")
        number = int(value)
        if minimum is not None and number < minimum:
            raise OptionError(f"must be at least {minimum}, got {number}" if minimum else
                              f"must not be negative, got {number}")
        if maximum is not None and number > maximum:
            raise OptionError(f"must be at most {maximum}, got {number}")
        return number

    parse.__doc__ = "whole number"
    return parse


def number(minimum: float | None = None, maximum: float | None = None, *, positive: bool = False) -> Parser:
    """A finite decimal number within bounds (``positive``: strictly above 0)."""
    def parse(raw: str) -> float:
        try:
            value = float(raw.strip())
        except ValueError:
            raise OptionError(f"expects a number, got {raw!r}") from None
        if value != value or value in (float("inf"), float("-inf")):
            raise OptionError(f"expects a finite number, got {raw!r}")
        if positive and value <= 0:
            raise OptionError(f"must be positive, got {raw!r}")
        if minimum is not None and value < minimum:
            raise OptionError(f"must be at least {minimum:g}, got {raw!r}")
        if maximum is not None and value > maximum:
            raise OptionError(f"must be at most {maximum:g}, got {raw!r}")
        return value

    return parse


_INT_LIST = re.compile(r"^\d+(,\d+)*$")
_NUMBER_LIST = re.compile(r"^\d+(\.\d+)?(,\d+(\.\d+)?)*$")


def int_list(raw: str) -> list[int]:
    """``1,8,64``: whole numbers >= 1 separated by commas (a sweep)."""
    value = raw.strip()
    if not _INT_LIST.match(value):
        raise OptionError(f"expects numbers separated by commas, got {raw!r}")
    values = [int(x) for x in value.split(",")]
    if any(v < 1 for v in values):
        raise OptionError("values must be at least 1")
    return values


def number_list(raw: str) -> list[float]:
    """``0.5,2,4``: positive numbers separated by commas (a sweep)."""
    value = raw.strip()
    if not _NUMBER_LIST.match(value):
        raise OptionError(f"expects numbers separated by commas, got {raw!r}")
    values = [float(x) for x in value.split(",")]
    if any(v <= 0 for v in values):
        raise OptionError("values must be positive")
    return values


_TIME_RE = re.compile(r"^(\d+-)?\d+(:\d{1,2}){0,2}$|^\d+-\d+$")
_MEM_RE = re.compile(r"^\d+[KMGT]?$", re.IGNORECASE)
_ENV_NAME_RE = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


def slurm_time(raw: str) -> str:
    """A Slurm ``--time`` value."""
    value = text(raw)
    if not _TIME_RE.match(value):
        raise OptionError(f"expected a Slurm time like 30, 01:00:00 or 1-00:00:00, got {value!r}")
    return value


def memory(raw: str) -> str:
    """A Slurm ``--mem`` value."""
    value = text(raw)
    if not _MEM_RE.match(value):
        raise OptionError(f"expected memory like 16G or 4000M, got {value!r}")
    return value


def valid_env_name(name: str) -> bool:
    """A name bash accepts in ``${NAME}`` (nothing that could become code in a script)."""
    return _ENV_NAME_RE.fullmatch(name) is not None


def env_name(raw: str) -> str:
    """The NAME of an environment variable (a shell identifier), never a secret value itself."""
    value = text(raw)
    if not valid_env_name(value):
        raise OptionError(f"expected the name of an environment variable (letters, digits and _, not starting "
                          f"with a digit), got {value!r}; pass the variable's name, not its value")
    return value


def url(raw: str) -> str:
    """An http(s) URL with a host."""
    import urllib.parse

    value = text(raw)
    parts = urllib.parse.urlsplit(value)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise OptionError(f"not an http(s) URL: {value!r} (e.g. http://127.0.0.1:8000)")
    try:
        parts.port  # noqa: B018 - raises ValueError on a bad port
    except ValueError:
        raise OptionError(f"bad port in {value!r}") from None
    return value


def checked(check: Callable[[str], Any], errors: type[Exception] | tuple[type[Exception], ...]) -> Parser:
    """A parser from a validation function that raises ``errors`` (its message's "where: " prefix dropped):
    the rule a template or file format enforces refuses the value when the line is parsed, too."""
    def parse(raw: str) -> Any:
        try:
            return check(raw)
        except errors as exc:
            raise OptionError(str(exc).split(": ", 1)[-1]) from None

    return parse


def path(raw: str) -> str:
    """A file or directory path (not checked for existence: it may live on the cluster)."""
    return text(raw)


# ---- the record --------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Option:
    """One ``--flag VALUE`` (or a switch ``--flag`` when ``parse`` is None)."""

    flag: str
    help: str
    parse: Parser | None = text
    default: Any = None
    choices: tuple[str, ...] = ()
    metavar: str = ""
    complete: Complete = Complete.NONE
    short: str = ""
    required: bool = False
    repeatable: bool = False  # given several times, the values collect into a list (``--set a=1 --set b=2``)

    @property
    def dest(self) -> str:
        return self.flag.lstrip("-").replace("-", "_")

    @property
    def is_switch(self) -> bool:
        return self.parse is None

    @property
    def completion(self) -> Complete:
        return Complete.CHOICE if self.choices else self.complete

    def convert(self, raw: Any) -> Any:
        """Check and convert one value from the command line or a recipe; OptionError names the flag."""
        if self.is_switch:
            if isinstance(raw, bool):
                return raw
            word = str(raw).strip().lower()
            if word in ("1", "true", "yes", "on"):
                return True
            if word in ("0", "false", "no", "off"):
                return False
            raise OptionError(f"{self.flag}: expected true/false, got {str(raw)!r}")
        if isinstance(raw, bool):
            raise OptionError(f"{self.flag}: expected a value, got {raw!r}")
        value = str(raw)
        if "\n" in value or "\r" in value:
            # A line break would end an #SBATCH line or an INI key in a rendered file: never a valid value.
            raise OptionError(f"{self.flag}: a line break in a value is refused: {value!r}")
        if self.choices and value.strip() not in self.choices:
            raise OptionError(f"{self.flag}: expected one of {', '.join(self.choices)}, got {value!r}")
        assert self.parse is not None
        try:
            return self.parse(value)
        except OptionError as exc:
            # "--n must be at least 1", "--rate expects numbers ..." read as sentences; the rest as "--x: why".
            sep = " " if str(exc).startswith(("expects ", "must ")) else ": "
            raise OptionError(f"{self.flag}{sep}{exc}") from None

    @property
    def value_name(self) -> str:
        """How help shows the value: ``{a|b}`` for choices, else the metavar."""
        if self.is_switch:
            return ""
        if self.choices:
            return "{" + "|".join(self.choices) + "}"
        return self.metavar or "VALUE"

    @property
    def help_text(self) -> str:
        """The help line, with the record's default (the one place the default is written)."""
        if self.required:
            return f"{self.help} (required)"
        shown = self.default
        if shown is None or shown == "" or shown is False or (isinstance(shown, (list, tuple)) and not shown):
            return self.help
        if isinstance(shown, (list, tuple)):
            shown = ",".join(f"{v:g}" if isinstance(v, float) else str(v) for v in shown)
        elif isinstance(shown, float):
            shown = f"{shown:g}"
        elif shown is True:
            shown = "on"
        return f"{self.help} (default {shown})"


def find_option(options: Sequence[Option], word: str) -> Option | None:
    for opt in options:
        if word == opt.flag or (opt.short and word == opt.short):
            return opt
    return None


def suggest(word: str, options: Sequence[Option]) -> str:
    """`` (did you mean --x?)`` for a close match, else ''."""
    import difflib

    # Compared without the dashes, which every flag shares and which made "--bogus" look like "--qos".
    names = {o.flag.lstrip("-"): o.flag for o in options}
    close = difflib.get_close_matches(word.lstrip("-"), list(names), n=1, cutoff=0.7)
    return f" (did you mean {names[close[0]]}?)" if close else ""


def convert_all(options: Sequence[Option], raw: dict[str, Any], where: str) -> dict[str, Any]:
    """Convert a mapping of ``dest``/flag-name -> raw value (a recipe); OptionError names ``where`` and key."""
    by_dest = {o.dest: o for o in options}
    out: dict[str, Any] = {}
    for key, value in raw.items():
        opt = by_dest.get(str(key).replace("-", "_"))
        if opt is None:
            raise OptionError(f"{where}: unknown option {key!r}")
        try:
            out[opt.dest] = opt.convert(value)
        except OptionError as exc:
            raise OptionError(f"{where}: {exc}") from None
    return out


__all__ = ["Complete", "Option", "OptionError", "Parser", "checked", "convert_all", "env_name",
           "find_option", "int_list", "integer", "memory", "number", "number_list", "path", "slurm_time", "suggest",
           "text", "url", "valid_env_name"]
