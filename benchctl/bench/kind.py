"""``BenchKind``: what every benchmark client offers the ``bench`` command, and what it is given.

A kind declares typed options (``Option`` records: parsed and checked with the line, shown by ``help``,
completed by Tab), turns the parsed values into its config (``config``), runs against a ``BenchTarget``
writing per-request records through a ``RunWriter`` and reporting through ``Progress``, returns a
``RunResult``, and renders a summary of any ``RunResult`` of its kind (also one read back from disk).

Kinds are registered in ``benchctl.bench.BENCH_KINDS``; a service names its kind with ``bench_kind``.
"""

from __future__ import annotations

import dataclasses
from abc import ABC, abstractmethod
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, ClassVar, Protocol

from benchctl.errors import UserError
from benchctl.options import Complete, Option, integer, path

if TYPE_CHECKING:
    from rich.console import RenderableType

    from benchctl.bench.results import RunResult, RunWriter
    from benchctl.jobs import Job
    from benchctl.services.base import SlurmServer


class BenchError(UserError, RuntimeError):
    """A benchmark could not run or finish for a reason the user should read (one line)."""


class PartialRun(Exception):
    """Ctrl-C or SIGTERM stopped a run: ``result`` holds what was measured (the points so far and the
    interrupted one, marked), ``cause`` is the KeyboardInterrupt/SystemExit to re-raise once it is saved."""

    def __init__(self, result: RunResult, cause: BaseException) -> None:
        super().__init__("interrupted")
        self.result, self.cause = result, cause


class Progress(Protocol):
    """How a running benchmark talks to the user: a transient status line, lines, warnings."""

    def status(self, text: str) -> None:
        """Replace the live status line (a spinner on a terminal; never recorded)."""

    def note(self, text: str) -> None:
        """A progress line (left out with --quiet)."""

    def info(self, text: str) -> None:
        """A line always shown."""

    def warn(self, text: str) -> None:
        """A warning, always shown."""


@dataclass
class BenchTarget:
    """What a benchmark runs against: an endpoint (a ready server, or a URL given directly) and/or a job."""

    name: str  # names the run: the service, or the API of a direct URL (chroma, qdrant, llm)
    url: str = ""
    job: Job | None = None
    service: SlurmServer | None = None
    record: dict[str, Any] = field(default_factory=dict)  # the run's "service" block
    headers: dict[str, str] = field(default_factory=dict, repr=False)  # credentials: never recorded
    # Exporters on the job's nodes (bench.sampler.ScrapeTarget): sampled into the timeline beside the server.
    sidecars: list[Any] = field(default_factory=list, repr=False)


def field_default(cls: type, name: str) -> Any:
    """The default of dataclass field ``name`` (its factory's value for lists): config dataclasses are the
    one place a kind's defaults are written, and its ``Option`` records show them from there."""
    f = {x.name: x for x in dataclasses.fields(cls)}[name]
    if f.default is not dataclasses.MISSING:
        return f.default
    if f.default_factory is not dataclasses.MISSING:
        return f.default_factory()
    return None


# Options of every kind.
COMMON_OPTIONS: tuple[Option, ...] = (
    Option("--output", "also write the run JSON to FILE", path, metavar="FILE", complete=Complete.PATH),
    Option("--quiet", "print only the summary", None),
    Option("--repeat", "run the whole benchmark N times: headline figures as mean, 95 % confidence interval "
           "(Student's t) and coefficient of variation", integer(1, 100), default=1, metavar="N"),
    Option("--reference", "YAML file of expected values (lower/upper bounds per service, model, point and "
           "metric): each figure is marked in or out of its band", path, metavar="FILE", complete=Complete.PATH),
)


class BenchKind(ABC):
    """One benchmark client."""

    name: ClassVar[str]
    summary: ClassVar[str]
    # Runs against a URL given with --url (``bench NAME --url ...``), not only against a service's job.
    direct: ClassVar[bool] = False

    @property
    def options(self) -> tuple[Option, ...]:
        """The kind's own options (every target)."""
        return ()

    @property
    def direct_options(self) -> tuple[Option, ...]:
        """Options only ``bench NAME --url ...`` takes (where to send the load, which API)."""
        return ()

    @property
    def service_options(self) -> tuple[Option, ...]:
        """Options only a service target takes."""
        return ()

    @abstractmethod
    def config(self, values: Mapping[str, Any]) -> Any:
        """The typed config from parsed option values (``dest`` -> value; absent = default). Raises
        BenchError for combinations no single option can refuse."""

    def direct_target(self, config: Any) -> BenchTarget:
        """The target of ``bench NAME --url ...`` (BenchError when the options do not name one)."""
        raise BenchError(f"{self.name} runs against a service's job only")

    @abstractmethod
    def run(self, target: BenchTarget, config: Any, writer: RunWriter, progress: Progress) -> RunResult:
        """Run the benchmark; per-request records go to ``writer`` as they happen."""

    @abstractmethod
    def summary_view(self, result: RunResult) -> RenderableType:
        """What the shell prints after a run (tables, a few lines), from the result alone."""

    def problems(self, result: RunResult) -> list[str]:
        """Why the run failed as a measurement (every request of a point failed, the error budget was passed):
        the shell prints the summary, then fails the command with these (exit status != 0)."""
        return []


__all__ = [
    "COMMON_OPTIONS",
    "BenchError",
    "BenchKind",
    "BenchTarget",
    "PartialRun",
    "Progress",
    "field_default",
]
