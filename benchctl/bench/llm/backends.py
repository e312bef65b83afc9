"""LLM wire protocols: one ``Backend`` record per API, in one registry (``BACKENDS``).

A backend says where a streaming request goes, how its body is built (including how to force an exact
output length), which stream parser reads the answer, whether it is a chat API, whether the server may
have vLLM's ``/tokenize`` to size prompts with, and which family of ``/metrics`` its servers expose.
``--backend`` choices, the load generator, the prompt sizer and the LLM servers' defaults all read this
table; a new protocol is one ``Backend`` registered here (or by a plug-in through ``BACKENDS.register``).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

from benchctl.bench.llm.stream import OllamaStream, OpenAIStream, RequestResult
from benchctl.registry import Registry

Messages = tuple[tuple[str, str], ...]  # (role, content); a plain prompt is one ("user", text)


class StreamParser(Protocol):
    """Reads one streamed answer: ``feed`` stamps bytes on arrival, ``parse`` runs after the stream ended."""

    def feed(self, data: bytes, t: float) -> None: ...

    def parse(self) -> None: ...


@dataclass(frozen=True)
class Backend:
    name: str
    summary: str
    path: str
    chat: bool
    # (model, messages, output tokens, exact) -> JSON body of a streaming request
    body: Callable[[str, Messages, int, bool], dict[str, Any]]
    parser: Callable[[RequestResult], StreamParser]
    tokenize: bool = False  # the server may answer vLLM's POST /tokenize (prompts sized by its tokenizer)
    # The family of the servers' Prometheus /metrics (``bench.timeline.FAMILIES``), sampled during a run;
    # '' = they have none (Ollama), so nothing is sampled and nothing said.
    metrics: str = ""


def _text(messages: Messages) -> str:
    return "\n".join(content for _, content in messages)


def _chat(messages: Messages) -> list[dict[str, str]]:
    return [{"role": role, "content": content} for role, content in messages]


def _force(out: int, exact: bool) -> dict[str, Any]:
    # vLLM's sampling extras: exactly `out` tokens (no early end of sequence).
    return {"min_tokens": out, "ignore_eos": True} if exact else {}


_STREAM = {"stream": True, "stream_options": {"include_usage": True}}

BACKENDS: Registry[Backend] = Registry("LLM backend", (
    Backend("openai", "OpenAI completions (/v1/completions)", "/v1/completions", False,
            lambda model, msgs, out, exact: {"model": model, "prompt": _text(msgs), "max_tokens": out,
                                             **_force(out, exact), **_STREAM},
            OpenAIStream, tokenize=True, metrics="vllm"),
    Backend("openai-chat", "OpenAI chat completions (/v1/chat/completions)", "/v1/chat/completions", True,
            lambda model, msgs, out, exact: {"model": model, "messages": _chat(msgs), "max_completion_tokens": out,
                                             **_force(out, exact), **_STREAM},
            OpenAIStream, tokenize=True, metrics="vllm"),
    Backend("ollama", "Ollama generate (/api/generate)", "/api/generate", False,
            lambda model, msgs, out, exact: {"model": model, "prompt": _text(msgs), "stream": True,
                                             "options": {"num_predict": out}},
            OllamaStream),
    Backend("ollama-chat", "Ollama chat (/api/chat)", "/api/chat", True,
            lambda model, msgs, out, exact: {"model": model, "messages": _chat(msgs), "stream": True,
                                             "options": {"num_predict": out}},
            OllamaStream),
), key=lambda b: b.name)


__all__ = ["BACKENDS", "Backend", "Messages", "StreamParser"]
