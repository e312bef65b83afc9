"""Secrets typed in the shell reach no file: not the history, the transcript, benchctl's log or a result -- and
masking replaces the secret only, never the words around it. A secret meant for a job script is refused."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import pytest

from benchctl.app import App, setup_logging
from benchctl.config import state_dir
from benchctl.history import RedactingFileHistory
from benchctl.llmsim import SimConfig, running
from benchctl.redact import redact_line
from tests.test_commands import clear, fails_with, output

GHP = "ghp_" + "A1b2C3d4E5f6G7h8I9j0K1l2"
SK = "sk-" + "proj-Abcdefghijklmnop1234"
LINES = [
    "bench llm --url http://user:secretpass@127.0.0.1:1 --model sim",
    f"bench llm --url http://127.0.0.1:1 --model {GHP}",
    f'start vllm --extra-args "--api-key {SK}" --dry-run',
    "check --password=hunter2",
    "start chroma HF_TOKEN=hf_ZyXwVuTsRqPoNmLk",
    "bench llm --url http://127.0.0.1:1 --model m --header 'Authorization: Bearer tok.en.value'",
]
SECRETS = ["secretpass", GHP, SK, "hunter2", "hf_ZyXwVuTsRqPoNmLk", "tok.en.value"]


def test_masking_keeps_the_words_around_the_secret(app: App) -> None:
    assert redact_line(LINES[2]) == 'start vllm --extra-args "--api-key ****" --dry-run'  # the quote stays
    err = fails_with(app, "check --password=hunter2")
    assert err == "error: check: unknown option --password (see 'help check')"  # "(see" is not a secret


def test_no_secret_reaches_history_transcript_or_log(app: App, tmp_path: Path) -> None:
    setup_logging()
    history = RedactingFileHistory(tmp_path / "history")
    for line in LINES:
        history.append_string(line)
        app.ui.transcript.record_input("benchctl> ", line)
        app.run_line(line)
    logging.getLogger("benchctl.test").error("with %s and %s", "secretpass", f"token {GHP}")
    app.history_strings = list(history.get_strings())  # this session's lines (in memory, unmasked)
    clear(app)
    assert app.run_line("history")
    shown = output(app)
    assert "--password=****" in shown and "http://user:****@127.0.0.1:1" in shown
    transcript = app.ui.transcript.save(tmp_path / "t.txt").read_text()
    html = app.ui.transcript.save(tmp_path / "t.html", html=True).read_text()
    files = {"history": (tmp_path / "history").read_text(), "transcript": transcript, "html": html,
             "log": (state_dir() / "logs" / "benchctl.log").read_text(), "shown": shown}
    for name, text in files.items():
        for secret in SECRETS:
            assert secret not in text, (name, secret)
    assert "benchctl> check --password=****" in transcript


def test_a_secret_for_a_job_script_is_refused(app: App) -> None:
    err = fails_with(app, f'start vllm --extra-args "--api-key {SK}" --dry-run')
    assert "--extra-args holds a secret" in err and "--hf-token-env" in err and SK not in err
    assert "holds a secret" in fails_with(app, "start vllm --model hf_ZyXwVuTsRqPoNmLk --dry-run")
    assert app.run_line("start vllm --model m/x --extra-args '--enforce-eager' --dry-run")  # ordinary values pass


def test_result_files_hold_no_url_password(make_app, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    app = make_app(profile="local", executor="local")
    out = tmp_path / "run.json"
    with running(SimConfig(ttft_ms=1, itl_ms=1, output_tokens=4)) as sim:
        url = sim.url.replace("http://", "http://bob:pa55word@")
        line = f"bench llm --url {url} --model sim --requests 3 --concurrency 1 --output-tokens 4 --output {out}"
        assert app.run_line(line), output(app)
    run_dir = Path(output(app).split("results: ", 1)[1].split()[0]).parent
    for name in ("run.json", "summary.csv", "requests.jsonl"):
        text = (run_dir / name).read_text()
        assert "pa55word" not in text, name
    assert json.loads(out.read_text())["config"]["url"].startswith("http://bob:****@")


@pytest.mark.parametrize("line", ["bench vllm --max-tokens 512", "start vllm --hf-token-env HF_TOKEN",
                                  "bench llm --api-key-env MY_KEY --url http://n1:8000"])
def test_names_of_secrets_are_not_secrets(line: str) -> None:
    assert redact_line(line) == line
