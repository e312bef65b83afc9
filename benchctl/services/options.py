"""Typed ``start`` options: shared by every service, plus each service's own.

The same records drive argument parsing, ``help start``, completion of option names and choice values,
and recipe validation.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

_TIME_RE = re.compile(r"^(\d+-)?\d+(:\d{1,2}){0,2}$|^\d+-\d+$")
_MEM_RE = re.compile(r"^\d+[KMGT]?$", re.IGNORECASE)


class OptionError(ValueError):
    """A value does not fit its option; the message names the option."""


@dataclass(frozen=True)
class Option:
    """One ``--flag VALUE`` (or ``--flag`` for kind ``bool``)."""

    flag: str
    kind: str  # int | str | time | mem | choice | path | bool
    help: str
    default: Any = None
    choices: tuple[str, ...] = ()
    metavar: str = ""

    @property
    def dest(self) -> str:
        return self.flag.lstrip("-").replace("-", "_")

    def convert(self, raw: Any) -> Any:
        """Check and convert a value from the command line or a recipe."""
        text = str(raw).strip()
        if self.kind == "bool":
            if isinstance(raw, bool):
                return raw
            if text.lower() in ("1", "true", "yes", "on"):
                return True
            if text.lower() in ("0", "false", "no", "off"):
                return False
            raise OptionError(f"{self.flag}: expected true/false, got {text!r}")
        if self.kind == "int":
            if isinstance(raw, bool) or not re.fullmatch(r"\d+", text):
                raise OptionError(f"{self.flag}: expected a whole number, got {text!r}")
            return int(text)
        if self.kind == "choice" and text not in self.choices:
            raise OptionError(f"{self.flag}: expected one of {', '.join(self.choices)}, got {text!r}")
        if self.kind == "time" and not _TIME_RE.match(text):
            raise OptionError(f"{self.flag}: expected a Slurm time like 30, 01:00:00 or 1-00:00:00, got {text!r}")
        if self.kind == "mem" and not _MEM_RE.match(text):
            raise OptionError(f"{self.flag}: expected memory like 16G or 4000M, got {text!r}")
        if not text:
            raise OptionError(f"{self.flag}: empty value")
        return text


COMMON_OPTIONS: tuple[Option, ...] = (
    Option("--partition", "str", "Slurm partition (default: slurm.partition_cpu / partition_gpu)", metavar="P"),
    Option("--account", "str", "project account to charge (default: slurm.account)", metavar="ACCOUNT"),
    Option("--qos", "str", "quality of service (default: slurm.qos)", metavar="QOS"),
    Option("--time", "time", "wall time limit, e.g. 01:00:00 (default: slurm.time)", metavar="T"),
    Option("--cpus", "int", "CPUs for the service", metavar="N"),
    Option("--mem", "mem", "memory per node, e.g. 16G", metavar="M"),
    Option("--port", "int", "fixed port (default: a free port picked on the node)", metavar="PORT"),
    Option("--runtime", "choice", "container runtime (default: container.runtime)", choices=("apptainer", "none")),
    Option("--image", "str", "container image for apptainer (default: sif/images.yaml)", metavar="URI"),
)
