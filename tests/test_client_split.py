"""The client split into tasks (issue 14, part 3): each task's share of the load, and the merge of their
records -- the union of the tasks' arrivals is the one-process schedule, and the merged percentiles are those
of the union of their requests (never an average of the tasks' percentiles)."""

from __future__ import annotations

import json
import threading
from pathlib import Path
from typing import Any

import pytest

from benchctl.bench.client import records as rec
from benchctl.bench.client.launch import Follower, time_limit
from benchctl.bench.client.merge import merge, union
from benchctl.bench.client.options import client_plan
from benchctl.bench.client.split import idle, share, split_counts, sweep, task_config, task_offsets, users
from benchctl.bench.client.task import PREFIX, point_label, run_task
from benchctl.bench.kind import BenchError
from benchctl.bench.llm.config import LlmConfig
from benchctl.bench.llm.loadgen import arrival_offsets
from benchctl.bench.stats import percentile
from benchctl.executors.files import LocalFiles

# ---- the split ------------------------------------------------------------------------------------


@pytest.mark.parametrize("total", [0, 1, 7, 8, 64, 1023])
@pytest.mark.parametrize("count", [1, 2, 3, 5])
def test_shares_sum_to_the_total_and_differ_by_at_most_one(total: int, count: int) -> None:
    parts = split_counts(total, count)
    assert sum(parts) == total and max(parts) - min(parts) <= 1
    assert list(parts) == sorted(parts, reverse=True)  # the first total % count tasks get one more


