"""Nobody else gets in: every service that supports it gets a random key of its own, handed over in the job's
environment and kept in a 0600 file; benchctl's own check and bench use it; a request without it is refused
by the REAL server (llm-sim here; vLLM in the integration test); ChromaDB, which has no authentication, is
said to be open. benchctl's folders and files are private to their owner."""

from __future__ import annotations

import json
import os
import stat
import sys
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from benchctl.app import App
from benchctl.config import state_dir

CHROMA = Path(sys.executable).with_name("chroma")



def out(app: App) -> str:
    return " ".join(app.out.getvalue().split())  # type: ignore[attr-defined]


def status_of(url: str, headers: dict[str, str] | None = None, body: bytes | None = None) -> int:
    request = urllib.request.Request(url, data=body, headers={"Content-Type": "application/json", **(headers or {})})
    try:
        with urllib.request.urlopen(request, timeout=10) as resp:
            return int(resp.status)
    except urllib.error.HTTPError as exc:
        return exc.code


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_llmsim_job_admits_only_the_holder_of_its_key(local_app: App, tmp_path: Path) -> None:
    assert local_app.run_line("start llm-sim --ttft-ms 1 --itl-ms 1 --output-tokens 4")
    assert local_app.run_line("check llm-sim --wait --timeout 30"), out(local_app)
    job = local_app.jobs.latest_for("llm-sim")
    assert job is not None
    credentials = Path(job.run_dir) / "credentials.json"
    key = json.loads(credentials.read_text())["key"]
    assert mode(credentials) == 0o600 and mode(Path(job.run_dir)) == 0o700 and len(key) >= 32
    assert f"auth: API key of this job in {credentials} (0600)" in out(local_app)
    url = f"http://127.0.0.1:{job.port}"
    body = json.dumps({"model": "sim", "prompt": "hi", "max_tokens": 2}).encode()
    assert status_of(url + "/v1/completions", body=body) == 401  # anyone else on the node: refused
    assert status_of(url + "/v1/completions", {"Authorization": "Bearer wrong"}, body) == 401
    assert status_of(url + "/v1/completions", {"Authorization": f"Bearer {key}"}, body) == 200
    assert status_of(url + "/health") == 200  # probes need no key
    assert local_app.run_line("bench llm-sim --requests 4 --concurrency 2 --output-tokens 4"), out(local_app)
    assert "4 ok, 0 failed" in out(local_app)
    local_app.run_line("save")
    run_dir = Path(out(local_app).split("results: ", 1)[1].split()[0]).parent
    home = Path(os.environ["BENCHCTL_HOME"])
    # The key is nowhere but in credentials.json: not the script, the logs, the results, the transcript.
    for path in [*Path(job.run_dir).iterdir(), *run_dir.iterdir(), *home.glob("sessions/*/*"),
                 home / "state" / "jobs.json", *state_dir().rglob("*")]:
        if path.is_file() and path != credentials:
            assert key not in path.read_text(errors="replace"), path
    assert mode(run_dir) == 0o700 and mode(run_dir / "run.json") == 0o600 and mode(home / "state") == 0o700


def test_no_auth_opts_out_and_says_so(local_app: App) -> None:
    assert local_app.run_line("start llm-sim --no-auth")
    assert local_app.run_line("check llm-sim --wait --timeout 30"), out(local_app)
    job = local_app.jobs.latest_for("llm-sim")
    assert job is not None and not (Path(job.run_dir) / "credentials.json").exists()
    assert "auth: off (--no-auth) — anyone on the cluster" in out(local_app)
    body = json.dumps({"model": "sim", "prompt": "hi", "max_tokens": 2}).encode()
    assert status_of(f"http://127.0.0.1:{job.port}/v1/completions", body=body) == 200


@pytest.mark.skipif(not CHROMA.exists(), reason="chroma is not installed next to this Python")
def test_chroma_without_authentication_is_said_to_be_open(local_app: App) -> None:
    assert local_app.run_line("start chroma")
    assert local_app.run_line("check chroma --wait --timeout 60"), out(local_app)
    assert "auth: none — ChromaDB's server has no authentication: anyone on the cluster" in out(local_app)
    assert "--no-auth" not in {o.flag for o in local_app.services["chroma"].start_options()}
