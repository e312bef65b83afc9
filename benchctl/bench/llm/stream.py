"""Streaming response parsers and per-request LLM metrics, with vLLM's metric names. The definitions are
benchctl's where they differ from vLLM's client on purpose (``vllm_format`` records vLLM's beside them):

- first token = the first chunk carrying content, reasoning or tool calls -- NOT chat's role-only chunk;
- TTFT = t_first - t_sent (and TTFT from the *scheduled* time, which keeps queueing in the client visible:
  no coordinated omission);
- TPOT = (t_last - t_first) / (n - 1) for n > 1 output tokens;
- ITL = the gaps between consecutive token-carrying chunks (chunk-weighted, as vLLM);
- E2EL = t_last - t_sent (the trailing usage chunk and [DONE] do not move it).
Output tokens come from the server (``usage.completion_tokens`` / Ollama ``eval_count``); the client's chunk
count is only a fallback, and ``token_source`` records which was used.

Chunks are timestamped when their bytes arrive and parsed afterwards (JSON parsing must not delay the clock).
SSE events may be split across reads or several may arrive in one read: the parser buffers by lines.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field
from typing import Any

import orjson


@dataclass
class RequestResult:
    """One request as the client saw it. Times are perf_counter seconds."""

    index: int
    scheduled: float
    sent: float = 0.0
    chunk_times: list[float] = field(default_factory=list)  # arrival of each token-carrying chunk
    choice_times: list[float] = field(default_factory=list)  # arrival of every chunk with choices (vLLM's clock)
    end: float = 0.0
    prompt_tokens: int | None = None
    output_tokens: int | None = None
    client_chunks: int = 0
    token_source: str = ""
    ok: bool = False
    error: str = ""
    error_type: str = ""
    http_status: int = 0
    done: bool = False  # the stream ended properly ([DONE] / Ollama's done object)
    server_truth: dict[str, Any] | None = None
    server_timing: dict[str, float] | None = None  # the server's own per-request durations (Ollama), ms
    # Workloads (``bench.llm.workloads``): the answer's text is kept only when a workload reads it (a chat's
    # history, a structured output's validation) -- joining every chunk of every request would cost the client.
    keep_text: bool = False
    text: str = ""
    valid: bool | None = None  # structured output: the answer met its constraint (None: not checked)
    constraint: str = ""  # structured output: json / regex / choice / grammar ("" = a free request)
    conversation: int | None = None  # chat: which conversation, and its turn (1-based)
    turn: int = 0

    @property
    def ttft(self) -> float | None:
        return self.chunk_times[0] - self.sent if self.chunk_times else None

    @property
    def ttft_scheduled(self) -> float | None:
        return self.chunk_times[0] - self.scheduled if self.chunk_times else None

    @property
    def e2el(self) -> float | None:
        return self.chunk_times[-1] - self.sent if self.chunk_times else None

    @property
    def tokens(self) -> int:
        return self.output_tokens if self.output_tokens is not None else self.client_chunks

    @property
    def tpot(self) -> float | None:
        n = self.tokens
        if n <= 1 or len(self.chunk_times) < 2:
            return None
        return (self.chunk_times[-1] - self.chunk_times[0]) / (n - 1)

    @property
    def itl(self) -> list[float]:
        return [b - a for a, b in itertools.pairwise(self.chunk_times)]

    def finish(self) -> None:
        """Decide ok/error and where the token count came from, once the stream has ended."""
        if self.output_tokens is not None:
            self.token_source = "server"
        else:
            self.token_source = "client"
        if self.error:
            self.ok = False
        elif not self.done:
            self.ok, self.error, self.error_type = False, "stream ended early", "incomplete_stream"
        elif self.tokens == 0 or not self.chunk_times:
            self.ok, self.error, self.error_type = False, "no output tokens", "zero_tokens"
        else:
            self.ok = True

    def to_record(self, t0: float) -> dict[str, Any]:
        def ms(x: float | None) -> float | None:
            return None if x is None else round(x * 1000, 3)

        return {"i": self.index, "scheduled_ms": ms(self.scheduled - t0), "sent_ms": ms(self.sent - t0),
                "ok": self.ok, "error": self.error or None, "error_type": self.error_type or None,
                "http_status": self.http_status, "ttft_ms": ms(self.ttft), "ttft_scheduled_ms": ms(self.ttft_scheduled),
                "tpot_ms": ms(self.tpot), "e2el_ms": ms(self.e2el), "prompt_tokens": self.prompt_tokens,
                "output_tokens": self.tokens, "token_source": self.token_source, "chunks": len(self.chunk_times),
                **({"server_timing": self.server_timing} if self.server_timing else {}), **self.workload_fields()}

    def workload_fields(self) -> dict[str, Any]:
        """The workload's per-request facts, only those it set (a default run's records stay as they were)."""
        out: dict[str, Any] = {}
        if self.constraint:
            out.update(constraint=self.constraint, valid=self.valid)
        if self.conversation is not None:
            out.update(conversation=self.conversation, turn=self.turn)
            received = (self.server_truth or {}).get("messages")
            if isinstance(received, list):  # llm-sim's truth: the history it received, e.g. "u6 a5 u6"
                out["server_history"] = " ".join(f"{str(m.get('role'))[:1]}{m.get('words')}" for m in received
                                                 if isinstance(m, dict))
        return out


def _has_token(choice: dict[str, Any]) -> bool:
    delta = choice.get("delta")
    if isinstance(delta, dict):
        return bool(delta.get("content") or delta.get("reasoning_content") or delta.get("reasoning")
                    or delta.get("tool_calls"))
    return bool(choice.get("text"))


def _content(choice: dict[str, Any]) -> str:
    """The answer text a chunk carries (chat's delta content, or completions' text); reasoning is not answer."""
    delta = choice.get("delta")
    value = delta.get("content") if isinstance(delta, dict) else choice.get("text")
    return value if isinstance(value, str) else ""


class _LineStream:
    """Buffers a byte stream into lines, stamping each with the arrival time of the read that completed it."""

    def __init__(self, result: RequestResult) -> None:
        self.result = result
        self.buffer = b""
        self.pending: list[tuple[float, bytes]] = []

    def keep(self, line: bytes) -> bytes | None:
        """The payload of a line worth parsing (None to skip it)."""
        return line.strip() or None

    def feed(self, data: bytes, t: float) -> None:
        """Record the arrival time now; split lines (an event may span reads, a read may hold many)."""
        self.buffer += data
        *lines, self.buffer = self.buffer.split(b"\n")
        for line in lines:
            payload = self.keep(line)
            if payload is not None:
                self.pending.append((t, payload))

    def flush(self) -> None:
        """A last line without its newline counts too (stamped with the end of the stream)."""
        payload = self.keep(self.buffer)
        if payload is not None:
            self.pending.append((self.result.end, payload))
        self.buffer = b""


class OpenAIStream(_LineStream):
    """SSE from /v1/completions or /v1/chat/completions."""

    def keep(self, line: bytes) -> bytes | None:
        line = line.strip()
        return line[5:].strip() if line.startswith(b"data:") else None

    def parse(self) -> None:
        """Parse what was received (called after the stream, off the timing path)."""
        r = self.result
        self.flush()
        pieces: list[str] = []
        for t, payload in self.pending:
            if payload == b"[DONE]":
                r.done = True
                continue
            try:
                event = orjson.loads(payload)
            except orjson.JSONDecodeError:
                r.error, r.error_type = f"bad SSE payload: {payload[:80]!r}", "bad_payload"
                continue
            if not isinstance(event, dict):
                continue
            if "error" in event:
                err = event["error"]
                r.error = str(err.get("message", err) if isinstance(err, dict) else err)[:300]
                r.error_type = "stream_error"
                continue
            choices = event.get("choices") or []
            if choices:
                r.choice_times.append(t)
            if any(isinstance(c, dict) and _has_token(c) for c in choices):
                r.chunk_times.append(t)
                r.client_chunks += 1
                if r.keep_text:
                    pieces.extend(_content(c) for c in choices if isinstance(c, dict))
            usage = event.get("usage")
            if isinstance(usage, dict) and usage.get("completion_tokens") is not None:
                r.output_tokens = int(usage["completion_tokens"])
                if usage.get("prompt_tokens") is not None:
                    r.prompt_tokens = int(usage["prompt_tokens"])
            if isinstance(event.get("llmsim"), dict):
                r.server_truth = event["llmsim"]
        if r.keep_text:
            r.text = "".join(pieces)
        self.pending.clear()


class OllamaStream(_LineStream):
    """NDJSON from /api/generate or /api/chat."""

    def parse(self) -> None:
        r = self.result
        self.flush()
        pieces: list[str] = []
        for t, line in self.pending:
            try:
                obj = orjson.loads(line)
            except orjson.JSONDecodeError:
                r.error, r.error_type = f"bad NDJSON line: {line[:80]!r}", "bad_payload"
                continue
            if not isinstance(obj, dict):
                continue
            if obj.get("error"):
                r.error, r.error_type = str(obj["error"])[:300], "stream_error"
                continue
            message = obj.get("message")
            text = message.get("content") if isinstance(message, dict) else obj.get("response")
            thinking = (message.get("thinking") if isinstance(message, dict) else obj.get("thinking"))
            if text or thinking or (isinstance(message, dict) and message.get("tool_calls")):
                r.chunk_times.append(t)
                r.client_chunks += 1
                if r.keep_text and isinstance(text, str):
                    pieces.append(text)
            if obj.get("done"):
                r.done = True
                if obj.get("eval_count") is not None:
                    r.output_tokens = int(obj["eval_count"])
                if obj.get("prompt_eval_count") is not None:
                    r.prompt_tokens = int(obj["prompt_eval_count"])
                # Ollama's own timing (ns): model load, prompt evaluation (prefill), generation, whole request.
                timing = {key[:-9] + "_ms": obj[key] / 1e6 for key in OLLAMA_DURATIONS
                          if isinstance(obj.get(key), (int, float))}
                if timing:
                    r.server_timing = timing
                if isinstance(obj.get("llmsim"), dict):
                    r.server_truth = obj["llmsim"]
        if r.keep_text:
            r.text = "".join(pieces)
        self.pending.clear()


OLLAMA_DURATIONS = ("load_duration", "prompt_eval_duration", "eval_duration", "total_duration")
