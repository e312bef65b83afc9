"""llm-sim's model of a request: settings, the token schedule and truth (Plan), request-body counting,
and the vLLM-named Prometheus metrics it serves."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

CLOCK = time.monotonic  # = perf_counter's clock on Linux; precise under uvloop too (see the docstring)

# vLLM's bucket bounds (vllm/v1/metrics/loggers.py), in seconds.
TTFT_BUCKETS = (0.001, 0.005, 0.01, 0.02, 0.04, 0.06, 0.08, 0.1, 0.25, 0.5, 0.75, 1.0, 2.5, 5.0, 7.5, 10.0,
                20.0, 40.0, 80.0, 160.0, 640.0, 2560.0)
LATENCY_BUCKETS = (0.3, 0.5, 0.8, 1.0, 1.5, 2.0, 2.5, 5.0, 10.0, 15.0, 20.0, 30.0, 40.0, 50.0, 60.0, 120.0,
                   240.0, 480.0, 960.0, 1920.0, 7680.0)
ITL_BUCKETS = (0.01, 0.025, 0.05, 0.075, 0.1, 0.15, 0.2, 0.3, 0.4, 0.5, 0.75, 1.0, 2.5, 5.0, 7.5, 10.0, 20.0,
               40.0, 80.0)
WORDS = ("alpha", "bravo", "charlie", "delta", "echo", "foxtrot", "golf", "hotel", "india", "juliett", "kilo",
         "lima", "mike", "november", "oscar", "papa", "quebec", "romeo", "sierra", "tango", "uniform", "victor",
         "whiskey", "xray", "yankee", "zulu")


@dataclass(frozen=True)
class SimConfig:
    """The simulator's settings (the CLI flags)."""

    model: str = "sim"
    ttft_ms: float = 50.0
    itl_ms: float = 10.0
    output_tokens: int = 128
    tokens_per_chunk: int = 1
    max_concurrency: int = 256
    error_rate: float = 0.0
    disconnect_rate: float = 0.0
    seed: int | None = None
    truth_log: str = ""  # also append every finished request's truth ({"id", "llmsim"}) to this JSONL file
    api_key: str = ""  # when set, /v1/* and the Ollama generate/chat/tags routes need "Authorization: Bearer KEY"
    invalid_rate: float = 0.0  # share of constrained (structured-output) answers that break their constraint
    # Prefill cost: ms per 1,000 prompt tokens NOT in the prefix cache, added to the TTFT (0 = a flat TTFT). With
    # it a chat's later turns and a prefix workload's shared prompts come back faster, as on a real server.
    prefill_ms_per_1k: float = 0.0

    def __post_init__(self) -> None:
        if self.ttft_ms < 0 or self.itl_ms < 0 or self.prefill_ms_per_1k < 0:
            raise ValueError("ttft, itl and prefill must be >= 0")
        if self.output_tokens < 1 or self.tokens_per_chunk < 1 or self.max_concurrency < 1:
            raise ValueError("output tokens, tokens per chunk and max concurrency must be >= 1")
        if not all(0.0 <= r <= 1.0 for r in (self.error_rate, self.disconnect_rate, self.invalid_rate)):
            raise ValueError("error, disconnect and invalid rates must be within [0, 1]")


class Histogram:
    """A Prometheus histogram (cumulative buckets, sum, count)."""

    def __init__(self, bounds: tuple[float, ...]) -> None:
        self.bounds = bounds
        self.counts = [0] * len(bounds)
        self.total = 0.0
        self.n = 0

    def observe(self, value: float) -> None:
        self.total += value
        self.n += 1
        for i, bound in enumerate(self.bounds):
            if value <= bound:
                self.counts[i] += 1

    def lines(self, name: str, labels: str) -> list[str]:
        out = [f'{name}_bucket{{{labels},le="{b}"}} {c}.0' for b, c in zip(self.bounds, self.counts, strict=True)]
        out.append(f'{name}_bucket{{{labels},le="+Inf"}} {self.n}.0')
        out += [f"{name}_sum{{{labels}}} {self.total!r}", f"{name}_count{{{labels}}} {self.n}.0"]
        return out


