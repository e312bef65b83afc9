"""llm-sim: a simulated LLM server with exact, known timing -- the ground truth for LLM benchmark clients.

Run it as ``python -m benchctl.llmsim --host H --port P [settings]`` (aiohttp, one process, one event loop).

It speaks the wire protocols benchmark clients use, as vLLM's and Ollama's servers do:

* OpenAI (vLLM flavour): ``POST /v1/completions``, ``POST /v1/chat/completions`` (``stream`` true/false;
  SSE ``data: {...}`` events and ``data: [DONE]``; chat's first chunk is role-only
  ``{"delta": {"role": "assistant", "content": ""}}``; ``stream_options.include_usage`` adds a final chunk with
  ``choices: []`` and ``usage``; ``continuous_usage_stats`` puts usage on every chunk), ``GET /v1/models``,
  ``GET /health``.
* Ollama: ``POST /api/generate``, ``POST /api/chat`` (NDJSON; final object ``done: true`` with ``eval_count``,
  ``prompt_eval_count`` and ``*_duration`` in nanoseconds), ``GET /api/tags``.
* Prometheus ``GET /metrics`` with vLLM's names (``vllm:num_requests_running``, ``vllm:num_requests_waiting``,
  ``vllm:prompt_tokens_total``, ``vllm:generation_tokens_total``, ``vllm:request_success_total``,
  ``vllm:time_to_first_token_seconds`` ...) plus ``llmsim:*`` counters for injected faults.

Model of a request:

* **Tokens.** Prompt tokens = whitespace-separated words of the prompt (chat: of every message's text);
  a list of token ids counts its length. Output tokens = the request's ``max_tokens`` /
  ``max_completion_tokens`` (Ollama: ``options.num_predict``) when given -- finish reason ``length`` --,
  else ``--output-tokens`` raised to ``min_tokens`` -- finish reason ``stop`` (a simulated EOS). The
  simulator never stops early, so ``ignore_eos`` is accepted and always satisfied. Each token is one word.
* **Queueing.** At most ``--max-concurrency`` sequences are served at once; the others wait (FIFO) and are
  counted in ``vllm:num_requests_waiting``. A request's sequence starts when it gets a slot.
* **Timing.** Token ``i`` (0-based) is due at ``start + ttft + i * itl``, absolute deadlines on the event
  loop's monotonic clock, so a late wake-up never delays the tokens after it. With ``--tokens-per-chunk K``
  a chunk goes out when its last token is due (tokens ``0..K-1`` at ``start + ttft + (K-1) * itl``).
  Chat's role-only chunk goes out together with the first content chunk (as in vLLM, it follows prefill).
* **Faults.** ``--error-rate`` answers HTTP 500 on arrival, before anything is streamed;
  ``--disconnect-rate`` closes the connection after a random number (>= 1) of chunks, before the end of
  the stream (no ``[DONE]``, no final object; the HTTP chunked body is cut). Both draw from ``--seed``.
* **Truth.** The final usage chunk (``include_usage``), the non-streamed response and Ollama's final object
  carry an extra ``llmsim`` object: arrival time (Unix s, and ``arrival_monotonic`` on CLOCK_MONOTONIC, which
  a client on the same host can compare with its own ``time.perf_counter()``), queue time, the scheduled
  first-token time and every token's scheduled time, and the chunks' actual send times, all in ms relative
  to arrival. Arrival is stamped when the request's first bytes reach the process (``data_received``, before
  aiohttp parses them), a send time when the chunk has been handed to the kernel: the server's own work,
  queueing included, is inside the truth, not outside it.
* **Clock.** Every stamp and deadline uses ``time.monotonic()``, not ``loop.time()``: uvloop's loop clock is
  cached per iteration with millisecond resolution.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import signal
import socket
import threading
import time
import uuid
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import IO, Any

import orjson
from aiohttp import web

from benchctl import aio

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

    def __post_init__(self) -> None:
        if self.ttft_ms < 0 or self.itl_ms < 0:
            raise ValueError("ttft and itl must be >= 0")
        if self.output_tokens < 1 or self.tokens_per_chunk < 1 or self.max_concurrency < 1:
            raise ValueError("output tokens, tokens per chunk and max concurrency must be >= 1")
        if not (0.0 <= self.error_rate <= 1.0 and 0.0 <= self.disconnect_rate <= 1.0):
            raise ValueError("error and disconnect rates must be within [0, 1]")


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

    def token_due(self, cfg: SimConfig, i: int) -> float:
        return self.start + (cfg.ttft_ms + i * cfg.itl_ms) / 1000.0

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
                "ttft_ms": cfg.ttft_ms, "itl_ms": cfg.itl_ms}


class Disconnect(Exception):
    """The stream is to be cut here (``--disconnect-rate``)."""


class _Arrivals(web.RequestHandler):
    """aiohttp's per-connection protocol, plus the moment a request's first bytes reached this process
    (``data_received``, before aiohttp parses them): the arrival the truth is measured from. A busy server
    parses and starts the handler a few ms later; that delay is the server's, not the client's."""

    arrived: float | None = None

    def data_received(self, data: bytes) -> None:
        if self.arrived is None:
            self.arrived = CLOCK()
        super().data_received(data)


class _StampingServer(web.Server):
    def __call__(self) -> web.RequestHandler:
        # web.Server.__call__ builds a RequestHandler from these same (private) fields.
        return _Arrivals(self, loop=self._loop, **self._kwargs)


def arrival_of(request: web.BaseRequest) -> float:
    """When the request's bytes arrived (see _Arrivals); the stamp is consumed so the next request on this
    keep-alive connection gets its own. Called once the whole body has been read (else its last bytes would
    stamp the next request too early)."""
    proto = request.protocol
    stamp = getattr(proto, "arrived", None)
    if isinstance(proto, _Arrivals):
        proto.arrived = None
    return stamp if stamp is not None else CLOCK()


class Simulator:
    def __init__(self, cfg: SimConfig) -> None:
        self.cfg = cfg
        self.metrics = Metrics()
        self.rng = random.Random(cfg.seed)
        self.slots: asyncio.Semaphore | None = None  # created on the serving loop
        self.created = int(time.time())
        self._truth_log: IO[str] | None = None

    def truth(self, plan: Plan, rid: str) -> dict[str, Any]:
        """The request's truth, for its final chunk and (with --truth-log) the log a client is compared to."""
        truth = plan.truth(self.cfg)
        if self.cfg.truth_log:
            if self._truth_log is None:
                self._truth_log = open(self.cfg.truth_log, "a", buffering=1, encoding="utf-8")  # noqa: SIM115
            self._truth_log.write(json.dumps({"id": rid, "llmsim": truth}, separators=(",", ":")) + "\n")
        return truth

    # ---- app -------------------------------------------------------------------------------------
    def routes(self) -> dict[tuple[str, str], Callable[[web.BaseRequest, float], Awaitable[web.StreamResponse]]]:
        return {("GET", "/health"): self.health, ("GET", "/v1/models"): self.models,
                ("GET", "/metrics"): self.prometheus, ("GET", "/api/tags"): self.tags,
                ("GET", "/api/version"): self.version, ("POST", "/v1/completions"): self.completions,
                ("POST", "/v1/chat/completions"): self.chat_completions,
                ("POST", "/api/generate"): self.ollama_generate, ("POST", "/api/chat"): self.ollama_chat}

    def server(self) -> web.Server:
        """aiohttp's low-level server (no Application: routing is one dict lookup) with arrival stamps."""
        routes = self.routes()
        paths = {path for _, path in routes}

        async def dispatch(request: web.BaseRequest) -> web.StreamResponse:
            await request.read()  # the whole request is here: its arrival stamp is taken, and consumed
            arrival = arrival_of(request)
            handler = routes.get((request.method, request.path))
            if handler is None:
                status = 405 if request.path in paths else 404
                return web.json_response({"error": f"{request.method} {request.path}: not here"}, status=status)
            return await handler(request, arrival)

        return _StampingServer(dispatch, access_log=None)

    async def health(self, request: web.BaseRequest, arrival: float) -> web.Response:
        return web.Response(status=200)

    async def version(self, request: web.BaseRequest, arrival: float) -> web.Response:
        return web.json_response({"version": "0.0.0-llmsim"})

    async def models(self, request: web.BaseRequest, arrival: float) -> web.Response:
        return web.json_response({"object": "list", "data": [
            {"id": self.cfg.model, "object": "model", "created": self.created, "owned_by": "llmsim",
             "root": self.cfg.model, "parent": None, "max_model_len": None}]})

    def ollama_name(self) -> str:
        name = self.cfg.model
        return name if ":" in name.rsplit("/", 1)[-1] else f"{name}:latest"

    async def tags(self, request: web.BaseRequest, arrival: float) -> web.Response:
        name = self.ollama_name()
        return web.json_response({"models": [
            {"name": name, "model": name, "modified_at": "1970-01-01T00:00:00Z", "size": 0,
             "digest": "0" * 64, "details": {"format": "llmsim", "family": "llmsim", "parameter_size": "0",
                                             "quantization_level": "none"}}]})

    async def prometheus(self, request: web.BaseRequest, arrival: float) -> web.Response:
        return web.Response(text=self.metrics.render(self.cfg.model), content_type="text/plain",
                            charset="utf-8", headers={"X-Content-Type-Options": "nosniff"})

    # ---- common request handling -------------------------------------------------------------------
    async def read_body(self, request: web.BaseRequest) -> dict[str, Any]:
        try:
            body = await request.json()
        except ValueError:
            raise BadRequest("the body is not valid JSON") from None
        if not isinstance(body, dict):
            raise BadRequest("the body must be a JSON object")
        model = body.get("model")
        if model not in (None, "", self.cfg.model, self.ollama_name()):
            raise BadRequest(f"The model `{model}` does not exist.", status=404)
        return body

    def plan(self, arrival: float, prompt_tokens: int, max_tokens: int | None, min_tokens: int | None) -> Plan:
        if max_tokens is not None and min_tokens is not None and min_tokens > max_tokens:
            raise BadRequest(f"min_tokens ({min_tokens}) must be <= max_tokens ({max_tokens})")
        if max_tokens is not None:
            n, reason = max_tokens, "length"
        else:
            n, reason = max(self.cfg.output_tokens, min_tokens or 0), "stop"
        fail = self.rng.random() < self.cfg.error_rate
        n_chunks = -(-n // self.cfg.tokens_per_chunk)
        cut = None
        if not fail and self.rng.random() < self.cfg.disconnect_rate:
            cut = self.rng.randint(1, max(1, n_chunks - 1)) if n_chunks > 1 else 1
        return Plan(arrival=arrival, arrival_unix=time.time() - (CLOCK() - arrival), prompt_tokens=prompt_tokens,
                    output_tokens=n, finish_reason=reason, fail=fail, cut_after=cut)

    def injected_error(self) -> web.Response:
        self.metrics.errors += 1
        return web.json_response({"object": "error", "message": "llmsim: injected error (--error-rate)",
                                  "type": "InternalServerError", "param": None, "code": 500}, status=500)

    def text(self, i: int) -> str:
        return " " + WORDS[i % len(WORDS)]

    async def generate(self, plan: Plan, emit: Any) -> bool:
        """Wait for a slot, then call ``await emit(first, end)`` for every chunk at its deadline.

        Returns False when the client went away. Raises Disconnect when the stream is to be cut.
        """
        cfg, m = self.cfg, self.metrics
        if self.slots is None:
            self.slots = asyncio.Semaphore(cfg.max_concurrency)
        m.waiting += 1
        try:
            await self.slots.acquire()
        finally:
            m.waiting -= 1
        m.running += 1
        m.prompt_tokens += plan.prompt_tokens
        plan.start = CLOCK()
        m.queue.observe(plan.start - plan.arrival)
        try:
            previous = None
            for index, (first, end) in enumerate(plan.chunks(cfg)):
                due = plan.token_due(cfg, end - 1)
                delay = due - CLOCK()
                if delay > 0:
                    await asyncio.sleep(delay)
                if plan.cut_after is not None and index >= plan.cut_after:
                    m.disconnects += 1
                    raise Disconnect
                try:
                    await emit(first, end)
                except (ConnectionError, RuntimeError):
                    m.aborted += 1
                    return False
                now = CLOCK()  # handed to the kernel
                plan.sent.append(now)
                m.generation_tokens += end - first
                if previous is None:
                    m.ttft.observe(now - plan.arrival)
                else:
                    m.itl.observe(now - previous)
                previous = now
            if plan.cut_after is not None:  # one-chunk stream: cut after its only chunk
                m.disconnects += 1
                raise Disconnect
        finally:
            m.running -= 1
            self.slots.release()
        m.success[plan.finish_reason] = m.success.get(plan.finish_reason, 0) + 1
        m.e2e.observe(CLOCK() - plan.arrival)
        return True

    @staticmethod
    def cut(request: web.BaseRequest, resp: web.StreamResponse) -> web.StreamResponse:
        """Close the connection mid-body: the client sees the chunked body end without its terminator."""
        if request.transport is not None:
            request.transport.close()
        resp.force_close()
        return resp

    # ---- OpenAI ----------------------------------------------------------------------------------
    async def completions(self, request: web.BaseRequest, arrival: float) -> web.StreamResponse:
        return await self.openai(request, arrival, chat=False)

    async def chat_completions(self, request: web.BaseRequest, arrival: float) -> web.StreamResponse:
        return await self.openai(request, arrival, chat=True)

    async def openai(self, request: web.BaseRequest, arrival: float, *, chat: bool) -> web.StreamResponse:
        try:
            body = await self.read_body(request)
            if chat:
                prompt_tokens = count_messages(body.get("messages"))
                max_tokens = positive_int(body, "max_completion_tokens") or positive_int(body, "max_tokens")
            else:
                if "prompt" not in body:
                    raise BadRequest("'prompt' is required")
                prompt_tokens = count_words(body.get("prompt"))
                max_tokens = positive_int(body, "max_tokens")
            plan = self.plan(arrival, prompt_tokens, max_tokens, positive_int(body, "min_tokens"))
        except BadRequest as exc:
            return web.json_response({"object": "error", "message": str(exc), "type": "BadRequestError",
                                      "param": None, "code": exc.status}, status=exc.status)
        if plan.fail:
            return self.injected_error()
        cfg = self.cfg
        rid = ("chatcmpl-" if chat else "cmpl-") + uuid.uuid4().hex
        created = int(plan.arrival_unix)
        obj = "chat.completion.chunk" if chat else "text_completion"

        def usage(completion: int) -> dict[str, int]:
            return {"prompt_tokens": plan.prompt_tokens, "completion_tokens": completion,
                    "total_tokens": plan.prompt_tokens + completion}

        if not body.get("stream"):
            pieces: list[str] = []

            async def collect(first: int, end: int) -> None:
                pieces.extend(self.text(i) for i in range(first, end))

            try:
                await self.generate(plan, collect)
            except Disconnect:
                return self.cut(request, web.StreamResponse())
            text = "".join(pieces)
            choice: dict[str, Any] = {"index": 0, "logprobs": None, "finish_reason": plan.finish_reason,
                                      "stop_reason": None}
            if chat:
                choice["message"] = {"role": "assistant", "content": text}
            else:
                choice["text"] = text
            return web.json_response({"id": rid, "object": "chat.completion" if chat else "text_completion",
                                      "created": created, "model": cfg.model, "choices": [choice],
                                      "usage": usage(plan.output_tokens), "llmsim": self.truth(plan, rid)})

        opts = body.get("stream_options") or {}
        include_usage = bool(opts.get("include_usage")) if isinstance(opts, dict) else False
        continuous = include_usage and bool(opts.get("continuous_usage_stats"))
        resp = web.StreamResponse(headers={"Content-Type": "text/event-stream; charset=utf-8",
                                           "Cache-Control": "no-cache"})
        await resp.prepare(request)

        def event(payload: dict[str, Any]) -> bytes:
            return b"data: " + orjson.dumps(payload) + b"\n\n"

        def chunk(choice: dict[str, Any], done_tokens: int) -> bytes:
            payload: dict[str, Any] = {"id": rid, "object": obj, "created": created, "model": cfg.model,
                                       "choices": [choice]}
            if include_usage:
                payload["usage"] = usage(done_tokens) if continuous else None
            return event(payload)

        async def emit(first: int, end: int) -> None:
            text = "".join(self.text(i) for i in range(first, end))
            reason = plan.finish_reason if end == plan.output_tokens else None
            data = b""
            if chat:
                if first == 0:
                    data += chunk({"index": 0, "delta": {"role": "assistant", "content": ""}, "logprobs": None,
                                   "finish_reason": None}, 0)
                data += chunk({"index": 0, "delta": {"content": text}, "logprobs": None, "finish_reason": reason},
                              end)
            else:
                data += chunk({"index": 0, "text": text, "logprobs": None, "finish_reason": reason,
                               "stop_reason": None}, end)
            await resp.write(data)

        try:
            if not await self.generate(plan, emit):
                return resp
        except Disconnect:
            return self.cut(request, resp)
        try:
            if include_usage:
                await resp.write(event({"id": rid, "object": obj, "created": created, "model": cfg.model,
                                        "choices": [], "usage": usage(plan.output_tokens),
                                        "llmsim": self.truth(plan, rid)}))
            await resp.write(b"data: [DONE]\n\n")
            await resp.write_eof()
        except (ConnectionError, RuntimeError):
            self.metrics.aborted += 1
        return resp

    # ---- Ollama ----------------------------------------------------------------------------------
    async def ollama_generate(self, request: web.BaseRequest, arrival: float) -> web.StreamResponse:
        return await self.ollama(request, arrival, chat=False)

    async def ollama_chat(self, request: web.BaseRequest, arrival: float) -> web.StreamResponse:
        return await self.ollama(request, arrival, chat=True)

    async def ollama(self, request: web.BaseRequest, arrival: float, *, chat: bool) -> web.StreamResponse:
        try:
            body = await self.read_body(request)
            prompt_tokens = count_messages(body.get("messages")) if chat else count_words(body.get("prompt"))
            options = body.get("options") or {}
            num_predict = options.get("num_predict") if isinstance(options, dict) else None
            max_tokens = positive_int({"num_predict": num_predict}, "num_predict") if num_predict not in (
                None, -1, -2) else None
            plan = self.plan(arrival, prompt_tokens, max_tokens, None)
        except BadRequest as exc:
            return web.json_response({"error": str(exc)}, status=exc.status)
        if plan.fail:
            self.metrics.errors += 1
            return web.json_response({"error": "llmsim: injected error (--error-rate)"}, status=500)
        name = self.ollama_name()

        def stamp() -> str:
            now = time.time()
            return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(now)) + f".{int(now % 1 * 1e6):06d}Z"

        def piece(text: str, done: bool) -> dict[str, Any]:
            obj: dict[str, Any] = {"model": name, "created_at": stamp()}
            if chat:
                obj["message"] = {"role": "assistant", "content": text}
            else:
                obj["response"] = text
            obj["done"] = done
            return obj

        def final(text: str) -> dict[str, Any]:
            loop_now = asyncio.get_running_loop().time()
            first = plan.sent[0] if plan.sent else plan.start
            last = plan.sent[-1] if plan.sent else plan.start
            obj = piece(text, True)
            obj.update({"done_reason": plan.finish_reason,
                        "total_duration": int((loop_now - plan.arrival) * 1e9), "load_duration": 0,
                        "prompt_eval_count": plan.prompt_tokens,
                        "prompt_eval_duration": int((first - plan.start) * 1e9),
                        "eval_count": plan.output_tokens, "eval_duration": int((last - first) * 1e9),
                        "llmsim": self.truth(plan, "")})
            if not chat:
                obj["context"] = []
            return obj

        if body.get("stream") is False:
            pieces: list[str] = []

            async def collect(first: int, end: int) -> None:
                pieces.extend(self.text(i) for i in range(first, end))

            try:
                await self.generate(plan, collect)
            except Disconnect:
                return self.cut(request, web.StreamResponse())
            return web.json_response(final("".join(pieces)))

        resp = web.StreamResponse(headers={"Content-Type": "application/x-ndjson"})
        await resp.prepare(request)

        async def emit(first: int, end: int) -> None:
            text = "".join(self.text(i) for i in range(first, end))
            await resp.write(orjson.dumps(piece(text, False)) + b"\n")

        try:
            if not await self.generate(plan, emit):
                return resp
        except Disconnect:
            return self.cut(request, resp)
        try:
            await resp.write(orjson.dumps(final("")) + b"\n")
            await resp.write_eof()
        except (ConnectionError, RuntimeError):
            self.metrics.aborted += 1
        return resp


