"""The LLM benchmark client: metric definitions on hand-made streams, load schedules, and real runs against
the simulator (including a server that dies mid-run)."""

from __future__ import annotations

import asyncio
import itertools
import json
import statistics
import threading
import time
from pathlib import Path

import orjson
import pytest

from benchctl.app import App
from benchctl.bench.llm.loadgen import LlmConfig, arrival_offsets, point_metrics, run_point
from benchctl.bench.llm.prompts import prompt_text
from benchctl.bench.llm.stream import OllamaStream, OpenAIStream, RequestResult
from benchctl.llmsim import SimConfig, running


def sse(obj: object) -> bytes:
    return b"data: " + (obj if isinstance(obj, bytes) else orjson.dumps(obj)) + b"\n\n"


def chat_chunk(content: str | None = None, role: str | None = None, **delta: object) -> dict[str, object]:
    d: dict[str, object] = dict(delta)
    if role is not None:
        d["role"] = role
    if content is not None:
        d["content"] = content
    return {"choices": [{"index": 0, "delta": d}]}


def feed_all(parser: OpenAIStream | OllamaStream, parts: list[tuple[float, bytes]]) -> RequestResult:
    for t, data in parts:
        parser.feed(data, t)
    parser.result.end = parts[-1][0]
    parser.parse()
    parser.result.finish()
    return parser.result


def test_role_only_chunk_is_not_the_first_token() -> None:
    r = RequestResult(index=0, scheduled=0.9)
    r.sent = 1.0
    res = feed_all(OpenAIStream(r), [
        (1.05, sse(chat_chunk("", role="assistant"))),  # role-only: no token
        (1.20, sse(chat_chunk("Hello"))),
        (1.30, sse(chat_chunk(" world"))),
        (1.45, sse(chat_chunk("!"))),
        (1.46, sse({"choices": [], "usage": {"prompt_tokens": 7, "completion_tokens": 3, "total_tokens": 10}})),
        (1.47, sse(b"[DONE]")),
    ])
    assert res.ok and res.token_source == "server" and res.tokens == 3 and res.prompt_tokens == 7
    assert res.ttft == pytest.approx(0.20) and res.ttft_scheduled == pytest.approx(0.30)
    assert res.tpot == pytest.approx((1.45 - 1.20) / 2)
    assert res.itl == pytest.approx([0.10, 0.15])
    assert res.e2el == pytest.approx(0.45)  # the usage chunk and [DONE] do not move the end


def test_multi_token_chunks_use_the_server_count_for_tpot() -> None:
    r = RequestResult(index=0, scheduled=0.0)
    res = feed_all(OpenAIStream(r), [
        (0.1, sse({"choices": [{"text": "a b c d"}]})),
        (0.2, sse({"choices": [{"text": "e f g h"}]})),
        (0.3, sse({"choices": [], "usage": {"completion_tokens": 8, "prompt_tokens": 1}})),
        (0.3, sse(b"[DONE]")),
    ])
    assert res.tokens == 8 and len(res.chunk_times) == 2
    assert res.tpot == pytest.approx(0.1 / 7) and res.itl == pytest.approx([0.1])


def test_reasoning_and_tool_call_chunks_count_as_tokens() -> None:
    r = RequestResult(index=0, scheduled=0.0)
    res = feed_all(OpenAIStream(r), [
        (0.1, sse(chat_chunk(role="assistant", content=""))),
        (0.2, sse(chat_chunk(reasoning_content="thinking"))),
        (0.3, sse(chat_chunk(tool_calls=[{"index": 0, "function": {"name": "f"}}]))),
        (0.4, sse(b"[DONE]")),
    ])
    assert res.chunk_times == [0.2, 0.3]
    assert res.token_source == "client" and res.tokens == 2  # no usage chunk: client count, and said so


def test_split_and_merged_sse_events() -> None:
    a, b, c = sse(chat_chunk("x")), sse(chat_chunk("y")), sse(b"[DONE]")
    stream = a + b + c
    r = RequestResult(index=0, scheduled=0.0)
    # the first event split in the middle of its JSON; the second and [DONE] merged into one read
    res = feed_all(OpenAIStream(r), [(0.1, stream[:9]), (0.2, stream[9:len(a)]), (0.3, stream[len(a):])])
    assert res.ok and res.chunk_times == [0.2, 0.3]


