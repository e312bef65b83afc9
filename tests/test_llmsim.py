"""llm-sim: the simulated LLM server (real aiohttp server on 127.0.0.1, real HTTP clients, measured timing),
the service (options, batch script, golden files) and a whole job through the local executor.

Golden files:

    BENCHCTL_UPDATE_GOLDEN=1 .venv/bin/python -m pytest tests/test_golden.py tests/test_llmsim.py
"""

from __future__ import annotations

import asyncio
import http.client
import itertools
import json
import sys
import threading
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from benchctl.app import App
from benchctl.executors.local import sbatch_options
from benchctl.llmsim import SimConfig, count_messages, count_words, parse_args, running
from benchctl.options import OptionError
from benchctl.services.llmsim import LlmSim
from benchctl.slurm.states import JobState
from tests.fakes import FakeSlurm
from tests.test_templates import BASH, HOST_BIN_DIR, bash_syntax_ok, service_for

RUN_DIR = Path("/home/u/benchctl/jobs/llm-sim-X")
IMAGE = "oras://registry.example.org/benchctl/llmsim:0.1"
# golden name -> (runtime, images, options)
GOLDEN: dict[str, tuple[str, dict[str, str], dict[str, Any]]] = {
    "none": ("none", {}, {}),
    "apptainer": ("apptainer", {}, {"seed": 7}),  # no image configured: host python fallback
    "apptainer-image": ("apptainer", {"llm-sim": IMAGE},
                        {"model": "llama-sim", "ttft_ms": "120.5", "itl_ms": "0.5", "error_rate": "0.01"}),
}


# ---- a client that timestamps every line as it arrives -------------------------------------------------


def post_stream(url: str, body: dict[str, Any], headers: dict[str, str] | None = None,
                ) -> tuple[int, list[tuple[float, str]], float, str]:
    """POST and read the body line by line: (status, [(seconds since send, line)], t0, error or "")."""
    async def go() -> tuple[int, list[tuple[float, str]], float, str]:
        async with aiohttp.ClientSession(headers=headers) as session:
            t0 = time.perf_counter()
            async with session.post(url, json=body) as resp:
                lines: list[tuple[float, str]] = []
                error = ""
                try:
                    async for raw in resp.content:
                        line = raw.decode().rstrip("\n")
                        if line:
                            lines.append((time.perf_counter() - t0, line))
                except aiohttp.ClientPayloadError as exc:
                    error = repr(exc)
                return resp.status, lines, t0, error

    return asyncio.run(go())


def sse(lines: list[tuple[float, str]]) -> list[tuple[float, Any]]:
    """SSE `data:` lines -> (time, parsed JSON or the string "[DONE]")."""
    out: list[tuple[float, Any]] = []
    for t, line in lines:
        assert line.startswith("data: "), line
        data = line[len("data: "):]
        out.append((t, data if data == "[DONE]" else json.loads(data)))
    return out


def get(url: str) -> tuple[int, str]:
    with urllib.request.urlopen(url, timeout=5) as resp:
        return resp.status, resp.read().decode()


def metric(text: str, name: str) -> float:
    """Sum of the samples of ``name`` (all label sets)."""
    total = 0.0
    for line in text.splitlines():
        if line.startswith(name + "{") or line.startswith(name + " "):
            total += float(line.rsplit(" ", 1)[1])
    return total


@pytest.fixture(scope="module")
def sim() -> Iterator[str]:
    with running(SimConfig(ttft_ms=100, itl_ms=20, output_tokens=5, seed=1)) as server:
        yield server.url


CHAT = [{"role": "system", "content": "be brief"}, {"role": "user", "content": "say five words please"}]


# ---- OpenAI protocol ----------------------------------------------------------------------------------


def test_completions_stream_sse_tokens_and_timing(sim: str) -> None:
    status, lines, _, error = post_stream(sim + "/v1/completions", {"model": "sim", "prompt": "a b c", "stream": True})
    assert status == 200 and not error
    events = sse(lines)
    assert events[-1][1] == "[DONE]"
    chunks = [e for _, e in events[:-1]]
    assert len(chunks) == 5
    assert all(c["object"] == "text_completion" and c["model"] == "sim" for c in chunks)
    assert [c["choices"][0]["finish_reason"] for c in chunks] == [None] * 4 + ["stop"]
    assert all(c["choices"][0]["text"].strip() for c in chunks)
    times = [t for t, _ in events[:-1]]
    assert 0.070 <= times[0] <= 0.130, times  # ttft 100 ms
    gaps = [b - a for a, b in itertools.pairwise(times)]
    assert all(0.010 <= g <= 0.030 for g in gaps), gaps  # itl 20 ms
    assert abs((times[-1] - times[0]) - 0.080) <= 0.015  # absolute deadlines: no drift over 4 gaps


