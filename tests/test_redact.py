"""benchctl.redact and benchctl.history: secrets never reach the history file, transcripts or logs."""

from __future__ import annotations

import stat
from pathlib import Path

import pytest
from prompt_toolkit.history import InMemoryHistory

from benchctl.history import RedactingFileHistory, make_history
from benchctl.redact import MASK, has_secret, redact, redact_line

HF = "hf_AbCdEfGhIjKlMnOpQrStUvWxYz0123456789"

# (line, its redacted form)
SECRET_LINES = [
    (f"start vllm --hf-token {HF}", f"start vllm --hf-token {MASK}"),
    (f"start vllm --hf-token={HF} --time 01:00:00", f"start vllm --hf-token={MASK} --time 01:00:00"),
    ("bench --api-key=x", f"bench --api-key={MASK}"),
    ("bench --api-key sk-live-123 --n 10", f"bench --api-key {MASK} --n 10"),
    ("bench --apikey=abc", f"bench --apikey={MASK}"),
    ("HF_TOKEN=x benchctl", f"HF_TOKEN={MASK} benchctl"),
    ("export HF_TOKEN=hf_short", f"export HF_TOKEN={MASK}"),
    ("connect db password=hunter2", f"connect db password={MASK}"),
    ("login --password 'hunter2'", f"login --password {MASK}"),
    ("OPENAI_API_KEY=sk-1", f"OPENAI_API_KEY={MASK}"),
    ("db_passwd=x", f"db_passwd={MASK}"),
    ("CLIENT_SECRET=abc", f"CLIENT_SECRET={MASK}"),
    (f"pull with {HF} please", f"pull with {MASK} please"),
]

NORMAL_LINES = [
    "start chroma --time 01:00:00 --cpus 4",
    "start chroma --data-dir /project/scratch/p200981/tester/chroma --runtime apptainer",
    "status",
    "logs 3609965 --tail 50",
    "stop chroma:12",
    "config",
    "export HF_HOME=/project/scratch/hf",
    "check --wait 600",
    "save ~/session.txt --html",
    "hf_short",  # too short to be a Hugging Face token
    "",
]


@pytest.mark.parametrize(("line", "masked"), SECRET_LINES, ids=[m for _, m in SECRET_LINES])
def test_secret_detected_and_masked(line: str, masked: str) -> None:
    assert has_secret(line)
    assert redact_line(line) == masked
    assert MASK in redact_line(line)


@pytest.mark.parametrize("line", SECRET_LINES, ids=[m for _, m in SECRET_LINES])
def test_secret_value_does_not_survive(line: tuple[str, str]) -> None:
    text, _ = line
    out = redact_line(text)
    for secret in (HF, "hunter2", "sk-live-123", "sk-1"):
        if secret in text:
            assert secret not in out


@pytest.mark.parametrize("line", NORMAL_LINES)
def test_normal_lines_untouched(line: str) -> None:
    assert not has_secret(line)
    assert redact(line) == line


def test_case_insensitive() -> None:
    assert redact_line("--HF-TOKEN abc") == f"--HF-TOKEN {MASK}"
    assert redact_line("Password=abc") == f"Password={MASK}"


def test_several_secrets_on_one_line() -> None:
    out = redact_line(f"--hf-token {HF} --api-key=k2 PASSWORD=p3")
    assert out == f"--hf-token {MASK} --api-key={MASK} PASSWORD={MASK}"


def test_redact_is_idempotent() -> None:
    for line, masked in SECRET_LINES:
        assert redact_line(redact_line(line)) == masked


# ---- history ----------------------------------------------------------------------------------------


def test_history_skips_secret_lines_but_writes_normal_ones(tmp_path: Path) -> None:
    path = tmp_path / "history"
    history = RedactingFileHistory(path)
    history.append_string("start chroma --time 01:00:00")
    history.append_string(f"start vllm --hf-token {HF}")
    history.append_string("bench --api-key=x")
    history.append_string("HF_TOKEN=x status")
    history.append_string("password=hunter2")
    history.append_string("status")
    content = path.read_text()
    assert "start chroma --time 01:00:00" in content
    assert "status" in content
    for secret in (HF, "hf-token", "api-key", "HF_TOKEN", "hunter2"):
        assert secret not in content
    # secret lines stay in memory for this session's up-arrow
    assert f"start vllm --hf-token {HF}" in history.get_strings()
    # a new session sees only what was written
    reloaded = list(RedactingFileHistory(path).load_history_strings())
    assert reloaded == ["status", "start chroma --time 01:00:00"]  # newest first


def test_history_creates_missing_parent_dir(tmp_path: Path) -> None:
    path = tmp_path / "state" / "deeper" / "benchctl" / "history"
    assert not path.parent.exists()
    history = RedactingFileHistory(path)
    assert path.is_file()
    assert stat.S_IMODE(path.stat().st_mode) & 0o077 == 0  # not readable by others
    history.append_string("status")
    assert "status" in path.read_text()


def test_history_keeps_an_existing_file(tmp_path: Path) -> None:
    path = tmp_path / "history"
    RedactingFileHistory(path).append_string("first")
    RedactingFileHistory(path).append_string("second")
    assert list(RedactingFileHistory(path).load_history_strings()) == ["second", "first"]


def test_make_history_falls_back_to_memory(tmp_path: Path) -> None:
    blocker = tmp_path / "not-a-dir"
    blocker.write_text("x")
    history = make_history(blocker / "history")  # the parent is a file: cannot be created
    assert isinstance(history, InMemoryHistory)
    history.append_string("status")
    assert list(history.get_strings()) == ["status"]


def test_make_history_file(tmp_path: Path) -> None:
    history = make_history(tmp_path / "s" / "history")
    assert isinstance(history, RedactingFileHistory)


@pytest.mark.parametrize("line", [
    "bench vllm --max-tokens 512",
    "start vllm --tokenizer meta-llama/Llama-3.1-8B-Instruct",
    "bench vllm --max-tokens=256 --input-tokens 1024",
])
def test_llm_options_that_mention_tokens_are_not_secrets(line: str) -> None:
    assert not has_secret(line)
    assert redact(line) == line


@pytest.mark.parametrize("line, secret", [
    ("curl -H 'Authorization: Bearer abc.def.ghi' http://n1:8000", "abc.def.ghi"),
    ("QDRANT__SERVICE__API_KEY=s3cr3t qdrant", "s3cr3t"),
    ("start vllm --hf_token zzzzzzzz", "zzzzzzzz"),
])
def test_more_secret_forms(line: str, secret: str) -> None:
    assert has_secret(line)
    assert secret not in redact_line(line)
