"""Prompt sources of the LLM benchmark: files (JSONL, ShareGPT), request bodies, /tokenize calibration."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web

from benchctl.bench.llm.loadgen import LlmConfig, request_body
from benchctl.bench.llm.prompts import PromptError, calibrate, load_prompts, prompt_text
from benchctl.services.vllm import served_models


def test_jsonl_prompt_forms(tmp_path: Path) -> None:
    path = tmp_path / "p.jsonl"
    path.write_text('{"prompt": "hello"}\n\n{"text": "plain", "output_tokens": 7}\n'
                    '{"messages": [{"role": "system", "content": "be brief"}, {"role": "user", "content": "hi"}]}\n'
                    '{"conversations": [{"from": "system", "value": "s"}, {"from": "human", "value": "q?"},'
                    ' {"from": "gpt", "value": "a"}]}\n')
    prompts = load_prompts(path)
    assert [p.text for p in prompts] == ["hello", "plain", "be brief\nhi", "q?"]
    assert prompts[1].output_tokens == 7 and prompts[0].output_tokens is None
    assert prompts[2].messages == (("system", "be brief"), ("user", "hi"))


def test_sharegpt_json_list(tmp_path: Path) -> None:
    path = tmp_path / "sharegpt.json"
    path.write_text(json.dumps([{"id": "a", "conversations": [{"from": "human", "value": "first"}]},
                                {"id": "b", "conversations": [{"from": "human", "value": "second"}]}]))
    assert [p.text for p in load_prompts(path)] == ["first", "second"]


@pytest.mark.parametrize(("content", "message"), [
    ('{"prompt": "ok"}\nnot json\n', "line 2: not JSON"),
    ('{"nothing": 1}\n', "line 1: expected 'prompt'"),
    ('{"prompt": "x", "output_tokens": 0}\n', "output_tokens must be"),
    ('{"messages": [{"role": "user"}]}\n', "needs string 'role' and 'content'"),
    ('{"conversations": [{"from": "gpt", "value": "a"}]}\n', "no human turn"),
    ("\n\n", "no prompts"),
    ("[1, 2]", "entry 1: expected a JSON object"),
])
def test_broken_prompt_files_name_the_place(tmp_path: Path, content: str, message: str) -> None:
    path = tmp_path / "bad.jsonl"
    path.write_text(content)
    with pytest.raises(PromptError, match=message):
        load_prompts(path)


def test_missing_prompt_file(tmp_path: Path) -> None:
    with pytest.raises(PromptError, match="cannot read prompts"):
        load_prompts(tmp_path / "nope.jsonl")


def test_file_prompts_cycle_and_keep_their_own_length(tmp_path: Path) -> None:
    path = tmp_path / "p.jsonl"
    path.write_text('{"prompt": "a"}\n{"prompt": "b", "max_tokens": 5}\n')
    cfg = LlmConfig(backend="openai", model="m", output_tokens=9, loaded_prompts=load_prompts(path))
    bodies = [request_body(cfg, i) for i in range(3)]
    assert [b["prompt"] for b in bodies] == ["a", "b", "a"]
    assert bodies[0]["max_tokens"] == 9 and bodies[0]["ignore_eos"] is True  # synthetic length: forced
    assert bodies[1]["max_tokens"] == 5 and "ignore_eos" not in bodies[1]  # the file's own target: natural end
    assert "loaded_prompts" not in cfg.record() and cfg.record()["output_tokens"] == 9


def test_request_bodies_per_backend() -> None:
    for backend, key in (("openai", "prompt"), ("openai-chat", "messages"), ("ollama", "prompt"),
                         ("ollama-chat", "messages")):
        body = request_body(LlmConfig(backend=backend, model="m", input_tokens=4, output_tokens=3), 2)
        assert body["stream"] is True and key in body
    chat = request_body(LlmConfig(backend="openai-chat", model="m", output_tokens=3), 0)
    assert chat["max_completion_tokens"] == 3 and chat["min_tokens"] == 3
    assert chat["stream_options"] == {"include_usage": True}
    ollama = request_body(LlmConfig(backend="ollama", model="m", output_tokens=3), 0)
    assert ollama["options"] == {"num_predict": 3}


def test_synthetic_prompts_differ_only_in_the_fixed_width_prefix() -> None:
    a, b = prompt_text(1, 6, pad=2).split(), prompt_text(123456, 6, pad=2).split()
    assert len(a) == len(b) == 8 and a[1:] == b[1:] and a[0] != b[0] and len(a[0]) == len(b[0])
    assert a[-2:] == ["a", "a"]


def tokenize_app(per_word: dict[str, int], template: int, max_len: int = 4096) -> web.Application:
    """A /tokenize like vLLM's: counts with a made-up tokenizer (word -> tokens) plus a chat template cost."""
    async def tokenize(request: web.Request) -> web.Response:
        body: dict[str, Any] = await request.json()
        text = body["messages"][0]["content"] if "messages" in body else body["prompt"]
        count = sum(per_word.get(w, 3) for w in text.split()) + (template if "messages" in body else 0)
        return web.json_response({"count": count, "max_model_len": max_len, "tokens": []})

    app = web.Application()
    app.router.add_post("/tokenize", tokenize)
    return app