# ---- running it ------------------------------------------------------------------------------------


class ServerThread:
    """The simulator on a free port of ``host`` in a background thread (tests, client self-checks)."""

    def __init__(self, cfg: SimConfig, host: str = "127.0.0.1") -> None:
        self.sim = Simulator(cfg)
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind((host, 0))
        self.host, self.port = host, int(self.sock.getsockname()[1])
        self.loop = asyncio.new_event_loop()
        self.runner: web.ServerRunner | None = None
        self.thread = threading.Thread(target=self.loop.run_forever, name="llmsim", daemon=True)

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    async def _start(self) -> None:
        self.runner = web.ServerRunner(self.sim.server())
        await self.runner.setup()
        await web.SockSite(self.runner, self.sock).start()

    def start(self) -> ServerThread:
        self.thread.start()
        asyncio.run_coroutine_threadsafe(self._start(), self.loop).result(10)
        return self

    def stop(self) -> None:
        if self.runner is not None:
            asyncio.run_coroutine_threadsafe(self.runner.cleanup(), self.loop).result(10)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)
        self.loop.close()


@contextmanager
def running(cfg: SimConfig, host: str = "127.0.0.1") -> Iterator[ServerThread]:
    server = ServerThread(cfg, host).start()
    try:
        yield server
    finally:
        server.stop()


