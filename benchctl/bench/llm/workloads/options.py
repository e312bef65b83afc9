"""The workloads' options of ``bench`` (LLM kinds): one ``Option`` record each, defaults from ``LlmConfig``.

Kept beside the workloads so the kind's own option list stays readable; ``LlmKind.options`` appends these.
Which workload an option belongs to is written once here (``OWNERS``), so a misplaced one (``--turns`` without
``--workload chat``) is refused at parse time instead of silently doing nothing.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from benchctl.bench.llm.workloads import WORKLOADS, WorkloadError
from benchctl.bench.llm.workloads.trace import window
from benchctl.options import Complete, Option, integer, number, path

# option dest -> the workload (or schedule) it belongs to
OWNERS = {"structured": "structured", "structured_ratio": "structured", "structured_api": "structured",
          "turns": "chat", "think_time": "chat", "prefix_tokens": "prefix", "prefix_groups": "prefix",
          "trace_speed": "trace", "trace_window": "trace", "ramp_from": "ramp", "ramp_to": "ramp"}


def workload_options(d: Callable[[str], Any]) -> tuple[Option, ...]:
    """The options, with defaults read through ``d`` (the kind's ``field_default`` of LlmConfig)."""
    return (
        Option("--workload", "request shapes: " + ", ".join(WORKLOADS.names()), default=d("workload"),
               choices=tuple(WORKLOADS.names())),
        Option("--structured", "structured: built-in sets (json,regex,choice,grammar) or a JSONL file of prompt + "
               "constraint", default=d("structured"), metavar="SETS|FILE", complete=Complete.PATH),
        Option("--structured-ratio", "structured: share of requests that are constrained", number(0, 1),
               default=d("structured_ratio"), metavar="R"),
        Option("--structured-api", "structured: request fields (structured_outputs: vLLM >= 0.10; guided: "
               "guided_*, older vLLM)", default=d("structured_api"), choices=("structured_outputs", "guided")),
        Option("--turns", "chat: turns per conversation", integer(1), default=d("turns"), metavar="N"),
        Option("--think-time", "chat: seconds between a reply and the next user message", number(0),
               default=d("think_time"), metavar="S"),
        Option("--prefix-tokens", "prefix: tokens of each shared system prompt", integer(1),
               default=d("prefix_tokens"), metavar="P"),
        Option("--prefix-groups", "prefix: distinct shared system prompts", integer(1), default=d("prefix_groups"),
               metavar="G"),
        Option("--trace", "replay a trace: Mooncake JSONL or Azure CSV (sets --workload trace)", path,
               metavar="FILE", complete=Complete.PATH),
        Option("--trace-speed", "trace: time compression (2 = twice as fast)", number(positive=True),
               default=d("trace_speed"), metavar="X"),
        Option("--trace-window", "trace: the slice to replay, seconds of the trace", window, metavar="START:END"),
        Option("--ramp", "open loop whose rate moves from --ramp-from to --ramp-to over --duration",
               choices=("linear", "exponential")),
        Option("--ramp-from", "ramp: requests/s at the start", number(0), default=d("ramp_from"), metavar="R0"),
        Option("--ramp-to", "ramp: requests/s at the end", number(0), default=d("ramp_to"), metavar="R1"),
    )


def check_owners(values: Mapping[str, Any], workload: str, ramp: bool) -> None:
    """Refuse an option given for another workload than the one run (it would do nothing)."""
    for dest, owner in OWNERS.items():
        if values.get(dest) is None:
            continue
        if (owner == "ramp" and not ramp) or (owner != "ramp" and owner != workload):
            what = "--ramp" if owner == "ramp" else f"--workload {owner}"
            raise WorkloadError(f"--{dest.replace('_', '-')} is an option of {what}")


__all__ = ["OWNERS", "check_owners", "workload_options"]