def test_in_stream_error_and_missing_done_are_failures() -> None:
    r1 = feed_all(OpenAIStream(RequestResult(index=0, scheduled=0.0)), [
        (0.1, sse(chat_chunk("x"))), (0.2, sse({"error": {"message": "CUDA out of memory", "code": 500}})),
        (0.3, sse(b"[DONE]"))])
    assert not r1.ok and r1.error_type == "stream_error" and "out of memory" in r1.error
    r2 = feed_all(OpenAIStream(RequestResult(index=1, scheduled=0.0)), [(0.1, sse(chat_chunk("x")))])
    assert not r2.ok and r2.error_type == "incomplete_stream"
    r3 = feed_all(OpenAIStream(RequestResult(index=2, scheduled=0.0)), [(0.1, sse(b"[DONE]"))])
    assert not r3.ok and r3.error_type == "zero_tokens"


def test_ollama_final_object_gives_the_counts() -> None:
    lines = [{"model": "m", "message": {"role": "assistant", "content": "Hi"}, "done": False},
             {"model": "m", "message": {"role": "assistant", "content": " there"}, "done": False},
             {"model": "m", "message": {"role": "assistant", "content": ""}, "done": True, "eval_count": 5,
              "prompt_eval_count": 11, "eval_duration": 4_000_000, "prompt_eval_duration": 2_500_000,
              "load_duration": 0, "total_duration": 7_000_000}]
    data = b"".join(orjson.dumps(x) + b"\n" for x in lines)
    r = RequestResult(index=0, scheduled=0.0)
    res = feed_all(OllamaStream(r), [(0.1, data[:30]), (0.2, data[30:])])
    assert res.ok and res.tokens == 5 and res.prompt_tokens == 11 and res.token_source == "server"
    assert len(res.chunk_times) == 2
    # Ollama's own durations (ns) are kept per request, in ms.
    assert res.server_timing == {"eval_ms": 4.0, "prompt_eval_ms": 2.5, "load_ms": 0.0, "total_ms": 7.0}
    assert res.to_record(0.0)["server_timing"]["prompt_eval_ms"] == 2.5


def test_arrival_schedules() -> None:
    assert arrival_offsets(4, 2.0, "constant", 1.0, 0) == [0.0, 0.5, 1.0, 1.5]
    poisson = arrival_offsets(4000, 10.0, "poisson", 1.0, seed=1)
    assert poisson == arrival_offsets(4000, 10.0, "poisson", 1.0, seed=1)  # precomputed, reproducible
    gaps = [b - a for a, b in itertools.pairwise(poisson)]
    assert statistics.mean(gaps) == pytest.approx(0.1, rel=0.05)
    assert statistics.pstdev(gaps) == pytest.approx(0.1, rel=0.1)  # exponential: std = mean
    bursty = arrival_offsets(4000, 10.0, "gamma", 0.25, seed=1)
    bgaps = [b - a for a, b in itertools.pairwise(bursty)]
    assert statistics.mean(bgaps) == pytest.approx(0.1, rel=0.1)
    assert statistics.pstdev(bgaps) > 1.5 * statistics.pstdev(gaps)  # burstier than Poisson


def test_prompts_have_unique_prefixes() -> None:
    assert prompt_text(3, 5).split()[0] == "req0000003" and len(prompt_text(3, 5).split()) == 5
    assert prompt_text(3, 5) != prompt_text(4, 5)


def test_closed_loop_against_the_simulator_matches_its_settings() -> None:
    with running(SimConfig(ttft_ms=40, itl_ms=5, output_tokens=20, seed=1)) as sim:
        cfg = LlmConfig(backend="openai-chat", model="sim", requests=24, warmup=4, output_tokens=20,
                        input_tokens=16)
        outcome = asyncio.run(run_point(sim.url, cfg, 4, None))
    m = point_metrics(cfg, outcome, 4, None)
    assert m["completed"] == 24 and m["failed"] == 0  # the 4 warm-up requests are not counted
    assert m["token_source"] == {"server": 24} and m["total_output_tokens"] == 24 * 20
    assert m["median_ttft_ms"] == pytest.approx(40, abs=8)
    assert m["median_tpot_ms"] == pytest.approx(5, abs=1.5)
    assert m["median_e2el_ms"] == pytest.approx(40 + 19 * 5, abs=12)


def test_open_loop_rate_and_no_coordinated_omission() -> None:
    # The server serves one sequence at a time: open-loop requests queue there, and TTFT from the
    # schedule grows with the queue instead of being hidden.
    with running(SimConfig(ttft_ms=20, itl_ms=2, output_tokens=10, max_concurrency=1)) as sim:
        cfg = LlmConfig(backend="openai", model="sim", rate=[40.0], arrival="constant", duration=1.0,
                        output_tokens=10)
        outcome = asyncio.run(run_point(sim.url, cfg, 64, 40.0))
    m = point_metrics(cfg, outcome, 64, 40.0)
    assert 35 <= m["completed"] <= 41
    assert m["p99_ttft_from_schedule_ms"] > 200  # the backlog shows up
    assert m["client_health"]["dispatch_lag_ms"]["p99"] < 20  # the client itself kept the schedule


