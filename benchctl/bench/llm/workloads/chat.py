"""Multi-turn conversations (``--workload chat --turns N [--think-time S]``).

Each closed-loop user holds one conversation at a time: every turn sends the whole history so far -- the
earlier user messages and the assistant's ACTUAL replies (their text, as streamed) -- plus a new user
message, then waits ``--think-time`` seconds before the next turn. ``--concurrency`` is the number of active
conversations. A failed turn ends its conversation (its history is broken); the user starts a new one.

User messages are synthetic (``--input-tokens`` each, sized with the server's tokenizer, unique per
conversation and turn) or the human turns of a ShareGPT-style file (``--prompts FILE``: ``conversations``
with ``from``/``value`` or ``messages`` with ``role``/``content``; the file's own assistant turns are not sent,
the model's replies are). TTFT per turn index shows the prefix cache at work: turn 1 prefills everything,
later turns only what is new.
"""

from __future__ import annotations

import itertools
import json
from pathlib import Path
from typing import Any

from benchctl.bench.llm import prompts as llm_prompts
from benchctl.bench.llm.backends import BACKENDS
from benchctl.bench.llm.config import LlmConfig
from benchctl.bench.llm.stream import RequestResult
from benchctl.bench.llm.workloads import Session, Workload, WorkloadError
from benchctl.bench.stats import summarize

USER_ROLES = ("human", "user")


def _user_turns(obj: Any) -> list[str]:
    if not isinstance(obj, dict):
        return []
    if isinstance(obj.get("conversations"), list):
        turns = [(t.get("from"), t.get("value")) for t in obj["conversations"] if isinstance(t, dict)]
    elif isinstance(obj.get("messages"), list):
        turns = [(t.get("role"), t.get("content")) for t in obj["messages"] if isinstance(t, dict)]
    else:
        text = obj.get("prompt", obj.get("text"))
        turns = [("user", text)]
    return [text for role, text in turns if role in USER_ROLES and isinstance(text, str) and text]


def load_conversations(path: Path) -> list[list[str]]:
    """The user turns of every conversation of a ShareGPT JSON list or a JSONL file (WorkloadError)."""
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise WorkloadError(f"cannot read conversations {path}: {exc}") from None
    try:
        items = json.loads(text) if text.lstrip().startswith("[") else [
            json.loads(line) for line in text.splitlines() if line.strip()]
    except json.JSONDecodeError as exc:
        raise WorkloadError(f"{path}: not JSON / JSONL: {exc.msg}") from None
    conversations = [turns for turns in map(_user_turns, items) if turns]
    if not conversations:
        raise WorkloadError(f"{path}: no conversation with a user turn")
    return conversations


class ChatSession(Session):
    """One simulated user: its current conversation's history and turn."""

    workload: ChatWorkload

    def __init__(self, workload: ChatWorkload) -> None:
        super().__init__(workload)
        self.conversation: int | None = None
        self.messages: list[str] = []  # this conversation's user messages, one per turn
        self.history: list[tuple[str, str]] = []
        self.turn = 0
        self.pending = ""

    def body(self, r: RequestResult) -> dict[str, Any]:
        wl, cfg = self.workload, self.workload.cfg
        if self.conversation is None or self.turn >= len(self.messages):
            self.conversation = next(wl.ids)
            self.messages, self.history, self.turn = wl.user_messages(self.conversation), [], 0
        self.pending = self.messages[self.turn]
        self.turn += 1
        r.conversation, r.turn, r.keep_text = self.conversation, self.turn, True
        messages = (*self.history, ("user", self.pending))
        return BACKENDS[cfg.backend].body(cfg.model, messages, cfg.output_tokens, True)

    def done(self, r: RequestResult) -> None:
        if r.ok:
            self.history += [("user", self.pending), ("assistant", r.text)]
        else:
            self.conversation = None  # its history is broken: the next request starts a new conversation
        r.text = ""

    def pause(self, r: RequestResult) -> float:
        more = self.conversation is not None and self.turn < len(self.messages)
        return self.workload.cfg.think_time if more else 0.0


class ChatWorkload(Workload):
    name = "chat"
    needs_chat = True
    closed_loop_only = True
    scrape_per_point = True

    def __init__(self, cfg: LlmConfig) -> None:
        super().__init__(cfg)
        if cfg.turns < 1:
            raise WorkloadError("--turns must be at least 1")
        self.conversations = load_conversations(Path(cfg.prompts)) if cfg.prompts else []
        self.ids = itertools.count(cfg.task_index, cfg.task_count)  # client tasks: never another's conversation

    def user_messages(self, conversation: int) -> list[str]:
        """The user messages of conversation ``conversation`` (at most --turns)."""
        cfg = self.cfg
        if self.conversations:
            return self.conversations[conversation % len(self.conversations)][: cfg.turns]
        words = cfg.prompt_words or cfg.input_tokens
        return [llm_prompts.prompt_text(conversation * cfg.turns + t, words, cfg.prompt_pad) for t in range(cfg.turns)]

    async def prepare(self, url: str, headers: dict[str, str]) -> list[str]:
        source = f"{len(self.conversations)} conversations from {self.cfg.prompts}" if self.conversations else (
            f"synthetic user messages of {self.cfg.input_tokens} tokens")
        notes = [f"chat: {self.cfg.turns} turns per conversation ({source}), think time {self.cfg.think_time:g} s"]
        if not BACKENDS[self.cfg.backend].chat:
            notes.append(f"chat: {self.cfg.backend} is not a chat API: each turn's history is sent as one text")
        return notes

    def session(self) -> Session:
        return ChatSession(self)

    def point_metrics(self, measured: list[RequestResult], t0: float | None) -> dict[str, Any]:
        out = super().point_metrics(measured, t0)
        by_turn: dict[str, dict[str, Any]] = {}
        for turn in sorted({r.turn for r in measured if r.turn}):
            rs = [r for r in measured if r.turn == turn]
            ok = [r for r in rs if r.ok]
            ttft = summarize([r.ttft * 1000 for r in ok if r.ttft is not None])
            prompt = [r.prompt_tokens for r in ok if r.prompt_tokens is not None]
            by_turn[str(turn)] = {"requests": len(rs), "failed": len(rs) - len(ok),
                                  **{f"{k}_ttft_ms": ttft[k] for k in ("mean", "p50", "p99") if k in ttft},
                                  "mean_prompt_tokens": sum(prompt) / len(prompt) if prompt else None}
        turns: dict[int, list[RequestResult]] = {}
        for r in measured:
            if r.conversation is not None:
                turns.setdefault(r.conversation, []).append(r)
        whole = sum(1 for conv, rs in turns.items() if all(r.ok for r in rs)
                    and len(rs) == len(self.user_messages(conv)))
        out["chat"] = {"conversations": len(turns), "whole_conversations": whole, "turns": self.cfg.turns,
                       "think_time": self.cfg.think_time}
        out["ttft_by_turn"] = by_turn
        return out


WORKLOAD = ChatWorkload