def test_chat_stream_role_chunk_then_content_and_usage(sim: str) -> None:
    body = {"model": "sim", "messages": CHAT, "stream": True, "max_completion_tokens": 3,
            "stream_options": {"include_usage": True}}
    status, lines, _, _ = post_stream(sim + "/v1/chat/completions", body)
    assert status == 200
    events = [e for _, e in sse(lines)]
    assert events[-1] == "[DONE]"
    role, *content, usage_chunk = events[:-1]
    assert role["object"] == "chat.completion.chunk"
    assert role["choices"][0]["delta"] == {"role": "assistant", "content": ""}
    assert len(content) == 3 and all(set(c["choices"][0]["delta"]) == {"content"} for c in content)
    assert content[-1]["choices"][0]["finish_reason"] == "length"  # max tokens given
    assert all(c["usage"] is None for c in [role, *content])
    assert usage_chunk["choices"] == []
    assert usage_chunk["usage"] == {"prompt_tokens": 6, "completion_tokens": 3, "total_tokens": 9}
    truth = usage_chunk["llmsim"]
    assert truth["scheduled_first_token_ms"] == pytest.approx(truth["queue_ms"] + 100, abs=0.01)
    assert len(truth["scheduled_token_ms"]) == 3 and len(truth["chunk_sent_ms"]) == 3
    assert [b - a for a, b in itertools.pairwise(truth["scheduled_token_ms"])] \
        == pytest.approx([20, 20], abs=0.01)
    assert all(0 <= s - d < 15 for s, d in zip(truth["chunk_sent_ms"], truth["scheduled_token_ms"], strict=True))


def test_non_streaming_and_max_tokens(sim: str) -> None:
    req = urllib.request.Request(sim + "/v1/completions", data=json.dumps(
        {"prompt": ["one two", "three"], "max_tokens": 2, "min_tokens": 1, "ignore_eos": True}).encode(),
        headers={"Content-Type": "application/json"})
    t0 = time.perf_counter()
    with urllib.request.urlopen(req, timeout=5) as resp:
        data = json.loads(resp.read())
    assert 0.100 <= time.perf_counter() - t0 < 0.250
    assert data["usage"] == {"prompt_tokens": 3, "completion_tokens": 2, "total_tokens": 5}
    assert len(data["choices"][0]["text"].split()) == 2 and data["choices"][0]["finish_reason"] == "length"
    assert "llmsim" in data


def test_bad_requests(sim: str) -> None:
    def status(path: str, body: Any) -> int:
        req = urllib.request.Request(sim + path, data=json.dumps(body).encode(),
                                     headers={"Content-Type": "application/json"})
        try:
            with urllib.request.urlopen(req, timeout=5) as resp:
                return int(resp.status)
        except urllib.error.HTTPError as exc:
            return exc.code

    assert status("/v1/completions", {"prompt": "x", "model": "other"}) == 404
    assert status("/v1/completions", {"prompt": "x", "max_tokens": 0}) == 400
    assert status("/v1/completions", {"prompt": "x", "max_tokens": 1, "min_tokens": 2}) == 400
    assert status("/v1/completions", {"max_tokens": 1}) == 400
    assert status("/v1/chat/completions", {"messages": "hi"}) == 400


def test_models_health_tags(sim: str) -> None:
    assert get(sim + "/health")[0] == 200
    assert [m["id"] for m in json.loads(get(sim + "/v1/models")[1])["data"]] == ["sim"]
    assert json.loads(get(sim + "/api/tags")[1])["models"][0]["name"] == "sim:latest"


def test_prompt_token_counting() -> None:
    assert count_words("  a  b\tc\n") == 3
    assert count_words([1, 2, 3, 4]) == 4
    assert count_messages([{"role": "user", "content": [{"type": "text", "text": "x y"}]},
                           {"role": "user", "content": "z"}]) == 3