def test_failures_are_counted_not_dropped() -> None:
    with running(SimConfig(ttft_ms=5, itl_ms=1, output_tokens=5, error_rate=1.0)) as sim:
        cfg = LlmConfig(backend="openai", model="sim", requests=10, output_tokens=5)
        m = point_metrics(cfg, asyncio.run(run_point(sim.url, cfg, 2, None)), 2, None)
    assert m["completed"] == 0 and m["failed"] == 10 and m["error_counts"] == {"http_500": 10}
    with running(SimConfig(ttft_ms=5, itl_ms=1, output_tokens=50, disconnect_rate=1.0)) as sim:
        cfg = LlmConfig(backend="openai", model="sim", requests=6, output_tokens=50)
        m = point_metrics(cfg, asyncio.run(run_point(sim.url, cfg, 2, None)), 2, None)
    assert m["failed"] == 6 and set(m["error_counts"]) <= {"stream_cut", "incomplete_stream"}


def test_server_death_mid_run_is_survived_and_reported() -> None:
    sim = running(SimConfig(ttft_ms=10, itl_ms=10, output_tokens=30))
    server = sim.__enter__()
    killer = threading.Timer(0.6, lambda: sim.__exit__(None, None, None))
    killer.start()
    cfg = LlmConfig(backend="openai", model="sim", duration=2.0, output_tokens=30, timeout=5)
    started = time.monotonic()
    outcome = asyncio.run(run_point(server.url, cfg, 4, None))
    killer.join()
    m = point_metrics(cfg, outcome, 4, None)
    assert time.monotonic() - started < 15
    assert m["completed"] > 0 and m["failed"] > 0  # before and after the death
    assert set(m["error_counts"]) <= {"connection", "stream_cut", "incomplete_stream"}


def test_bench_llm_command_writes_results_and_server_metrics(app: App, tmp_path: Path) -> None:
    out = tmp_path / "llm.json"
    with running(SimConfig(ttft_ms=10, itl_ms=2, output_tokens=8)) as sim:
        assert app.run_line(f"bench llm --url {sim.url} --model sim --concurrency 1,2 --requests 6 "
                            f"--output-tokens 8 --slo ttft:1000,tpot:100 --output {out}"), \
            app.out.getvalue()  # type: ignore[attr-defined]
    run = json.loads(out.read_text())
    assert run["kind"] == "llm" and [p["concurrency"] for p in run["points"]] == [1, 2]
    assert all(p["completed"] == 6 and p["request_goodput"] > 0 for p in run["points"])
    # vLLM's result keys at the top level (from the last point), plus what served the run.
    assert run["completed"] == 6 and run["max_concurrency"] == 2 and run["request_rate"] == "inf"
    assert run["median_ttft_ms"] == run["points"][-1]["median_ttft_ms"] and "p99_tpot_ms" in run
    # vLLM's max_concurrent_requests: successful requests active within one 1-s bucket (short requests pile up);
    # the instantaneous peak is benchctl's peak_in_flight.
    assert 1 <= run["peak_in_flight"] <= 2 <= run["max_concurrent_requests"] <= 6
    assert run["percentile_method"].startswith("linear")
    assert run["server"]["version"] == "0.0.0-llmsim" and run["token_count_source"] == {"server": 6}
    assert run["token_count_source_all_points"] == {"server": 12}
    server = run["metrics"]["server_metrics"]
    assert server['vllm:request_success_total{finished_reason="length",model_name="sim"}'] == 12  # delta, not total
    assert server['vllm:generation_tokens_total{model_name="sim"}'] == 12 * 8
    means = run["metrics"]["server_means_ms"]  # the server's side: mean TTFT from its histogram, ~10 ms
    assert 9 <= means["time_to_first_token"] <= run["points"][0]["mean_ttft_ms"] + 1
    text = app.out.getvalue()  # type: ignore[attr-defined]
    assert "TTFT p50" in text and "c=2" in text
    assert not app.run_line("bench llm --url http://127.0.0.1:9 --concurrency x --model m")
    assert "--concurrency expects numbers" in app.out.getvalue()  # type: ignore[attr-defined]


