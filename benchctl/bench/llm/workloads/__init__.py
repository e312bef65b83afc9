"""LLM workloads: what the load generator's requests look like, and (for some) when they are sent.

A workload turns a request slot of the load generator into a request body and reads the answer back:

* ``default``    -- synthetic prompts of ``--input-tokens`` or ``--prompts FILE`` (the loadgen's own bodies);
* ``structured`` -- constrained output (JSON schema, regex, choice, grammar), each answer validated;
* ``chat``       -- multi-turn conversations, every turn sending the whole history (``chat``);
* ``prefix``     -- one of G shared system prompts + a unique suffix (the server's prefix cache at work);
* ``trace``      -- a production trace's arrival times and sizes (Mooncake JSONL, Azure CSV).

``--ramp linear|exponential`` is a schedule, not a workload: an open loop whose rate moves over the point
(``ramp``), combinable with the request shapes above except chat (a closed loop by nature).

The seam to the load generator is small: ``plan_for(cfg)`` gives the run's ``Workload``; per point the
loadgen asks it for arrival ``offsets`` (None = its own schedule) and one ``Session`` per closed-loop user
(one shared by an open loop), which builds each request's ``body`` and sees the result (``done``).
After the point, ``point_metrics`` adds the workload's own figures (validity rate, TTFT per turn, ...).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

from benchctl.registry import Registry

if TYPE_CHECKING:
    from benchctl.bench.llm.config import LlmConfig
    from benchctl.bench.llm.stream import RequestResult


class WorkloadError(ValueError):
    """A workload's settings or file cannot be used; the message says which and why."""


class Session:
    """Builds the requests of one closed-loop user (or of a whole open loop) and reads their answers."""

    def __init__(self, workload: Workload) -> None:
        self.workload = workload

    def body(self, r: RequestResult) -> dict[str, Any]:
        """The JSON body of request ``r`` (it may set ``r``'s workload fields, e.g. ``keep_text``)."""
        from benchctl.bench.llm.loadgen import request_body

        return request_body(self.workload.cfg, r.index)

    def done(self, r: RequestResult) -> None:
        """``r`` has ended (ok or not): validate it, extend a history, ..."""

    def pause(self, r: RequestResult) -> float:
        """Seconds this user waits before its next request (a chat's think time)."""
        return 0.0


class Workload:
    """The default workload (the loadgen's own bodies and schedule); the others derive from it."""

    name = "default"
    summary = "synthetic prompts of --input-tokens, or --prompts FILE"
    needs_chat = False  # the requests are conversations: a chat API is needed
    closed_loop_only = False
    scrape_per_point = False  # the server's /metrics before and after each point (prefix-cache hits)

    def __init__(self, cfg: LlmConfig) -> None:
        """Check the settings and read the workload's files (WorkloadError): made at parse time, so a bad file
        is refused before anything waits on a job."""
        self.cfg = cfg

    async def prepare(self, url: str, headers: dict[str, str]) -> list[str]:
        """Size what needs the server's tokenizer; returns notes for the user."""
        return []

    def session(self) -> Session:
        return Session(self)

    def offsets(self, rate: float | None) -> list[float] | None:
        """Arrival times (s after the point's start) of an open loop; None = the loadgen's own."""
        from benchctl.bench.llm.workloads.ramp import ramp_offsets

        return ramp_offsets(self.cfg) if self.cfg.ramp else None

    def label(self, concurrency: int, rate: float | None) -> str:
        """The point's name in the status line and the summary ('' = the loadgen's 'c=8' / 'rate 2/s')."""
        if self.cfg.ramp:
            return f"ramp {self.cfg.ramp_from:g}->{self.cfg.ramp_to:g}/s"
        return ""

    def point_metrics(self, measured: list[RequestResult], t0: float | None) -> dict[str, Any]:
        """The workload's own figures of one point (warm-up excluded); ``t0`` is the point's start."""
        from benchctl.bench.llm.workloads.ramp import per_second

        return {"per_second": per_second(measured, t0, self.cfg)} if self.cfg.ramp else {}

    def warnings(self, metrics: Mapping[str, Any]) -> list[str]:
        """What the user must read about a point (said once per run: ``new_warnings``)."""
        return []

    def new_warnings(self, metrics: Mapping[str, Any], said: set[str]) -> list[str]:
        """The point's warnings not yet in ``said`` (which they join): each is said once per run."""
        new = [w for w in dict.fromkeys(self.warnings(metrics)) if w not in said]
        said.update(new)
        return new