def rate(text: str) -> float:
    value = float(text)
    if not 0.0 <= value <= 1.0:
        raise argparse.ArgumentTypeError(f"expected a fraction in [0, 1], got {text}")
    return value


def parse_args(argv: list[str] | None = None) -> tuple[argparse.Namespace, SimConfig]:
    p = argparse.ArgumentParser(prog="python -m benchctl.llmsim", description=__doc__.split("\n\n")[0])
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=8000)
    p.add_argument("--model", default="sim", help="served model name (default: sim)")
    p.add_argument("--ttft-ms", type=float, default=50.0, help="time to first token after a slot is free (ms)")
    p.add_argument("--itl-ms", type=float, default=10.0, help="time between consecutive tokens (ms)")
    p.add_argument("--output-tokens", type=int, default=128, help="output length when a request sets no max")
    p.add_argument("--tokens-per-chunk", type=int, default=1, help="tokens per streamed chunk")
    p.add_argument("--max-concurrency", type=int, default=256, help="sequences served at once; others queue")
    p.add_argument("--error-rate", type=rate, default=0.0, help="fraction of requests answered HTTP 500")
    p.add_argument("--disconnect-rate", type=rate, default=0.0, help="fraction of streams cut mid-way")
    p.add_argument("--seed", type=int, default=None, help="seed of the fault draws")
    p.add_argument("--truth-log", default="", metavar="FILE",
                   help="append each finished request's truth (id + llmsim object) to this JSONL file")
    args = p.parse_args(argv)
    try:
        cfg = SimConfig(model=args.model, ttft_ms=args.ttft_ms, itl_ms=args.itl_ms, output_tokens=args.output_tokens,
                        tokens_per_chunk=args.tokens_per_chunk, max_concurrency=args.max_concurrency,
                        error_rate=args.error_rate, disconnect_rate=args.disconnect_rate, seed=args.seed,
                        truth_log=args.truth_log)
    except ValueError as exc:
        p.error(str(exc))
    return args, cfg


async def serve(cfg: SimConfig, host: str, port: int) -> None:
    """Serve until SIGTERM or SIGINT, then close the listener and end (exit status 0)."""
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    runner = web.ServerRunner(Simulator(cfg).server(), shutdown_timeout=5.0)
    await runner.setup()
    await web.TCPSite(runner, host, port).start()
    print(f"llmsim: serving {cfg.model} on http://{host}:{port}", flush=True)
    try:
        await stop.wait()
    finally:
        await runner.cleanup()


def main(argv: list[str] | None = None) -> None:
    args, cfg = parse_args(argv)
    print("llmsim: settings " + ", ".join(f"{k}={v}" for k, v in vars(cfg).items()), flush=True)
    aio.run(serve(cfg, args.host, args.port))
    print("llmsim: stopped", flush=True)


if __name__ == "__main__":
    main()