# ---- Ollama protocol ----------------------------------------------------------------------------------


@pytest.mark.parametrize("path", ["/api/generate", "/api/chat"])
def test_ollama_ndjson_final_object(sim: str, path: str) -> None:
    body: dict[str, Any] = {"model": "sim:latest", "options": {"num_predict": 4}}
    body.update({"messages": CHAT} if path == "/api/chat" else {"prompt": "why is the sky blue"})
    status, lines, _, _ = post_stream(sim + path, body)  # Ollama streams by default
    assert status == 200
    objs = [json.loads(line) for _, line in lines]
    *pieces, final = objs
    assert len(pieces) == 4 and not any(p["done"] for p in pieces)
    key = "message" if path == "/api/chat" else "response"
    assert all(key in p for p in pieces)
    assert final["done"] is True and final["done_reason"] == "length"
    assert final["eval_count"] == 4
    assert final["prompt_eval_count"] == (6 if path == "/api/chat" else 5)
    assert final["load_duration"] == 0
    assert 90e6 <= final["prompt_eval_duration"] <= 130e6  # ns: ttft 100 ms
    assert 50e6 <= final["eval_duration"] <= 75e6  # 3 gaps of 20 ms
    assert final["total_duration"] >= final["prompt_eval_duration"] + final["eval_duration"]


# ---- queueing, faults, metrics ------------------------------------------------------------------------


def test_max_concurrency_queues_and_metrics_show_waiting() -> None:
    with running(SimConfig(ttft_ms=50, itl_ms=10, output_tokens=5, max_concurrency=1)) as server:
        results: list[tuple[float, float]] = []
        body = {"prompt": "x", "stream": True}

        def one() -> None:
            _, lines, t0, _ = post_stream(server.url + "/v1/completions", body)
            events = sse(lines)
            results.append((t0 + events[0][0], t0 + events[-2][0]))  # absolute first and last token

        threads = [threading.Thread(target=one) for _ in range(2)]
        for t in threads:
            t.start()
        time.sleep(0.03)
        during = get(server.url + "/metrics")[1]
        for t in threads:
            t.join(10)
        assert metric(during, "vllm:num_requests_running") == 1
        assert metric(during, "vllm:num_requests_waiting") == 1
        (_, first_end), (second_ttft, _) = sorted(results)
        # the second sequence starts when the first one ends: its first token comes ttft after that
        assert second_ttft - first_end == pytest.approx(0.050, abs=0.020)
        after = get(server.url + "/metrics")[1]
        assert metric(after, "vllm:num_requests_waiting") == 0 == metric(after, "vllm:num_requests_running")
        assert metric(after, "vllm:request_queue_time_seconds_count") == 2
        assert metric(after, "vllm:request_queue_time_seconds_sum") >= 0.08  # one waited ~90 ms


def test_error_rate_one_answers_500() -> None:
    with running(SimConfig(error_rate=1.0, output_tokens=3)) as server:
        status, lines, _, _ = post_stream(server.url + "/v1/chat/completions", {"messages": CHAT, "stream": True})
        assert status == 500 and "injected error" in lines[0][1]
        status, _, _, _ = post_stream(server.url + "/api/generate", {"prompt": "x"})
        assert status == 500
        text = get(server.url + "/metrics")[1]
        assert metric(text, "llmsim:injected_errors_total") == 2
        assert metric(text, "vllm:request_success_total") == 0


def test_disconnect_rate_one_cuts_the_stream() -> None:
    with running(SimConfig(disconnect_rate=1.0, ttft_ms=5, itl_ms=2, output_tokens=6, seed=3)) as server:
        status, lines, _, error = post_stream(server.url + "/v1/completions", {"prompt": "x", "stream": True})
        assert status == 200 and error  # the chunked body ended without its terminator
        events = sse(lines)
        assert 1 <= len(events) < 6 and "[DONE]" not in [e for _, e in events]
        # Ollama too: no final `done: true` object
        status, lines, _, error = post_stream(server.url + "/api/chat", {"messages": CHAT})
        assert status == 200 and error
        assert not any(json.loads(line)["done"] for _, line in lines)
        text = get(server.url + "/metrics")[1]
        assert metric(text, "llmsim:injected_disconnects_total") == 2
        assert metric(text, "vllm:num_requests_running") == 0
        assert get(server.url + "/health")[0] == 200  # the server survives