def _load(name: str) -> Callable[[], type[Workload]]:
    def load() -> type[Workload]:
        import importlib

        module = importlib.import_module(f"benchctl.bench.llm.workloads.{name}")
        cls: type[Workload] = module.WORKLOAD
        return cls

    return load


# name -> a loader (the modules are imported when a run needs them: `help` and completion stay light).
WORKLOADS: Registry[tuple[str, str, Callable[[], type[Workload]]]] = Registry("LLM workload", (
    ("default", Workload.summary, lambda: Workload),
    ("structured", "constrained output (JSON schema, regex, choice, grammar), each answer validated",
     _load("structured")),
    ("chat", "multi-turn conversations (--turns), each turn sending the whole history", _load("chat")),
    ("prefix", "shared system prompts (--prefix-tokens, --prefix-groups) + unique suffixes", _load("prefix")),
    ("trace", "replay a Mooncake JSONL / Azure CSV trace (--trace)", _load("trace")),
), key=lambda w: w[0])


def workload_class(name: str) -> type[Workload]:
    item = WORKLOADS.get(name)
    if item is None:
        raise WorkloadError(f"unknown workload {name!r} (known: {', '.join(WORKLOADS.names())})")
    return item[2]()


def configure(cfg: LlmConfig, values: Mapping[str, Any]) -> None:
    """The workload's options from the parsed values into ``cfg``, checked (WorkloadError)."""
    for key in ("structured", "structured_ratio", "structured_api", "turns", "think_time", "prefix_tokens",
                "prefix_groups", "trace", "trace_speed", "trace_window", "ramp", "ramp_from", "ramp_to"):
        if values.get(key) is not None:
            setattr(cfg, key, values[key])
    workload = values.get("workload")
    if cfg.trace and workload not in (None, "trace"):
        raise WorkloadError(f"--trace replays a trace: it cannot be combined with --workload {workload}")
    cfg.workload = "trace" if cfg.trace else workload or "default"
    cls = workload_class(cfg.workload)
    if cfg.ramp:
        if cfg.rate:
            raise WorkloadError("--ramp sets the rate itself (--ramp-from -> --ramp-to): leave out --rate")
        if cls.closed_loop_only or cfg.workload == "trace":
            raise WorkloadError(f"--ramp is an open-loop schedule: it cannot drive the {cfg.workload} workload")
        if cfg.ramp == "exponential" and min(cfg.ramp_from, cfg.ramp_to) <= 0:
            raise WorkloadError("--ramp exponential needs --ramp-from and --ramp-to above 0")
        if max(cfg.ramp_from, cfg.ramp_to) <= 0:
            raise WorkloadError("--ramp needs a rate above 0 somewhere (--ramp-to)")
    if cls.closed_loop_only and cfg.rate:
        raise WorkloadError(f"the {cfg.workload} workload is a closed loop (--concurrency = active "
                            "conversations): leave out --rate")
    if (cfg.ramp or cfg.workload == "trace") and values.get("concurrency") is None:
        cfg.concurrency, cfg.concurrency_capped = [1024], False  # the schedule drives the load: a generous cap
    cfg.workload_state = cls(cfg)


def plan_for(cfg: LlmConfig) -> Workload:
    """The run's workload object (made once, kept on the config: its files and sizes are read once)."""
    if not isinstance(cfg.workload_state, Workload):
        cfg.workload_state = workload_class(cfg.workload)(cfg)
    return cfg.workload_state


__all__ = ["WORKLOADS", "Session", "Workload", "WorkloadError", "configure", "plan_for", "workload_class"]
