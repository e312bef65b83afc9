"""``LlmConfig``: the LLM benchmark's settings -- the one place their defaults are written (the kind's
options show them from here). Light to import: ``help`` and completion read it."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from benchctl.bench.llm.prompts import Prompt


@dataclass
class LlmConfig:
    backend: str = "openai"
    model: str = "sim"
    concurrency: list[int] = field(default_factory=lambda: [8])
    concurrency_capped: bool = True  # False: an open loop whose --concurrency cap was not given (vLLM: null)
    rate: list[float] = field(default_factory=list)  # empty = closed loop
    arrival: str = "poisson"
    burstiness: float = 1.0
    requests: int = 0  # 0 = until --duration
    duration: float = 30.0
    grace: float = 30.0
    warmup: int = 0
    input_tokens: int = 128
    output_tokens: int = 128
    seed: int = 42
    timeout: float = 600.0
    max_error_rate: float = 1.0
    slo: dict[str, float] = field(default_factory=dict)  # ttft / tpot / e2el in ms
    prompts: str = ""  # JSONL / ShareGPT file; "" = synthetic prompts
    prompt_words: int = 0  # synthetic prompt length in words after calibration (0 = input_tokens)
    prompt_pad: int = 0  # + one-letter words to hit the token count exactly
    loaded_prompts: list[Prompt] = field(default_factory=list, repr=False)
    url: str = ""  # `bench llm --url`: the endpoint (a service's job supplies it otherwise)
    api_key_env: str = ""  # the NAME of the variable holding the API key (never the key)
    server_metrics_interval: float = 1.0  # seconds between scrapes of the server's /metrics (0: off)
    # Workloads (``bench.llm.workloads``): what the requests look like and when they are sent.
    workload: str = "default"  # default (synthetic / --prompts) | structured | chat | prefix | trace
    structured: str = "json,regex,choice,grammar"  # built-in constraint sets, or a JSONL file of them
    structured_ratio: float = 1.0  # share of constrained requests (the others are free)
    structured_api: str = "structured_outputs"  # vLLM >= 0.10's request field; "guided" = guided_* (older)
    turns: int = 3  # chat: turns per conversation
    think_time: float = 0.0  # chat: seconds a user waits between a reply and their next message
    prefix_tokens: int = 256  # prefix: tokens of each shared system prompt
    prefix_groups: int = 4  # prefix: how many distinct shared system prompts
    trace: str = ""  # trace: a Mooncake JSONL or Azure CSV trace file
    trace_speed: float = 1.0  # trace: time compression (2 = twice as fast)
    trace_window: str = ""  # trace: START:END seconds of the trace to replay ("" = all of it)
    ramp: str = ""  # linear | exponential: the open-loop rate moves from ramp_from to ramp_to over --duration
    ramp_from: float = 1.0
    ramp_to: float = 10.0
    workload_state: Any = field(default=None, repr=False)  # the prepared workload (files read, sizes)
    # This process's share of a load run by several client processes (bench.client): task i of n.
    task_index: int = 0
    task_count: int = 1

    @property
    def scheduled(self) -> bool:
        """Whether arrivals follow a schedule (--rate, --ramp, a trace: an open loop), not closed-loop users."""
        return bool(self.rate) or bool(self.ramp) or self.workload == "trace"

    def number(self, ordinal: int) -> int:
        """The index of this process's ``ordinal``-th closed-loop request. Client tasks interleave (task i of n
        sends i, i+n, i+2n, ...): a request's prompt, constraint or prefix group, all chosen by its index, is
        never another task's -- n tasks sending the same texts would hit the server's prefix cache for free."""
        return ordinal * self.task_count + self.task_index

    def ordinal(self, index: int) -> int:
        """A request's place among this process's own (its warm-up is the first ``warmup``): a schedule's
        index is already that; a closed-loop index is ``number``'s."""
        return index if self.scheduled else index // self.task_count

    def record(self) -> dict[str, Any]:
        """The configuration as stored in run.json (the prompts themselves stay in the file)."""
        return {k: v for k, v in vars(self).items() if k not in ("loaded_prompts", "workload_state")}