async def _calibrate_against(app: web.Application, backend: str, tokens: int) -> Any:
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    try:
        return await calibrate(f"http://127.0.0.1:{port}", backend, "m", tokens)
    finally:
        await runner.cleanup()


@pytest.mark.parametrize(("backend", "tokens"), [("openai", 128), ("openai", 7), ("openai-chat", 100),
                                                 ("openai", 1000)])
def test_calibration_hits_the_token_count_exactly(backend: str, tokens: int) -> None:
    # Words cost 3 tokens (prefix 4, "a" 1), so whole words alone cannot reach most counts: padding does.
    app = tokenize_app({"a": 1}, template=9)
    cal = asyncio.run(_calibrate_against(app, backend, tokens))
    assert cal.tokens == tokens, cal
    text = prompt_text(0, cal.words, cal.pad)
    count = sum(1 if w == "a" else 3 for w in text.split()) + (9 if backend == "openai-chat" else 0)
    assert count == tokens and "by the server's tokenizer" in cal.note
    assert cal.max_model_len == 4096


def test_calibration_falls_back_to_words_without_tokenize() -> None:
    empty = web.Application()  # every path 404s, like llm-sim or a non-vLLM server
    cal = asyncio.run(_calibrate_against(empty, "openai", 50))
    assert (cal.words, cal.pad, cal.tokens) == (50, 0, None) and "HTTP 404" in cal.note
    ollama = asyncio.run(calibrate("http://127.0.0.1:9", "ollama", "m", 50))
    assert ollama.words == 50 and "no /tokenize" in ollama.note


def test_served_models_parses_the_openai_list() -> None:
    assert served_models('{"object": "list", "data": [{"id": "tiny"}, {"id": "lora"}]}') == ["tiny", "lora"]
    assert served_models("not json") == [] and served_models('{"data": 3}') == [] and served_models("[]") == []


def test_calibration_against_the_simulators_tokenize() -> None:
    from benchctl.llmsim import SimConfig, running

    with running(SimConfig()) as sim:
        for backend in ("openai", "openai-chat"):
            cal = asyncio.run(calibrate(sim.url, backend, "sim", 37))
            assert (cal.words + cal.pad, cal.tokens) == (37, 37), cal  # one token per word, no chat overhead


def test_server_means_from_histogram_deltas() -> None:
    from benchctl.bench.llm.server_metrics import server_means

    deltas = {'vllm:time_to_first_token_seconds_sum{model_name="a"}': 1.0,
              'vllm:time_to_first_token_seconds_count{model_name="a"}': 10.0,
              'vllm:time_to_first_token_seconds_sum{model_name="b"}': 3.0,
              'vllm:time_to_first_token_seconds_count{model_name="b"}': 10.0,
              "vllm:request_queue_time_seconds_sum": 0.5, "vllm:request_queue_time_seconds_count": 0.0,
              "vllm:generation_tokens_total": 99.0}
    assert server_means(deltas) == {"time_to_first_token": pytest.approx(200.0)}  # pooled; no 0-count means
