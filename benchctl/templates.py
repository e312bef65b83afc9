"""Render batch scripts from ``batch_templates/`` with Jinja2.

``StrictUndefined`` turns a missing value into an error instead of ``#SBATCH --partition=``, and the
``q`` filter shell-quotes every value that reaches a script, so user input can never become shell code.
"""

from __future__ import annotations

import shlex
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

_PACKAGE_DIR = Path(__file__).resolve().parent


def find_resource_dir(name: str) -> Path:
    """``benchctl/<name>`` in a wheel, or ``<repo>/<name>`` in a source checkout (editable install)."""
    for candidate in (_PACKAGE_DIR / name, _PACKAGE_DIR.parent / name):
        if candidate.is_dir():
            return candidate
    raise FileNotFoundError(f"cannot find the {name}/ directory next to {_PACKAGE_DIR}")


def shell_quote(value: Any) -> str:
    """Quote one value for bash. Numbers stay readable; everything else goes through shlex.quote."""
    if isinstance(value, bool):
        raise TypeError("refusing to quote a bool; render it explicitly")
    if isinstance(value, int):
        return str(value)
    if "\n" in str(value) or "\r" in str(value):  # a line break would end an #SBATCH comment line: code
        raise TemplateError(f"refusing a value with a line break in a batch script: {str(value)!r}")
    return shlex.quote(str(value))


def shell_join(values: Iterable[Any]) -> str:
    return " ".join(shell_quote(v) for v in values)


class TemplateError(ValueError):
    """A template failed to render (missing value, syntax error); the message names the template."""


class Renderer:
    """Jinja2 environments over the template directory (and, per call, a service's own folder first)."""

    def __init__(self, directory: Path | None = None) -> None:
        self.directory = directory or find_resource_dir("batch_templates")
        self._envs: dict[tuple[str, ...], Any] = {}
        self.env = self._env(())

    def _env(self, extra: tuple[str, ...]) -> Any:
        import jinja2  # lazily: only rendering needs it

        env = self._envs.get(extra)
        if env is None:
            env = jinja2.Environment(
                loader=jinja2.FileSystemLoader([*extra, str(self.directory)]),
                undefined=jinja2.StrictUndefined,
                keep_trailing_newline=True,
                trim_blocks=True,
                lstrip_blocks=True,
                autoescape=False,
            )
            env.filters["q"] = shell_quote
            env.filters["shjoin"] = shell_join
            self._envs[extra] = env
        return env

    def render(self, name: str, context: Mapping[str, Any], *, search: Path | None = None) -> str:
        """Render template ``name``; ``search`` is a folder looked in before the template directory."""
        import jinja2

        env = self._env((str(search),) if search else ())
        try:
            return str(env.get_template(name).render(**context))
        except jinja2.UndefinedError as exc:
            raise TemplateError(f"{name}: {exc.message}") from None
        except jinja2.TemplateError as exc:
            raise TemplateError(f"{name}: {exc}") from None
