"""The shell's major frictions, reproduced in a real pseudo-terminal (issue 17): secrets stay off the disk,
options are discoverable from inside the shell, a failed start names its cause, and `bench` measures the
ready job (or the one named)."""

from __future__ import annotations

import glob
import os
import socket
from pathlib import Path

import pytest

from tests.e2e.test_pexpect import Shell, env, shell  # noqa: F401 - fixtures

pytestmark = pytest.mark.e2e

GHP = "ghp_" + "Zz9Yy8Xx7Ww6Vv5Uu4Tt3Ss2"
SECRETS = ("hunter2", "secretpass", GHP)


def test_secrets_reach_neither_history_nor_transcript(shell, env: dict[str, str], tmp_path: Path) -> None:  # noqa: F811
    sh: Shell = shell()
    sh.prompt()
    sh.run("check --password=hunter2")
    sh.expect("unknown option --password (see 'help check')")  # the words around are not eaten
    sh.prompt()
    sh.run(f"bench llm --url http://user:secretpass@127.0.0.1:1 --model {GHP} --requests 1")
    sh.expect("error: ")
    sh.prompt()
    sh.run("history")
    sh.expect("http://user:****@127.0.0.1:1")
    sh.prompt()
    target = tmp_path / "t.txt"
    sh.run(f"save {target} --html")
    sh.expect("saved ")
    sh.prompt()
    sh.run("exit")
    assert sh.exit_status() == 0
    history = Path(env["XDG_STATE_HOME"]) / "benchctl" / "history"
    texts = {"history": history.read_text(), "transcript": target.read_text(),
             "html": target.with_suffix(".html").read_text()}
    texts.update({p: Path(p).read_text() for p in glob.glob(os.path.join(env["XDG_STATE_HOME"], "**", "*.log"),
                                                             recursive=True)})
    for name, text in texts.items():
        for secret in SECRETS:
            assert secret not in text, (name, secret)
    assert "benchctl> check --password=****" in texts["transcript"]


def test_help_lists_exactly_the_options_that_apply(shell) -> None:  # noqa: F811
    sh: Shell = shell()
    sh.prompt()
    sh.run("help start vllm")
    sh.expect("options for start vllm:")
    sh.expect("--extra-args")
    sh.prompt()
    before = sh.child.before or ""
    assert "--data-dir" not in before and "--stonewall" not in before  # chroma's, io500's
    sh.run("bench chroma --help")
    sh.expect("options for bench chroma:")
    sh.expect("--concurrency LIST")
    sh.prompt()


def test_a_failed_start_names_its_cause(shell) -> None:  # noqa: F811
    with socket.socket() as held:  # somebody else's server on the port
        held.bind(("0.0.0.0", 0))
        held.listen()
        port = held.getsockname()[1]
        sh: Shell = shell()
        sh.prompt()
        sh.run(f"start chroma --port {port} --runtime none")
        sh.expect("submitted chroma")
        sh.prompt()
        sh.child.timeout = 90
        sh.run("check chroma --wait --timeout 60")
        sh.expect("ended before it was ready")
        sh.expect(f"{port} is not available")
        sh.prompt()


def test_bench_takes_the_ready_job_or_the_named_one(shell) -> None:  # noqa: F811
    sh: Shell = shell()
    sh.child.timeout = 60
    sh.prompt()
    sh.run("start llm-sim --runtime none")
    sh.expect("submitted llm-sim")
    sh.prompt()
    sh.run("check llm-sim --wait --timeout 40")
    sh.expect("ready")
    sh.prompt()
    sh.run("start llm-sim --runtime none")
    sh.expect("note: llm-sim already runs as local-1")
    sh.prompt()
    sh.run("check local-2 --wait --timeout 40")
    sh.expect("ready")
    sh.prompt()
    sh.run("bench llm-sim --requests 4 --concurrency 1 --output-tokens 4 --quiet")
    sh.expect("bench llm-sim: job local-2 (the newest ready one; also running: local-1")
    sh.expect("results: ")
    sh.prompt()
    sh.run("bench local-1 --requests 2 --concurrency 1 --output-tokens 4 --quiet")
    sh.expect("results: ")
    sh.prompt()
    sh.run("stop all")
    sh.expect("stop 2 jobs")  # the shell asks before stopping several
    sh.send("y")
    sh.expect("stopped llm-sim job local-2")
    sh.prompt()


def test_a_pasted_block_runs_line_by_line(shell) -> None:  # noqa: F811
    sh: Shell = shell()
    sh.prompt()
    sh.send("\x1b[200~status\nconfig executor\nhelp logs\x1b[201~")  # a bracketed paste of three lines
    sh.run("")
    sh.expect("no jobs tracked")
    sh.expect("executor")
    sh.expect("usage: logs")
    sh.prompt()


def test_keys_typed_during_a_command_wait_for_the_next_prompt(shell) -> None:  # noqa: F811
    sh: Shell = shell()
    sh.child.timeout = 60
    sh.prompt()
    sh.run("start llm-sim --runtime none")
    sh.prompt()
    sh.run("check llm-sim --wait --timeout 40")
    sh.expect("ready")
    sh.prompt()
    sh.run("bench llm-sim --duration 3 --concurrency 1 --output-tokens 4")
    sh.expect("prompts: ")  # the benchmark runs now (its first line is out)
    sh.send("status")  # typed while it runs
    sh.expect("results: ")
    assert "status" not in (sh.child.before or "")  # not echoed over the benchmark's output
    sh.prompt()
    sh.run("")  # the typed-ahead line is at the prompt: Enter runs it
    sh.expect("llm-sim")
    sh.expect("RUNNING")
    sh.prompt()
    sh.run("stop all --yes")
    sh.expect("stopped llm-sim job")  # stopped before the test ends (the shell is killed then: a leak)
    sh.prompt()