@dataclass
class Metrics:
    running: int = 0
    waiting: int = 0
    prompt_tokens: int = 0
    generation_tokens: int = 0
    success: dict[str, int] = field(default_factory=lambda: {"length": 0, "stop": 0})
    errors: int = 0
    disconnects: int = 0
    aborted: int = 0
    prefix_queries: int = 0  # prompt tokens looked up in the prefix cache, and those found (vLLM's counters)
    prefix_hits: int = 0
    ttft: Histogram = field(default_factory=lambda: Histogram(TTFT_BUCKETS))
    itl: Histogram = field(default_factory=lambda: Histogram(ITL_BUCKETS))
    e2e: Histogram = field(default_factory=lambda: Histogram(LATENCY_BUCKETS))
    queue: Histogram = field(default_factory=lambda: Histogram(LATENCY_BUCKETS))

    def render(self, model: str) -> str:
        escaped = model.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")
        lab = f'model_name="{escaped}"'
        out: list[str] = []

        def metric(name: str, kind: str, doc: str, lines: list[str]) -> None:
            out.extend([f"# HELP {name} {doc}", f"# TYPE {name} {kind}", *lines])

        metric("vllm:num_requests_running", "gauge", "Number of requests in model execution batches.",
               [f"vllm:num_requests_running{{{lab}}} {self.running}.0"])
        metric("vllm:num_requests_waiting", "gauge", "Number of requests waiting to be processed.",
               [f"vllm:num_requests_waiting{{{lab}}} {self.waiting}.0"])
        metric("vllm:prompt_tokens", "counter", "Number of prefill tokens processed.",
               [f"vllm:prompt_tokens_total{{{lab}}} {self.prompt_tokens}.0"])
        metric("vllm:generation_tokens", "counter", "Number of generation tokens processed.",
               [f"vllm:generation_tokens_total{{{lab}}} {self.generation_tokens}.0"])
        metric("vllm:request_success", "counter", "Count of successfully processed requests.",
               [f'vllm:request_success_total{{finished_reason="{r}",{lab}}} {n}.0'
                for r, n in sorted(self.success.items())])
        metric("vllm:time_to_first_token_seconds", "histogram", "Histogram of time to first token in seconds.",
               self.ttft.lines("vllm:time_to_first_token_seconds", lab))
        metric("vllm:inter_token_latency_seconds", "histogram", "Histogram of inter-token latency in seconds.",
               self.itl.lines("vllm:inter_token_latency_seconds", lab))
        metric("vllm:e2e_request_latency_seconds", "histogram", "Histogram of e2e request latency in seconds.",
               self.e2e.lines("vllm:e2e_request_latency_seconds", lab))
        metric("vllm:request_queue_time_seconds", "histogram", "Histogram of time spent waiting in the queue.",
               self.queue.lines("vllm:request_queue_time_seconds", lab))
        metric("vllm:prefix_cache_queries", "counter", "Prefix cache queries, in terms of number of queried tokens.",
               [f"vllm:prefix_cache_queries_total{{{lab}}} {self.prefix_queries}.0"])
        metric("vllm:prefix_cache_hits", "counter", "Prefix cache hits, in terms of number of cached tokens.",
               [f"vllm:prefix_cache_hits_total{{{lab}}} {self.prefix_hits}.0"])
        metric("llmsim:injected_errors", "counter", "Requests answered HTTP 500 by --error-rate.",
               [f"llmsim:injected_errors_total{{{lab}}} {self.errors}.0"])
        metric("llmsim:injected_disconnects", "counter", "Streams cut by --disconnect-rate.",
               [f"llmsim:injected_disconnects_total{{{lab}}} {self.disconnects}.0"])
        metric("llmsim:client_aborts", "counter", "Streams the client closed before the end.",
               [f"llmsim:client_aborts_total{{{lab}}} {self.aborted}.0"])
        return "\n".join(out) + "\n"


class BadRequest(Exception):
    """A request the server rejects with HTTP 400 (or the given status)."""

    def __init__(self, message: str, status: int = 400) -> None:
        super().__init__(message)
        self.status = status


def count_words(value: Any) -> int:
    """Prompt tokens of a prompt / message content: whitespace-separated words (a list of ids: its length)."""
    if value is None:
        return 0
    if isinstance(value, str):
        return len(value.split())
    if isinstance(value, list):
        if value and all(isinstance(v, int) for v in value):
            return len(value)
        return sum(count_words(v) for v in value)
    if isinstance(value, dict):  # a content part {"type": "text", "text": ...}
        return count_words(value.get("text"))
    return 0


def count_messages(messages: Any) -> int:
    if not isinstance(messages, list):
        raise BadRequest("'messages' must be a list")
    return sum(count_words(m.get("content")) for m in messages if isinstance(m, dict))


def positive_int(body: dict[str, Any], key: str) -> int | None:
    value = body.get(key)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise BadRequest(f"'{key}' must be a whole number >= 1, got {value!r}")
    return value


@dataclass
class Plan:
    """One request's schedule: what it generates and when (seconds on the loop clock)."""

    arrival: float
    arrival_unix: float
    prompt_tokens: int
    output_tokens: int
    finish_reason: str
    fail: bool
    cut_after: int | None  # disconnect after this many chunks
    start: float = 0.0
    sent: list[float] = field(default_factory=list)
    pieces: list[str] | None = None  # a structured answer's text, one piece per token (None: the word stream)
    extra: dict[str, Any] = field(default_factory=dict)  # request facts for the truth (messages, cache hits, ...)
    prefill_ms: float = 0.0  # the uncached part of the prompt's prefill (--prefill-ms-per-1k)

    def token_due(self, cfg: SimConfig, i: int) -> float:
        return self.start + (cfg.ttft_ms + self.prefill_ms + i * cfg.itl_ms) / 1000.0

    def chunks(self, cfg: SimConfig) -> list[tuple[int, int]]:
        """(first token, end token) of each chunk."""
        k = cfg.tokens_per_chunk
        return [(i, min(i + k, self.output_tokens)) for i in range(0, self.output_tokens, k)]

    def truth(self, cfg: SimConfig) -> dict[str, Any]:
        def rel(t: float) -> float:
            return round((t - self.arrival) * 1000.0, 3)

        return {"arrival_unix": self.arrival_unix, "arrival_monotonic": round(self.arrival, 6),
                "queue_ms": rel(self.start),
                "scheduled_first_token_ms": rel(self.token_due(cfg, 0)),
                "scheduled_token_ms": [rel(self.token_due(cfg, i)) for i in range(self.output_tokens)],
                "chunk_sent_ms": [rel(t) for t in self.sent], "tokens_per_chunk": cfg.tokens_per_chunk,
                "ttft_ms": cfg.ttft_ms, "itl_ms": cfg.itl_ms, "prefill_ms": round(self.prefill_ms, 3), **self.extra}


class Disconnect(Exception):
    """The stream is to be cut here (``--disconnect-rate``)."""

