"""YAML files users write (recipes, reference bands), read so that every error names the file, line and key.

Scalars stay text (YAML 1.1's ``safe_load`` reads ``time: 12:00:00`` as the base-60 integer 43200 and ``on`` as
True): the ``Option`` records convert and check them, exactly as they do a command line. Lists of scalars
become comma-separated text where an option expects one value (``concurrency: [1, 8]`` = ``--concurrency 1,8``).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from benchctl.errors import UserError

Key = tuple[str | int, ...]


class FileError(UserError):
    """A user file that is unreadable, not YAML, or has a wrong key or value: one line naming where."""


@dataclass
class Document:
    """A YAML file's data with the line of every key and item (``lines[("services", 0, "options")]``)."""

    path: str
    data: Any
    lines: dict[Key, int] = field(default_factory=dict)

    def where(self, key: Key) -> str:
        """``file:line: services[0].options.cpus`` for messages (the nearest known line of the key)."""
        probe = key
        while probe and probe not in self.lines:
            probe = probe[:-1]
        line = self.lines.get(probe)
        return f"{self.path}{f':{line}' if line else ''}: {dotted(key)}" if key else self.path

    def error(self, key: Key, message: str) -> FileError:
        return FileError(f"{self.where(key)}: {message}")


def dotted(key: Key) -> str:
    out = ""
    for part in key:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out


def _plain(node: Any, key: Key, lines: dict[Key, int]) -> Any:
    import yaml

    lines[key] = node.start_mark.line + 1
    if isinstance(node, yaml.MappingNode):
        out: dict[str, Any] = {}
        for k_node, v_node in node.value:
            name = str(k_node.value)
            sub: Key = (*key, name)
            if name in out:
                raise FileError(f"line {k_node.start_mark.line + 1}: {dotted(sub)} is given twice")
            out[name] = _plain(v_node, sub, lines)
            lines[sub] = k_node.start_mark.line + 1
        return out
    if isinstance(node, yaml.SequenceNode):
        return [_plain(item, (*key, i), lines) for i, item in enumerate(node.value)]
    if node.tag.endswith(":null") or (node.style is None and node.value in ("", "~", "null", "Null", "NULL")):
        return None
    return str(node.value)


def load(path: str | Path, *, text: str | None = None) -> Document:
    """Read and compose ``path`` (or ``text``, shown as ``path``) keeping each key's line."""
    import yaml

    shown = str(path)
    if text is None:
        try:
            text = Path(path).expanduser().read_text()
        except OSError as exc:
            raise FileError(f"cannot read {shown}: {exc.strerror}") from None
        except UnicodeDecodeError:
            raise FileError(f"{shown} is not a text file") from None
    try:
        node = yaml.compose(text, Loader=yaml.BaseLoader)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f":{mark.line + 1}" if mark is not None else ""
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        raise FileError(f"{shown}{where}: not valid YAML: {problem}") from None
    lines: dict[Key, int] = {}
    try:
        data = _plain(node, (), lines) if node is not None else None
    except FileError as exc:
        raise FileError(f"{shown}: {exc}") from None
    return Document(shown, data, lines)


def option_text(value: Any) -> Any:
    """A YAML value as an option's raw text: lists joined with commas, scalars as they are."""
    if isinstance(value, list) and all(not isinstance(v, (list, dict)) for v in value):
        return ",".join(str(v) for v in value)
    return value


def mapping(doc: Document, key: Key, value: Any, allowed: Mapping[str, str] | None = None) -> dict[str, Any]:
    """``value`` as a mapping (``{}`` for None), refusing keys not in ``allowed`` (name → what it is)."""
    if value is None:
        return {}
    if not isinstance(value, dict):
        got = "text" if isinstance(value, str) else "a list" if isinstance(value, list) else type(value).__name__
        raise doc.error(key, f"expected a mapping, got {got}")
    if allowed is not None:
        for name in value:
            if name not in allowed:
                import difflib

                close = difflib.get_close_matches(name, list(allowed), n=1)
                hint = f" (did you mean {close[0]!r}?)" if close else f" (known: {', '.join(allowed)})"
                raise doc.error((*key, name), f"unknown key{hint}")
    return value


def as_bool(doc: Document, key: Key, value: Any, default: bool) -> bool:
    if value is None:
        return default
    word = str(value).strip().lower()
    if word in ("true", "yes", "on", "1"):
        return True
    if word in ("false", "no", "off", "0"):
        return False
    raise doc.error(key, f"expected true or false, got {value!r}")


def as_int(doc: Document, key: Key, value: Any, default: int, low: int = 1, high: int = 1000) -> int:
    if value is None:
        return default
    try:
        number = int(str(value))
    except ValueError:
        raise doc.error(key, f"expected a whole number, got {value!r}") from None
    if not low <= number <= high:
        raise doc.error(key, f"expected {low}..{high}, got {number}")
    return number


def as_float_or_none(doc: Document, key: Key, value: Any) -> float | None:
    if value is None:
        return None
    try:
        return float(str(value))
    except ValueError:
        raise doc.error(key, f"expected a number or null, got {value!r}") from None


__all__ = ["Document", "FileError", "Key", "as_bool", "as_float_or_none", "as_int", "dotted", "load", "mapping",
           "option_text"]