@pytest.mark.parametrize("arrival", ["constant", "poisson", "gamma"])
@pytest.mark.parametrize("count", [1, 2, 3, 4])
def test_union_of_task_schedules_is_the_one_process_schedule(arrival: str, count: int) -> None:
    whole = arrival_offsets(500, 40.0, arrival, 0.5, 7)
    parts = [task_offsets(500, 40.0, arrival, 0.5, 7, i, count) for i in range(count)]
    merged = sorted((k, t) for part in parts for k, t in part)
    assert [k for k, _ in merged] == list(range(500))  # every arrival once, by its index in the schedule
    assert [t for _, t in merged] == whole  # at its own time, exactly
    assert all(len(p) in (500 // count, 500 // count + 1) for p in parts)


def test_another_seed_is_another_schedule() -> None:
    assert task_offsets(50, 10.0, "poisson", 1.0, 1, 0, 2) != task_offsets(50, 10.0, "poisson", 1.0, 2, 0, 2)


def test_closed_loop_config_splits_users_requests_and_warmup() -> None:
    whole = LlmConfig(concurrency=[1, 8, 9], requests=101, warmup=3)
    mine = [task_config(whole, i, 2) for i in range(2)]
    assert [m.concurrency for m in mine] == [[1, 4, 5], [0, 4, 4]]
    assert [m.requests for m in mine] == [51, 50] and [m.warmup for m in mine] == [2, 1]
    assert [(m.task_index, m.task_count) for m in mine] == [(0, 2), (1, 2)]
    assert whole.concurrency == [1, 8, 9] and whole.task_count == 1  # the run's own config is left alone
    # c=1 over two tasks: the second has no user at that point, and must not run "until --duration"
    assert idle(mine[1], whole, mine[1].concurrency[0]) and not idle(mine[0], whole, 1)


def test_open_loop_keeps_the_schedule_size_and_gives_each_task_a_slot() -> None:
    whole = LlmConfig(rate=[5.0, 10.0], concurrency=[1], requests=40, warmup=4)
    mine = task_config(whole, 1, 2)
    assert mine.requests == 40 and mine.warmup == 4  # the schedule and its warm-up are the whole run's
    assert mine.concurrency == [1] and users(1, True, 1, 2) == 1 and users(1, False, 1, 2) == 0
    assert sweep(whole) == [(1, 5.0), (1, 10.0)]


def test_share_refuses_a_task_outside_the_run() -> None:
    with pytest.raises(ValueError):
        share(10, 2, 2)


# ---- the merge ------------------------------------------------------------------------------------


def record(task: int, i: int, sent: float, ttft: float, point: str = "concurrency 4", tokens: int = 4,
           ok: bool = True) -> dict[str, Any]:
    chunks = [sent + ttft + 0.01 * k for k in range(tokens)] if ok else []
    return {"point": point, "task": task, "i": i, "scheduled": sent, "sent": sent, "end": (chunks or [sent])[-1],
            "chunks": chunks, "ok": ok, "error": "" if ok else "HTTP 500: boom",
            "error_type": "" if ok else "http_500", "http_status": 200 if ok else 500, "done": ok,
            "prompt_tokens": 16, "output_tokens": tokens if ok else None, "client_chunks": tokens if ok else 0,
            "token_source": "server" if ok else "client"}


def task_result(task: int, node: str, cpu: float = 0.1, lag: float = 0.0005, n: int = 0) -> dict[str, Any]:
    health = {"dispatch_lag_ms": {"p99": 0.1}, "event_loop_lag_ms": {"p99": lag * 1000},
              "client_cpu_percent": 100 * cpu / 3.0, "stopped_early": "", "unreachable": False}
    return {"task": task, "node": node, "status": "complete", "error": "", "points": [
        {"point": "concurrency 4", "users": 2, "completed": n, "failed": 0, "duration": 3.0, "cpu_seconds": cpu,
         "started_late_s": 0.0, "loop_lag": [lag] * 10, "client_health": health, "interrupted": False}]}


def two_tasks() -> list[dict[str, Any]]:
    # Task 0 is fast (TTFT 10 ms), task 1 slow with a long tail: the union's p99 is not the tasks' average.
    # Closed-loop tasks number their requests interleaved (LlmConfig.number): task t's k-th is 2k + t.
    fast = [record(0, 2 * i, 0.05 * i, 0.010) for i in range(60)]
    slow = [record(1, 2 * i + 1, 0.05 * i + 0.01, 0.050 + (0.5 if i >= 50 else 0.0)) for i in range(60)]
    return fast + slow


def test_merged_percentiles_are_those_of_the_union() -> None:
    cfg = LlmConfig(concurrency=[4], duration=3.0)
    records = two_tasks()
    merged = merge(cfg, 2, records, [task_result(0, "n1", n=60), task_result(1, "n2", n=60)])
    (point,) = merged.points
    union_ttft = sorted(r["chunks"][0] - r["sent"] for r in records)
    assert point["completed"] == 120 and point["failed"] == 0 and point["client_tasks"] == 2
    for pct, key in ((50, "median_ttft_ms"), (99, "p99_ttft_ms")):
        assert point[key] == pytest.approx(1000 * percentile(union_ttft, pct))
    per_task_p99 = [1000 * percentile(sorted(r["chunks"][0] - r["sent"] for r in records if r["task"] == t), 99)
                    for t in (0, 1)]
    assert point["p99_ttft_ms"] != pytest.approx(sum(per_task_p99) / 2)  # never the average of percentiles
    assert point["median_itl_ms"] == pytest.approx(10.0)  # from every chunk of every task
    assert len(merged.requests) == 120 and not merged.warnings and not merged.interrupted


def test_task_health_is_kept_per_task() -> None:
    merged = merge(LlmConfig(concurrency=[4]), 2, two_tasks(),
                   [task_result(0, "n1", lag=0.001), task_result(1, "n2", lag=0.002)])
    tasks = merged.points[0]["client_health"]["tasks"]
    assert [(t["task"], t["node"], t["users"]) for t in tasks] == [(0, "n1", 2), (1, "n2", 2)]
    assert tasks[1]["event_loop_lag_ms"]["p99"] == pytest.approx(2.0)
    # The point's own event-loop lag is the union of the tasks' samples.
    assert merged.points[0]["client_health"]["event_loop_lag_ms"]["count"] == 20


def test_a_task_that_was_the_limit_is_named() -> None:
    busy = task_result(1, "n2", cpu=2.9, n=60)  # 97 % of a core over 3 s
    merged = merge(LlmConfig(concurrency=[4]), 2, two_tasks(), [task_result(0, "n1", n=60), busy])
    assert len(merged.warnings) == 1
    assert "client task 1 on n2" in merged.warnings[0] and "97% of a core" in merged.warnings[0]
    lagging = task_result(0, "n1", lag=0.05, n=60)
    warned = merge(LlmConfig(concurrency=[4]), 2, two_tasks(), [lagging, task_result(1, "n2", n=60)]).warnings
    assert any("client task 0 on n1" in w and "event loop" in w for w in warned)


def test_a_task_without_a_result_still_counts_and_marks_the_point_interrupted() -> None:
    merged = merge(LlmConfig(concurrency=[4]), 2, two_tasks(), [task_result(0, "n1"), None])
    assert merged.points[0]["completed"] == 120 and merged.points[0]["interrupted"] and merged.interrupted
    assert any("client task 1 left no result" in w for w in merged.warnings)


def test_closed_loop_warmup_is_each_tasks_first_requests() -> None:
    cfg = LlmConfig(concurrency=[4], warmup=3)  # task 0 warms up with 2, task 1 with 1
    pairs = union(cfg, 2, two_tasks())
    warm = [(task, r) for task, r in pairs if r.index < cfg.warmup]
    assert sorted(task for task, _ in warm) == [0, 0, 1]
    merged = merge(cfg, 2, two_tasks(), [task_result(0, "n1"), task_result(1, "n2")])
    assert merged.points[0]["completed"] == 117 and merged.points[0]["warmup_excluded"] == 3


def test_records_round_trip_on_the_common_clock() -> None:
    from benchctl.bench.llm.stream import RequestResult

    r = RequestResult(index=3, scheduled=100.0, sent=100.001, chunk_times=[100.02, 100.03], end=100.031,
                      output_tokens=2, ok=True, done=True, token_source="server", http_status=200)
    r.choice_times = [100.015, 100.02, 100.03]  # a chat endpoint's role-only chunk first
    back = rec.load(json.loads(json.dumps(rec.dump(r, 100.0, "concurrency 1", 0))))
    assert back.ttft == pytest.approx(0.019) and back.choice_times[0] == pytest.approx(0.015)
    assert back.tpot == pytest.approx(0.01) and back.ok and back.index == 3
    assert rec.parse_lines('{"point":"p","i":1}\n{"point":"p","i":2')[0]["i"] == 1  # a torn last line is skipped


# ---- the tasks against a real (in-process) simulator ------------------------------------------------


def run_tasks(tmp_path: Path, url: str, cfg: LlmConfig, count: int) -> list[dict[str, Any]]:
    spec = {"config": cfg.record(), "url": url}
    threads = [threading.Thread(target=run_task, args=(spec, tmp_path, i, count)) for i in range(count)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    out = []
    for i in range(count):
        out += rec.parse_lines((tmp_path / f"requests-{i}.jsonl").read_text())
    return out


def test_open_loop_tasks_send_the_one_process_schedule(tmp_path: Path) -> None:
    from benchctl.llmsim import SimConfig, running

    cfg = LlmConfig(model="sim", rate=[200.0], arrival="poisson", requests=60, concurrency=[64], seed=3,
                    output_tokens=2, input_tokens=8, server_metrics_interval=0)
    with running(SimConfig(ttft_ms=0, itl_ms=0, output_tokens=2)) as sim:
        records = run_tasks(tmp_path, sim.url, cfg, 2)
    assert sorted(r["i"] for r in records) == list(range(60))
    assert {r["task"] for r in records} == {0, 1}
    expected = arrival_offsets(60, 200.0, "poisson", 1.0, 3)
    for r in records:  # each at its place in the one schedule, on the common clock (a few ms of start skew)
        assert r["scheduled"] == pytest.approx(expected[r["i"]], abs=0.05)
    results = [json.loads((tmp_path / f"task-{i}.json").read_text()) for i in range(2)]
    merged = merge(cfg, 2, records, results)
    assert merged.points[0]["completed"] == 60 and merged.points[0]["failed"] == 0


def test_closed_loop_tasks_split_the_requests(tmp_path: Path) -> None:
    from benchctl.llmsim import SimConfig, running

    cfg = LlmConfig(model="sim", concurrency=[3], requests=31, output_tokens=2, input_tokens=8,
                    server_metrics_interval=0)
    with running(SimConfig(ttft_ms=0, itl_ms=0, output_tokens=2)) as sim:
        records = run_tasks(tmp_path, sim.url, cfg, 2)
    assert sorted(sum(1 for r in records if r["task"] == t) for t in (0, 1)) == [15, 16]
    lines = (tmp_path / "task-0.json").read_text()
    assert json.loads(lines)["points"][0]["users"] == 2


# ---- the shell's side -------------------------------------------------------------------------------


def test_client_plan() -> None:
    assert client_plan("llm", {}, "here")[0].in_process
    plan, note = client_plan("llm", {"client_tasks": 4, "client_nodes": 2}, "job")
    assert (plan.where, plan.tasks, plan.nodes, note) == ("job", 4, 2, "")
    assert client_plan("vector", {}, "job") == (client_plan("vector", {}, "here")[0], "")
    with pytest.raises(BenchError, match="only the llm kind"):
        client_plan("vector", {"client": "job"}, "here")
    with pytest.raises(BenchError, match="a node would have no task"):
        client_plan("llm", {"client": "job", "client_nodes": 3, "client_tasks": 2}, "here")
    with pytest.raises(BenchError, match="for --client job"):
        client_plan("llm", {"client_nodes": 2, "client_tasks": 2}, "here")
    # The config's "job" does not send a client to another node for a loopback URL; --client job does.
    defaulted = client_plan("llm", {}, "job")[0]
    here, why = defaulted.for_url("http://127.0.0.1:8000")
    assert here.where == "here" and "this machine" in why
    assert defaulted.for_url("http://10.0.0.5:8000") == (defaulted, "")
    asked = client_plan("llm", {"client": "job"}, "here")[0]
    assert asked.for_url("http://127.0.0.1:8000") == (asked, "")


def test_follower_reads_whole_progress_lines_by_offset(tmp_path: Path) -> None:
    log = tmp_path / "slurm-1.out"

    class Launch:
        files, logs, folder, label = LocalFiles(), [log], tmp_path, "job"

    line = PREFIX + json.dumps({"task": 0, "event": "progress", "point": "concurrency 4", "ok": 10, "failed": 0,
                                "elapsed": 2.0}, separators=(",", ":"))
    log.write_text("BENCHCTL_JOBID=1\n" + line + "\n" + line[:20])
    follower = Follower(Launch())  # type: ignore[arg-type]
    assert [e["ok"] for e in follower.read()] == [10]
    assert "10 ok" in follower.status(LlmConfig(duration=30), 2) and "5.0 req/s" in follower.status(
        LlmConfig(duration=30), 2)
    with log.open("a") as fh:
        fh.write(line[20:].replace('"ok":10', '"ok":12') + "\n")
    assert [e["ok"] for e in follower.read()] == [12]


def test_time_limit_covers_every_point() -> None:
    assert time_limit(LlmConfig(duration=30, grace=30, concurrency=[1, 8]), 2) == "00:12:20"
    assert time_limit(LlmConfig(requests=100), 1) == ""
    assert point_label(8, None) == "concurrency 8" and point_label(8, 2.5) == "rate 2.5/s"


@pytest.mark.parametrize("where", ["here", "job"])
def test_bench_with_two_client_tasks_on_this_machine(isolated_env: Path, local_app: Any, where: str) -> None:
    """`bench llm --client here|job --client-tasks 2` end to end on the local executor (the job's script starts
    the tasks itself): one run folder, the requests of both tasks, the simulator's own count."""
    from benchctl.llmsim import SimConfig, running

    with running(SimConfig(ttft_ms=5, itl_ms=1, output_tokens=4)) as sim:
        local_app.run_line(f"bench llm --url {sim.url} --model sim --client {where} --client-tasks 2 "
                           "--concurrency 3 --requests 40 --output-tokens 4")
        served = dict(sim.sim.metrics.success)
    out = local_app.out.getvalue()
    assert "error" not in out, out
    path = Path(out.split("results: ", 1)[1].split()[0])
    run = json.loads(path.read_text())
    assert run["client"]["where"] == where and run["client"]["tasks"] == 2
    point = run["points"][0]
    assert point["completed"] == 40 == sum(served.values()) and point["concurrency"] == 3
    assert [t["users"] for t in point["client_health"]["tasks"]] == [2, 1]
    with (path.parent / "requests.jsonl").open() as fh:  # the run folder's records: every task's requests
        assert sorted(json.loads(line)["task"] for line in fh) == [0] * 20 + [1] * 20  # --requests split evenly