def test_a_sweep_ends_with_its_knee_saturation_and_slo_lines(app: App) -> None:
    with running(SimConfig(ttft_ms=5, itl_ms=1, output_tokens=4)) as sim:
        assert app.run_line(f"bench llm --url {sim.url} --model sim --concurrency 1,2,4 --requests 8 "
                            "--output-tokens 4 --slo ttft:2000")
        text = app.out.getvalue()  # type: ignore[attr-defined]
        # the lines come before "results:" and name their method; the SLO is the run's own --slo
        tail = text[text.index("knee:"):]
        assert "method: maximum curvature" in tail and "saturation:" in tail
        assert "SLO p99 TTFT <= 2000 ms: met up to c=4" in tail and tail.index("results:") > tail.index("SLO")
        # two points make no curve: no analysis lines
        assert app.run_line(f"bench llm --url {sim.url} --model sim --concurrency 1,2 --requests 4 --output-tokens 4")
    assert app.out.getvalue().count("knee:") == 1  # type: ignore[attr-defined]


def test_api_key_comes_from_the_named_variable_and_is_never_recorded(app: App, tmp_path: Path,
                                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    out = tmp_path / "llm.json"
    monkeypatch.setenv("MY_LLM_KEY", "sk-secret-123")
    with running(SimConfig(ttft_ms=1, itl_ms=1, output_tokens=4)) as sim:
        assert app.run_line(f"bench llm --url {sim.url} --model sim --concurrency 2 --requests 4 --output-tokens 4 "
                            f"--api-key-env MY_LLM_KEY --output {out}")
        assert not app.run_line(f"bench llm --url {sim.url} --model sim --requests 2 --api-key-env NOT_SET_VAR")
    text = app.out.getvalue()  # type: ignore[attr-defined]
    assert "NOT_SET_VAR: that environment variable is not set" in text
    run_dir = Path(text.split("results: ", 1)[1].split()[0]).parent
    for path in [out, *run_dir.iterdir()]:
        assert "sk-secret-123" not in path.read_text()
    assert "sk-secret-123" not in text


def test_live_progress_line() -> None:
    from benchctl.bench.llm.kind import LiveProgress

    class Status:
        def __init__(self) -> None:
            self.lines: list[str] = []

        def update(self, text: str) -> None:
            self.lines.append(text)

    status = Status()
    progress = LiveProgress(status, "c=4", LlmConfig(requests=10))
    progress.t0 -= 2.0  # two seconds in
    good = RequestResult(index=0, scheduled=0.0, sent=0.0, chunk_times=[0.05, 0.06, 0.07], output_tokens=3, ok=True)
    progress(good)
    progress(RequestResult(index=1, scheduled=0.0, ok=False))
    progress.last = 0.0  # force a redraw
    progress(good)
    line = status.lines[-1]
    assert line.startswith("c=4: 2 ok, 1 failed") and "req/s" in line
    assert "TTFT 50.0 ms" in line and "TPOT 10.00 ms" in line and "3/10 requests" in line
    progress.last = 0.0
    progress.tick()  # the monitor's tick redraws too (the clock moves while nothing ends)
    assert len(status.lines) == 3
    timed = LiveProgress(status, "rate 2/s", LlmConfig(duration=30))
    assert timed.text(timed.t0 + 5).endswith("5/30 s")


def test_max_error_rate_stops_the_point_early() -> None:
    cfg = LlmConfig(backend="openai", model="sim", duration=20, output_tokens=4, input_tokens=4, max_error_rate=0.5)
    with running(SimConfig(ttft_ms=1, itl_ms=1, error_rate=1.0, seed=3)) as sim:
        outcome = asyncio.run(run_point(sim.url, cfg, 2, None))
    assert "error rate 100% > --max-error-rate" in outcome.stopped_early
    assert outcome.duration < 5 and 10 <= len(outcome.results) < 200  # stopped after the first 10 ended
    m = point_metrics(cfg, outcome, 2, None)
    assert m["error_counts"] == {"http_500": m["failed"]} and m["client_health"]["stopped_early"]


def test_progress_ticks_while_requests_run() -> None:
    ticks: list[float] = []
    cfg = LlmConfig(backend="openai", model="sim", requests=2, output_tokens=2, input_tokens=2)
    with running(SimConfig(ttft_ms=600, itl_ms=1)) as sim:
        outcome = asyncio.run(run_point(sim.url, cfg, 2, None, on_tick=lambda: ticks.append(time.perf_counter())))
    assert all(r.ok for r in outcome.results) and len(ticks) >= 2  # ~4 a second before any request ended
