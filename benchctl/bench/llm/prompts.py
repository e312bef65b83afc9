"""What the LLM benchmark sends: synthetic prompts sized in tokens, or prompts from a JSONL / ShareGPT file.

Synthetic prompts carry a unique prefix per request (``req17 …``) so a prefix cache cannot answer them, and
ask for exactly ``--output-tokens`` (``max_tokens`` = ``min_tokens`` + ``ignore_eos`` where the server knows
them, ``num_predict`` for Ollama). Words are not tokens: when the server has vLLM's ``POST /tokenize``,
:func:`calibrate` sizes the prompt with the *server's own* tokenizer (chat template included for chat), so
``--input-tokens 128`` means 128 prompt tokens on that model; elsewhere one word stands for one token and
the server's ``usage`` reports what it really counted (recorded per request either way).

Prompt files (``--prompts FILE``), one prompt per entry, cycled when the run needs more:
  * JSONL: ``{"prompt": "…"}``, ``{"text": "…"}`` or ``{"messages": [{"role": …, "content": …}, …]}``, with an
    optional ``"output_tokens"`` (or ``"max_tokens"``) per line;
  * ShareGPT JSON (a list) or JSONL: ``{"conversations": [{"from": "human", "value": "…"}, …]}`` (the first
    human turn is the prompt).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from benchctl.bench.llm.backends import BACKENDS

if TYPE_CHECKING:
    import aiohttp

_WORDS = ("alpha", "bravo", "charlie", "delta", "echo", "foxtrot", "golf", "hotel", "india", "juliet", "kilo",
          "lima", "mike", "november", "oscar", "papa", "quebec", "romeo", "sierra", "tango", "uniform", "victor",
          "whiskey", "xray", "yankee", "zulu")
MAX_PROMPTS = 1_000_000  # a bigger file is certainly a mistake (and would take all the memory)


class PromptError(ValueError):
    """A prompt file benchctl cannot use; the message names the file and line."""


@dataclass(frozen=True)
class Prompt:
    messages: tuple[tuple[str, str], ...]  # (role, content); a plain prompt is one ("user", text)
    output_tokens: int | None = None

    @property
    def text(self) -> str:
        return "\n".join(content for _, content in self.messages)


def prompt_text(index: int, words: int, pad: int = 0) -> str:
    """``words`` words (+ ``pad`` one-letter words that fine-tune the token count); a unique prefix per
    request so prefix caching cannot serve it."""
    # Same words for every request and a fixed-width prefix: prompts differ only in the prefix, so they
    # tokenise to (nearly) the same length and the calibration of request 0 holds for all.
    parts = [f"req{index:07d}"] + [_WORDS[i % len(_WORDS)] for i in range(max(0, words - 1))]
    return " ".join(parts + ["a"] * pad)


def _entry(obj: Any, where: str) -> Prompt:
    if not isinstance(obj, dict):
        raise PromptError(f"{where}: expected a JSON object, got {type(obj).__name__}")
    out = obj.get("output_tokens", obj.get("max_tokens"))
    if out is not None and (isinstance(out, bool) or not isinstance(out, int) or out < 1):
        raise PromptError(f"{where}: output_tokens must be a whole number >= 1, got {out!r}")
    text = obj.get("prompt", obj.get("text"))
    if isinstance(text, str):
        return Prompt((("user", text),), out)
    if isinstance(obj.get("messages"), list):
        msgs = []
        for m in obj["messages"]:
            if not (isinstance(m, dict) and isinstance(m.get("role"), str) and isinstance(m.get("content"), str)):
                raise PromptError(f"{where}: each message needs string 'role' and 'content'")
            msgs.append((m["role"], m["content"]))
        if msgs:
            return Prompt(tuple(msgs), out)
    if isinstance(obj.get("conversations"), list):
        for turn in obj["conversations"]:
            if isinstance(turn, dict) and turn.get("from") in ("human", "user") and isinstance(turn.get("value"), str):
                return Prompt((("user", turn["value"]),), out)
        raise PromptError(f"{where}: no human turn in 'conversations'")
    raise PromptError(f"{where}: expected 'prompt', 'text', 'messages' or ShareGPT 'conversations'")


def load_prompts(path: Path) -> list[Prompt]:
    """Every prompt of a JSONL file, or of a JSON list (ShareGPT dumps); PromptError names the bad entry."""
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise PromptError(f"cannot read prompts {path}: {exc}") from None
    prompts: list[Prompt] = []
    if text.lstrip().startswith("["):
        try:
            items = json.loads(text)
        except json.JSONDecodeError as exc:
            raise PromptError(f"{path}: not valid JSON: {exc}") from None
        prompts = [_entry(obj, f"{path} entry {i + 1}") for i, obj in enumerate(items[:MAX_PROMPTS])]
    else:
        for lineno, line in enumerate(text.splitlines(), 1):
            if not line.strip():
                continue
            try:
                obj = json.loads(line)
            except json.JSONDecodeError as exc:
                raise PromptError(f"{path} line {lineno}: not JSON: {exc.msg}") from None
            prompts.append(_entry(obj, f"{path} line {lineno}"))
            if len(prompts) >= MAX_PROMPTS:
                break
    if not prompts:
        raise PromptError(f"{path}: no prompts in it")
    return prompts


@dataclass
class Calibration:
    words: int  # words per synthetic prompt
    pad: int = 0  # extra one-letter words: whole words alone cannot hit every token count
    tokens: int | None = None  # what the server's tokenizer counted for that many words (None: no /tokenize)
    max_model_len: int | None = None
    note: str = ""


async def _count(session: aiohttp.ClientSession, url: str, backend: str, model: str, words: int,
                 pad: int = 0) -> tuple[int, int]:
    text = prompt_text(0, words, pad)
    body: dict[str, Any] = ({"model": model, "messages": [{"role": "user", "content": text}],
                             "add_generation_prompt": True} if BACKENDS[backend].chat else
                            {"model": model, "prompt": text})
    async with session.post(url + "/tokenize", json=body) as resp:
        if resp.status != 200:
            raise LookupError(f"HTTP {resp.status}")
        data = await resp.json(content_type=None)
    return int(data["count"]), int(data.get("max_model_len") or 0)


async def calibrate(url: str, backend: str, model: str, tokens: int,
                    headers: dict[str, str] | None = None) -> Calibration:
    """Words per synthetic prompt so the server's tokenizer counts ``tokens`` (vLLM's /tokenize), or 1:1."""
    if not BACKENDS[backend].tokenize:
        return Calibration(tokens, note="one word per token (the server has no /tokenize)")
    import aiohttp

    timeout = aiohttp.ClientTimeout(total=10)
    try:
        async with aiohttp.ClientSession(timeout=timeout, trust_env=False, headers=headers) as session:
            words = tokens
            count, max_len = await _count(session, url, backend, model, words)
            base, _ = await _count(session, url, backend, model, 1)  # template + prefix overhead
            best = (abs(count - tokens), words, count)
            for _ in range(8):  # secant steps on words -> tokens (roughly linear); stops when exact
                if count == tokens:
                    break
                per_word = max((count - base) / max(words - 1, 1), 0.05)
                words = max(1, words + round((tokens - count) / per_word))
                count, _ = await _count(session, url, backend, model, words)
                best = min(best, (abs(count - tokens), words, count))
            _, words, count = best
            pad = 0
            if count > tokens and words > 1:  # step below the target, then pad up to it
                words -= 1
                count, _ = await _count(session, url, backend, model, words)
            while count < tokens and pad < 64:
                n, _ = await _count(session, url, backend, model, words, pad + 1)
                if n > tokens:
                    break
                pad, count = pad + 1, n
    except (aiohttp.ClientError, TimeoutError, LookupError, KeyError, ValueError, TypeError) as exc:
        return Calibration(tokens, note=f"one word per token (/tokenize: {exc or type(exc).__name__})")
    note = f"{words + pad} words = {count} tokens by the server's tokenizer"
    return Calibration(words, pad, count, max_len or None, note)


__all__ = ["Calibration", "Prompt", "PromptError", "calibrate", "load_prompts", "prompt_text"]
