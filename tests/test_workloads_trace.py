"""Trace replay: both layouts, windows and speed, prompts built to the trace's sizes with shared hash blocks,
and replays against llm-sim whose arrivals (the server's own stamps) follow the scaled trace within the
client's measured dispatch lag."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from benchctl.bench.llm.workloads import WorkloadError, plan_for
from benchctl.bench.llm.workloads.trace import BLOCK_TOKENS, TraceRow, TraceWorkload, load_trace, window
from benchctl.llmsim import SimConfig, running
from benchctl.options import OptionError
from tests.workloads_util import run_workload, workload_config


def mooncake(path: Path, n: int = 8, gap_ms: int = 200) -> Path:
    with path.open("w") as fh:
        for i in range(n):  # written out of order: the loader sorts by time
            j = n - 1 - i
            fh.write(json.dumps({"timestamp": 1000 + j * gap_ms, "input_length": 600 + j, "output_length": 3,
                                 "hash_ids": [j % 2, 100 + j]}) + "\n")
    return path


def azure(path: Path, n: int = 8) -> Path:
    rows = [f"2023-11-16 18:15:{46 + (i * 3) // 10:02d}.{(i * 3) % 10}000000,{40 + i},{2 + i % 3}" for i in range(n)]
    path.write_text("TIMESTAMP,ContextTokens,GeneratedTokens\n" + "\n".join(rows) + "\n")
    return path


def test_both_layouts_parse(tmp_path: Path) -> None:
    layout, rows = load_trace(mooncake(tmp_path / "m.jsonl"))
    assert layout == "mooncake" and len(rows) == 8 and rows[0] == TraceRow(0.0, 600, 3, (0, 100))
    assert rows[-1].t == pytest.approx(1.4)
    layout, rows = load_trace(azure(tmp_path / "a.csv"))
    assert layout == "azure" and [r.t for r in rows][:4] == pytest.approx([0.0, 0.3, 0.6, 0.9])
    assert (rows[1].input_tokens, rows[1].output_tokens) == (41, 3)
    (tmp_path / "x.csv").write_text("a,b\n1,2\n")
    with pytest.raises(WorkloadError, match="missing ContextTokens"):
        load_trace(tmp_path / "x.csv")
    (tmp_path / "y.jsonl").write_text('{"timestamp": 1, "input_length": "many"}\n')
    with pytest.raises(WorkloadError, match="input_length must be a number"):
        load_trace(tmp_path / "y.jsonl")
    assert window("2:5") == "2:5" and window(":5") == ":5" and window("3:") == "3:"
    for bad in ("5", "5:2", "a:b", "-1:2"):
        with pytest.raises(OptionError):
            window(bad)


def test_window_speed_and_prompt_sizes(tmp_path: Path) -> None:
    cfg = workload_config(trace=str(mooncake(tmp_path / "m.jsonl")), trace_speed=2.0, trace_window="0.3:1.1")
    wl = plan_for(cfg)
    assert isinstance(wl, TraceWorkload) and cfg.workload == "trace" and cfg.concurrency == [1024]
    assert wl.offsets(None) == pytest.approx([0.05, 0.15, 0.25, 0.35])  # (t - 0.3) / 2 for t = 0.4 .. 1.0
    assert cfg.duration == pytest.approx(0.351)  # the point lasts its slice of the trace
    one, two = wl.prompt(wl.rows[0], 0).split(), wl.prompt(wl.rows[1], 1).split()
    assert len(one) == wl.rows[0].input_tokens and len(two) == wl.rows[1].input_tokens  # 1 word = 1 token here
    third = wl.prompt(wl.rows[2], 2).split()
    assert third[:BLOCK_TOKENS] == one[:BLOCK_TOKENS] and two[:BLOCK_TOKENS] != one[:BLOCK_TOKENS]  # hash ids 0/1
    with pytest.raises(WorkloadError, match="no request inside"):
        workload_config(trace=str(tmp_path / "m.jsonl"), trace_window="100:200")
    with pytest.raises(WorkloadError, match="cannot be combined"):
        workload_config(trace=str(tmp_path / "m.jsonl"), workload="chat")


@pytest.mark.parametrize("layout", ["mooncake", "azure"])
def test_replay_follows_the_trace_within_the_dispatch_lag(tmp_path: Path, layout: str) -> None:
    path = mooncake(tmp_path / "t.jsonl") if layout == "mooncake" else azure(tmp_path / "t.csv")
    with running(SimConfig(ttft_ms=1, itl_ms=1)) as sim:
        cfg = workload_config(trace=str(path), trace_speed=2.0)
        outcome, metrics = run_workload(sim.url, cfg)
    wl = plan_for(cfg)
    assert isinstance(wl, TraceWorkload)
    expected = wl.offsets(None)
    results = sorted(outcome.results, key=lambda r: r.index)
    assert len(results) == len(expected) and all(r.ok for r in results)
    lag = max(r.sent - r.scheduled for r in results)  # the client's own measured dispatch lag
    for r, offset in zip(results, expected, strict=True):
        assert r.scheduled - outcome.t0 == pytest.approx(offset, abs=1e-9)  # timed from the trace's moment
        assert r.server_truth is not None
        arrived = r.server_truth["arrival_monotonic"] - outcome.t0  # llm-sim's clock = perf_counter's
        assert offset - 0.001 <= arrived <= offset + lag + 0.005, (offset, arrived, lag)
        row = wl.rows[r.index]
        assert r.prompt_tokens == row.input_tokens and r.tokens == row.output_tokens  # built to the trace's sizes
    assert metrics["trace"]["layout"] == layout and metrics["trace"]["sent"] == len(expected)
    assert sum(s["sent"] for s in metrics["per_second"]) == len(expected)
    if layout == "mooncake":  # blocks sharing a hash id shared their text: the server's cache hit them
        hits = [r.server_truth["prefix_hit_tokens"] for r in results if r.server_truth]
        assert hits[:2] == [0, 0] and all(h == BLOCK_TOKENS for h in hits[2:])
