"""Multi-turn chat: conversation files, option checks, and runs against llm-sim whose per-request truth shows
that every later turn carried the whole history (the model's actual replies included)."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest

from benchctl.bench.llm.workloads import WorkloadError
from benchctl.bench.llm.workloads.chat import load_conversations
from benchctl.llmsim import SimConfig, running
from benchctl.llmsim.model import WORDS
from tests.workloads_util import run_workload, workload_config


def sha(text: str) -> str:
    return hashlib.sha1(text.encode()).hexdigest()[:12]


def test_conversation_files(tmp_path: Path) -> None:
    share = tmp_path / "share.json"
    share.write_text(json.dumps([
        {"conversations": [{"from": "human", "value": "a"}, {"from": "gpt", "value": "b"},
                           {"from": "human", "value": "c"}]},
        {"conversations": [{"from": "gpt", "value": "only the model"}]},
        {"messages": [{"role": "system", "content": "s"}, {"role": "user", "content": "d"}]}]))
    assert load_conversations(share) == [["a", "c"], ["d"]]
    lines = tmp_path / "c.jsonl"
    lines.write_text('{"prompt": "x"}\n\n{"messages": [{"role": "user", "content": "y"}]}\n')
    assert load_conversations(lines) == [["x"], ["y"]]
    (tmp_path / "none.jsonl").write_text('{"conversations": []}\n')
    with pytest.raises(WorkloadError, match="no conversation"):
        load_conversations(tmp_path / "none.jsonl")
    (tmp_path / "bad.jsonl").write_text("{\n")
    with pytest.raises(WorkloadError, match="not JSON"):
        load_conversations(tmp_path / "bad.jsonl")


def test_option_checks() -> None:
    with pytest.raises(WorkloadError, match="closed loop"):
        workload_config(workload="chat", rate=[2.0])
    with pytest.raises(WorkloadError, match="open-loop schedule"):
        workload_config(workload="chat", ramp="linear")
    cfg = workload_config(workload="chat", turns=2)
    assert cfg.workload == "chat" and cfg.turns == 2 and "workload_state" not in cfg.record()


def test_later_turns_carry_the_whole_history_by_the_servers_truth() -> None:
    out = 5
    reply = "".join(" " + WORDS[i % len(WORDS)] for i in range(out))  # what llm-sim answers to every turn
    with running(SimConfig(ttft_ms=2, itl_ms=1)) as sim:
        cfg = workload_config("openai-chat", workload="chat", turns=3, requests=12, output_tokens=out,
                              input_tokens=6)
        outcome, metrics = run_workload(sim.url, cfg, concurrency=2)
    results = outcome.results
    assert len(results) == 12 and all(r.ok for r in results)
    by_conv: dict[int, list[object]] = {}
    for r in results:
        assert r.conversation is not None and r.server_truth is not None
        by_conv.setdefault(r.conversation, []).append(r)
        messages = r.server_truth["messages"]
        assert len(messages) == 2 * r.turn - 1  # the history so far + the new user message
        assert [m["role"] for m in messages] == ["user", "assistant"] * (r.turn - 1) + ["user"]
        # The assistant turns in the history are the model's ACTUAL replies, as streamed.
        assert all(m["sha1"] == sha(reply) for m in messages if m["role"] == "assistant")
        assert all(m["words"] == 6 for m in messages if m["role"] == "user")
    assert len(by_conv) == 4 and all(len(rs) == 3 for rs in by_conv.values())
    for rs in by_conv.values():  # the user messages of earlier turns are repeated unchanged
        first = [m["sha1"] for m in rs[0].server_truth["messages"]]  # type: ignore[attr-defined]
        last = [m["sha1"] for m in rs[-1].server_truth["messages"]]  # type: ignore[attr-defined]
        assert last[0] == first[0]
    turns = metrics["ttft_by_turn"]
    assert set(turns) == {"1", "2", "3"} and all(t["requests"] == 4 and t["p50_ttft_ms"] > 0 for t in turns.values())
    assert turns["3"]["mean_prompt_tokens"] == 6 * 3 + 2 * out  # llm-sim counts the words of every message
    assert metrics["chat"]["conversations"] == 4 and metrics["chat"]["whole_conversations"] == 4
    record = results[0].to_record(outcome.t0)
    assert record["conversation"] is not None and record["turn"] >= 1


def test_think_time_and_a_failed_turn_starts_a_new_conversation() -> None:
    with running(SimConfig(ttft_ms=1, itl_ms=1)) as sim:
        cfg = workload_config("openai-chat", workload="chat", turns=2, think_time=0.2, requests=4)
        outcome, _ = run_workload(sim.url, cfg, concurrency=1)
    first, second = outcome.results[0], outcome.results[1]
    assert (first.conversation, first.turn, second.turn) == (0, 1, 2)
    assert second.scheduled - first.end >= 0.195  # the user thought first (the loop's timers may fire ~1 ms early)
    assert outcome.results[2].scheduled - outcome.results[1].end < 0.2  # no think time between conversations
    with running(SimConfig(ttft_ms=1, itl_ms=1, error_rate=1.0)) as sim:
        cfg = workload_config("openai-chat", workload="chat", turns=3, requests=3)
        outcome, _ = run_workload(sim.url, cfg, concurrency=1)
    assert [(r.conversation, r.turn) for r in outcome.results] == [(0, 1), (1, 1), (2, 1)]
