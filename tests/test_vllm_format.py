"""The LLM run JSON read as vLLM's ``vllm bench serve`` result file: a reader written against vLLM's documented
result keys gets the numbers benchctl's own summary shows; vLLM's keys mean what vLLM means; where benchctl's
definitions differ on purpose, vLLM's values are written beside them."""

from __future__ import annotations

import io
import json
import re
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest
from rich.console import Console

from benchctl.app import App
from benchctl.bench.llm.kind import LlmKind
from benchctl.bench.results import read_run
from benchctl.llmsim import SimConfig, running


def read_vllm_result(record: dict[str, Any]) -> dict[str, Any]:
    """What a tool written for ``vllm bench serve --save-result`` files reads (vllm/benchmarks/serve.py's keys)."""
    return {
        "date": datetime.strptime(record["date"], "%Y%m%d-%H%M%S"),
        "backend": record["endpoint_type"], "model": record["model_id"], "tokenizer": record["tokenizer_id"],
        "num_prompts": record["num_prompts"], "request_rate": record["request_rate"],
        "max_concurrency": record["max_concurrency"], "completed": record["completed"], "failed": record["failed"],
        "success_rate": record["completed"] / record["num_prompts"],
        "errors": [e for e in record["errors"] if e],  # one entry per request, "" for a success
        "latencies": record["latencies"], "queue_times": record["queue_times"],
        "request_throughput": record["request_throughput"], "output_throughput": record["output_throughput"],
        "goodput": record["request_goodput"],
        **{f"{stat}_{m}": record[f"{stat}_{m}_ms"] for m in ("ttft", "tpot", "itl", "e2el")
           for stat in ("mean", "median", "std", "p99")},
        "max_output_tokens_per_s": record["max_output_tokens_per_s"],
        "max_concurrent_requests": record["max_concurrent_requests"],
    }


def _bench(app: App, tmp_path: Path, sim: SimConfig, options: str) -> dict[str, Any]:
    out = tmp_path / "run.json"
    with running(sim) as server:
        ok = app.run_line(f"bench llm --url {server.url} --model sim {options} --output {out}")
    assert ok, app.out.getvalue()  # type: ignore[attr-defined]
    return json.loads(out.read_text())


def _summary(run_json: dict[str, Any], tmp_path: Path) -> str:
    path = tmp_path / "again" / "run.json"
    path.parent.mkdir()
    path.write_text(json.dumps(run_json))
    buf = io.StringIO()
    Console(file=buf, width=200, color_system=None).print(LlmKind().summary_view(read_run(path)))
    return buf.getvalue()


def test_a_vllm_reader_gets_the_numbers_of_benchctls_summary(app: App, tmp_path: Path) -> None:
    run = _bench(app, tmp_path, SimConfig(ttft_ms=15, itl_ms=3, output_tokens=12),
                 "--backend openai-chat --concurrency 1,3 --requests 9 --output-tokens 12")
    top = read_vllm_result(run)
    assert run["top_level_point"] == 1 and "concurrency 3" in run["top_level_describes"]
    assert (top["backend"], top["model"], top["tokenizer"]) == ("openai-chat", "sim", "sim")
    assert (top["num_prompts"], top["completed"], top["failed"], top["success_rate"]) == (9, 9, 0, 1.0)
    assert top["request_rate"] == "inf" and top["max_concurrency"] == 3  # a closed loop of 3 users
    assert top["errors"] == [] and len(top["latencies"]) == len(run["errors"]) == 9
    assert top["goodput"] is None  # no --slo
    assert 0 < top["max_concurrent_requests"] <= 9 and top["max_output_tokens_per_s"] > 0
    # benchctl's summary row for the point the top level describes shows the same figures.
    row = next(line for line in _summary(run, tmp_path).splitlines() if line.strip().startswith("c=3"))
    cells = [c for c in row.split() if c != "\u2502"]  # the table's column rules
    assert cells[1:5] == ["9", "0", f"{top['request_throughput']:.1f}", f"{top['output_throughput']:.0f}"]
    assert cells[5:] == [f"{top[k]:.1f}" for k in ("median_ttft", "p99_ttft", "median_tpot", "p99_tpot",
                                                     "median_itl", "median_e2el")]
    # Every point is a whole vLLM record too.
    for point in run["points"]:
        record = read_vllm_result(point)
        assert record["num_prompts"] == len(record["latencies"]) == len(point["errors"]) == 9
        assert record["max_concurrency"] == point["concurrency"]


def test_the_definitions_that_differ_are_said_and_vllms_values_written_beside(app: App, tmp_path: Path) -> None:
    run = _bench(app, tmp_path, SimConfig(ttft_ms=15, itl_ms=3, output_tokens=12),
                 "--backend openai-chat --concurrency 2 --requests 6 --output-tokens 12")
    for key in ("ttft", "itl", "max_concurrent_requests", "num_prompts", "errors", "latencies"):
        assert run["definitions"][key]
    # The chat endpoint's role-only chunk is a vLLM ITL gap (of ~0 s: it arrives with the first content chunk),
    # not a benchctl one: vLLM's client would report a smaller ITL, and more gaps of it.
    theirs = run["vllm_client_definitions"]
    assert theirs["median_itl_ms"] <= run["median_itl_ms"] and theirs["mean_itl_ms"] < run["mean_itl_ms"]
    assert set(theirs) >= {"mean_itl_ms", "median_itl_ms", "std_itl_ms", "p99_itl_ms"}
    # vLLM's latencies are its e2el, per request (the same last chunk here: the usage chunk has no choices).
    assert sorted(run["latencies"])[len(run["latencies"]) // 2] * 1000 == pytest.approx(run["median_e2el_ms"],
                                                                                          rel=0.3)


def test_errors_are_a_list_per_request_and_counted_by_type_beside(app: App, tmp_path: Path) -> None:
    out = tmp_path / "run.json"
    with running(SimConfig(ttft_ms=5, itl_ms=1, output_tokens=4, error_rate=0.5, seed=7)) as server:
        app.run_line(f"bench llm --url {server.url} --model sim --concurrency 2 --requests 20 --output-tokens 4 "
                     f"--output {out}")
    run = json.loads(out.read_text())
    assert isinstance(run["errors"], list) and len(run["errors"]) == 20
    failed = [e for e in run["errors"] if e]
    assert len(failed) == run["failed"] > 0 and all(isinstance(e, str) for e in failed)
    assert run["error_counts"] == {"http_500": run["failed"]}  # the envelope's counts by type
    assert run["points"][0]["error_counts"] == {"http_500": run["failed"]}
    assert sum(1 for x in run["latencies"] if x == 0.0) == run["failed"]  # vLLM: latency 0 for a failure


def test_open_loop_max_concurrency_is_the_cap_or_null(app: App, tmp_path: Path) -> None:
    sim = SimConfig(ttft_ms=5, itl_ms=1, output_tokens=4)
    uncapped = _bench(app, tmp_path, sim, "--rate 20 --requests 6 --output-tokens 4")
    assert uncapped["max_concurrency"] is None and uncapped["request_rate"] == 20.0
    assert "mean_client_queue_time_ms" not in uncapped
    (tmp_path / "run.json").unlink()
    capped = _bench(app, tmp_path, sim, "--rate 20 --concurrency 2 --requests 6 --output-tokens 4")
    assert capped["max_concurrency"] == 2 and capped["mean_client_queue_time_ms"] >= 0
    assert re.fullmatch(r"\d{8}-\d{6}", capped["date"])