def test_tokens_per_chunk_and_client_abort() -> None:
    with running(SimConfig(ttft_ms=20, itl_ms=10, output_tokens=7, tokens_per_chunk=3)) as server:
        _, lines, _, _ = post_stream(server.url + "/v1/completions", {"prompt": "x", "stream": True,
                                                                      "stream_options": {"include_usage": True}})
        events = [e for _, e in sse(lines)]
        assert [len(e["choices"][0]["text"].split()) for e in events[:3]] == [3, 3, 1]
        truth = events[3]["llmsim"]
        assert truth["tokens_per_chunk"] == 3 and events[3]["usage"]["completion_tokens"] == 7
        # chunk k goes out when its last token is due: tokens 2, 5, 6
        due = truth["scheduled_token_ms"]
        lateness = [s - d for s, d in zip(truth["chunk_sent_ms"], [due[2], due[5], due[6]], strict=True)]
        assert all(0 <= late < 5 for late in lateness), lateness
        # a client that goes away mid-stream frees the slot
        conn = http.client.HTTPConnection(server.host, server.port, timeout=5)
        conn.request("POST", "/v1/completions", json.dumps({"prompt": "x", "stream": True, "max_tokens": 50}),
                     {"Content-Type": "application/json"})
        resp = conn.getresponse()
        resp.fp.readline()
        conn.close()
        deadline = time.monotonic() + 3
        while metric(get(server.url + "/metrics")[1], "vllm:num_requests_running") and time.monotonic() < deadline:
            time.sleep(0.05)
        assert metric(get(server.url + "/metrics")[1], "vllm:num_requests_running") == 0


def test_metrics_counters_move(sim: str) -> None:
    before = get(sim + "/metrics")[1]
    post_stream(sim + "/v1/completions", {"prompt": "one two three", "stream": True, "max_tokens": 2})
    after = get(sim + "/metrics")[1]
    assert "# TYPE vllm:time_to_first_token_seconds histogram" in after
    for name, delta in (("vllm:prompt_tokens_total", 3), ("vllm:generation_tokens_total", 2),
                        ("vllm:request_success_total", 1), ("vllm:time_to_first_token_seconds_count", 1),
                        ("vllm:e2e_request_latency_seconds_count", 1)):
        assert metric(after, name) - metric(before, name) == delta, name
    assert metric(after, 'vllm:time_to_first_token_seconds_bucket{model_name="sim",le="0.08"}') == 0
    assert metric(after, 'vllm:time_to_first_token_seconds_bucket{model_name="sim",le="+Inf"}') >= 1


def test_cli_settings() -> None:
    args, cfg = parse_args(["--port", "9", "--model", "m", "--ttft-ms", "1.5", "--tokens-per-chunk", "2",
                            "--error-rate", "0.25", "--seed", "4"])
    assert (args.port, cfg.model, cfg.ttft_ms, cfg.tokens_per_chunk, cfg.error_rate, cfg.seed) == (
        9, "m", 1.5, 2, 0.25, 4)
    with pytest.raises(SystemExit):
        parse_args(["--error-rate", "2"])
    with pytest.raises(SystemExit):
        parse_args(["--max-concurrency", "0"])


# ---- the service ----------------------------------------------------------------------------------------


def make_service(tmp_path: Path, runtime: str, images: dict[str, str] | None = None,
                 host_bin_dir: str = HOST_BIN_DIR) -> LlmSim:
    return service_for("llm-sim", tmp_path, runtime, images, host_bin_dir)  # type: ignore[no-any-return]


def render(tmp_path: Path, runtime: str, images: dict[str, str] | None = None,
           options: dict[str, Any] | None = None) -> str:
    service = make_service(tmp_path, runtime, images)
    values = service.resolve(options or {})
    assert values["runtime"] == runtime
    return service.render(values, RUN_DIR)


