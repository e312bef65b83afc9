"""Workloads through client tasks (issues 14 and 15 together): `bench ... --client-tasks 2` (here, or as a
job on the local executor) runs every workload -- structured, chat, prefix, trace, ramp -- with the same
figures as one process, each task building its own requests from the same config; a closed loop's tasks never
send each other's prompts (their requests are numbered interleaved), a chat's conversations stay whole, a
schedule's arrivals are the one-process schedule, and the server's prefix-cache counters are read per point."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from benchctl.bench.llm.config import LlmConfig
from benchctl.bench.llm.workloads.ramp import ramp_offsets
from tests.test_client_split import run_tasks


def test_closed_loop_tasks_never_send_the_same_request(tmp_path: Path) -> None:
    """Prompts are chosen by a request's index: two tasks each numbering from 0 would send the same texts (and
    hit the server's prefix cache for free). Interleaved, the union is one process's numbering."""
    from benchctl.llmsim import SimConfig, running

    cfg = LlmConfig(model="sim", concurrency=[2], requests=20, output_tokens=2, input_tokens=8,
                    server_metrics_interval=0)
    with running(SimConfig(ttft_ms=0, itl_ms=0, output_tokens=2)) as sim:
        records = run_tasks(tmp_path, sim.url, cfg, 2)
    assert sorted(r["i"] for r in records) == list(range(20))
    assert {r["i"] % 2 for r in records if r["task"] == 1} == {1}


def test_ramp_tasks_send_the_one_process_ramp(tmp_path: Path) -> None:
    from benchctl.llmsim import SimConfig, running

    cfg = LlmConfig(model="sim", concurrency=[64], concurrency_capped=False, ramp="linear", ramp_from=20.0,
                    ramp_to=60.0, duration=1.5, output_tokens=2, input_tokens=8, server_metrics_interval=0)
    expected = ramp_offsets(cfg)
    with running(SimConfig(ttft_ms=0, itl_ms=0, output_tokens=2)) as sim:
        records = run_tasks(tmp_path, sim.url, cfg, 2)
    assert sorted(r["i"] for r in records) == list(range(len(expected)))
    for r in records:
        assert r["scheduled"] == pytest.approx(expected[r["i"]], abs=0.05)


TRACE = [(0, 40, 4, [1]), (100, 40, 4, [1]), (250, 80, 4, [2, 3]), (400, 40, 4, [1]), (600, 40, 4, [4]),
         (900, 40, 4, [1])]


@pytest.mark.parametrize(("where", "options"), [
    ("here", "--workload structured --structured json,choice --concurrency 4 --requests 24 --output-tokens 64"),
    ("here", "--workload chat --turns 3 --concurrency 4 --requests 24"),
    ("job", "--workload chat --turns 3 --concurrency 4 --requests 24"),
    ("here", "--workload prefix --prefix-tokens 32 --prefix-groups 2 --concurrency 2,4 --requests 16"),
    ("here", "--trace {trace}"),
    ("here", "--ramp linear --ramp-from 10 --ramp-to 30 --duration 2"),
], ids=["structured", "chat", "chat-job", "prefix", "trace", "ramp"])
def test_workloads_through_two_client_tasks(isolated_env: Path, local_app: Any, tmp_path: Path, where: str,
                                            options: str) -> None:
    from benchctl.llmsim import SimConfig, running

    trace = tmp_path / "trace.jsonl"
    trace.write_text("".join(json.dumps({"timestamp": t, "input_length": i, "output_length": o, "hash_ids": h})
                             + "\n" for t, i, o, h in TRACE))
    if "--output-tokens" not in options:
        options += " --output-tokens 4"
    with running(SimConfig(ttft_ms=2, itl_ms=1, output_tokens=4)) as sim:
        assert local_app.run_line(f"bench llm --url {sim.url} --model sim --client {where} --client-tasks 2 "
                                  f"--input-tokens 16 {options.format(trace=trace)}"), \
            local_app.out.getvalue()
        served = sum(sim.sim.metrics.success.values())
    out = local_app.out.getvalue()
    path = Path(out.split("results: ", 1)[1].split()[0])
    run = json.loads(path.read_text())
    assert run["client"]["tasks"] == 2 and run["client"]["where"] == where
    points = run["points"]
    assert sum(p["completed"] for p in points) == served and all(p["failed"] == 0 for p in points)
    p = points[0]
    workload = run["config"]["workload"]
    if workload == "structured":
        assert p["structured"]["constrained"] == 24 and p["structured"]["valid"] == 24
        assert set(p["structured"]["by_kind"]) == {"json", "choice"}
        assert "structured output valid 100%" in out
    elif workload == "chat":
        # 24 requests of 3-turn conversations by 4 users: 8 whole conversations, none merged with another task's
        assert p["chat"]["conversations"] == 8 == p["chat"]["whole_conversations"]
        assert sorted(p["ttft_by_turn"]) == ["1", "2", "3"]
        assert all(t["requests"] == 8 for t in p["ttft_by_turn"].values())
    elif workload == "prefix":
        assert len(points) == 2 and all(q["prefix_cache"]["queries"] > 0 for q in points)
        assert points[1]["prefix_cache"]["hit_rate"] > 0.3  # the shared system prompts, cached by then
    elif workload == "trace":
        assert p["workload_label"] == "trace x1" and p["trace"]["sent"] == 6 and p["completed"] == 6
        with (path.parent / "requests.jsonl").open() as fh:
            sent = sorted((json.loads(line)["scheduled_ms"], json.loads(line)["task"]) for line in fh)
        assert [row[0] for row in TRACE] == pytest.approx([s for s, _ in sent], abs=50)  # the trace's own times
        assert {task for _, task in sent} == {0, 1}
    else:
        assert p["workload_label"] == "ramp 10->30/s" and p["per_second"]
        assert [row["target_rate"] for row in p["per_second"]][:2] == [15.0, 25.0]
