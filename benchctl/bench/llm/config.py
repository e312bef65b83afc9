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

    def record(self) -> dict[str, Any]:
        """The configuration as stored in run.json (the prompts themselves stay in the file)."""
        return {k: v for k, v in vars(self).items() if k != "loaded_prompts"}