@pytest.mark.usefixtures("fixed_env")
def test_script_shape(tmp_path: Path) -> None:
    none = render(tmp_path, "none")
    opts = sbatch_options(none)
    assert opts["job-name"] == "benchctl-llm-sim" and opts["cpus-per-task"] == "2" and "gres" not in opts
    assert f"export PATH={HOST_BIN_DIR}:" in none
    assert ('python3 -u -m benchctl.llmsim --host 127.0.0.1 --port "$PORT" --model="$MODEL" --ttft-ms 50 '
            "--itl-ms 10 --output-tokens 128 --tokens-per-chunk 1 --max-concurrency 256 --error-rate 0 "
            "--disconnect-rate 0 --api-key-env BENCHCTL_API_KEY &") in none  # the job's own key, by name
    assert "_bc_http_ok /health" in none
    assert "--api-key-env" not in render(tmp_path, "none", options={"no_auth": True})
    assert "--invalid-rate" not in none  # only when asked for
    assert "--disconnect-rate 0 --invalid-rate 0.25 --api-key" in render(tmp_path, "none",
                                                                         options={"invalid_rate": 0.25})
    assert "--disconnect-rate 0 --prefill-ms-per-1k 150 --api-key" in render(tmp_path, "none",
                                                                             options={"prefill_ms_per_1k": 150})
    fallback = render(tmp_path, "apptainer")
    assert f"export PATH={HOST_BIN_DIR}:" in fallback and "apptainer exec" not in fallback
    assert "no llm-sim image is configured" in fallback
    image = render(tmp_path, "apptainer", {"llm-sim": IMAGE})
    assert 'apptainer exec "${BINDS[@]}" "$SIF" python3 -u -m benchctl.llmsim' in image
    assert f"export PATH={HOST_BIN_DIR}" not in image


@pytest.mark.skipif(BASH is None, reason="bash not installed")
def test_hostile_model_name_is_quoted(tmp_path: Path) -> None:
    script = render(tmp_path, "none", options={"model": "x'; touch /tmp/pwned; `id` $(id)"})
    ok, err = bash_syntax_ok(script)
    assert ok, err
    assert "MODEL='x'\"'\"'; touch /tmp/pwned; `id` $(id)'" in script


@pytest.mark.parametrize(("flag", "value"), [("--ttft-ms", "abc"), ("--itl-ms", "-1"), ("--error-rate", "1.5"),
                                           ("--disconnect-rate", "nan"), ("--invalid-rate", "2"),
                                           ("--output-tokens", "0"), ("--model", " ")])
def test_bad_values_are_refused_by_their_option(flag: str, value: str) -> None:
    """Refused when the line (or a recipe) is parsed, before anything is rendered or submitted."""
    [opt] = [o for o in LlmSim.start_options() if o.flag == flag]
    with pytest.raises(OptionError, match=flag):
        opt.convert(value)


def test_bad_value_on_the_command_line_submits_nothing(app: App, fake_slurm: FakeSlurm) -> None:
    assert app.run_line("start llm-sim --error-rate 1.5") is False
    assert "--error-rate" in app.out.getvalue()  # type: ignore[attr-defined]
    assert not [c for c in fake_slurm.calls if c[0] == "sbatch"]


# ---- a whole job: the rendered script, the local executor, the real simulator -----------------------------


@pytest.mark.skipif(BASH is None, reason="bash not installed")
def test_local_job_serves_completions(tmp_path: Path) -> None:
    service = make_service(tmp_path, "none", host_bin_dir=str(Path(sys.executable).parent))
    job = service.submit(service.resolve({"time": "5", "ttft_ms": "20", "itl_ms": "5", "output_tokens": 4,
                                          "model": "sim-e2e"}))
    try:
        job = service.wait_ready(job, timeout=20)
        assert job.state is JobState.RUNNING and job.ready
        endpoint = service.endpoint(job)
        assert endpoint is not None
        body = {"model": "sim-e2e", "prompt": "hello", "stream": True, "stream_options": {"include_usage": True}}
        assert post_stream(endpoint.url + "/v1/completions", body)[0] == 401  # the job's key is required
        status, lines, _, _ = post_stream(endpoint.url + "/v1/completions", body, service.credentials(job))
        assert status == 200
        events = [e for _, e in sse(lines)]
        assert events[-1] == "[DONE]" and events[-2]["usage"]["completion_tokens"] == 4
        assert service.log_info(job).markers["MODEL"] == "sim-e2e"
    finally:
        job = service.stop(job, grace=10, poll=0.2)
    assert job.state.is_final
    assert "STOPPED" in service.log_info(job).markers
    assert "llmsim: stopped" in Path(job.out_path).read_text()
