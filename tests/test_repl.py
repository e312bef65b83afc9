"""The real interactive loop (``run_repl``) driven through a prompt_toolkit pipe input, headless."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator

import pytest
from prompt_toolkit.input import PipeInput, create_pipe_input
from prompt_toolkit.output import DummyOutput

from benchctl.app import App
from benchctl.repl import run_repl
from tests.fakes import FakeSlurm


@pytest.fixture
def pipe() -> Iterator[PipeInput]:
    with create_pipe_input() as inp:
        yield inp


@pytest.fixture
def repl_app(make_app) -> App:  # type: ignore[no-untyped-def]
    app = make_app()
    # The poller thread polls only active jobs; keep it quiet so output order is deterministic.
    app.settings.values["ui.poll_interval"] = 60.0
    return app


def run(app: App, pipe: PipeInput, *, timeout: float = 10.0) -> None:
    """run_repl in a thread, so a loop that fails to end fails the test instead of hanging it."""
    errors: list[BaseException] = []

    def target() -> None:
        try:
            run_repl(app, input=pipe, output=DummyOutput())
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    thread = threading.Thread(target=target, daemon=True)
    thread.start()
    thread.join(timeout)
    assert not thread.is_alive(), "the REPL did not end"
    if errors:
        raise errors[0]


def output(app: App) -> str:
    return app.out.getvalue()  # type: ignore[attr-defined]


def transcript(app: App) -> str:
    return (app.session_dir / "transcript.txt").read_text()


def test_lines_run_then_eof_ends_and_autosaves(repl_app: App, pipe: PipeInput, fake_slurm: FakeSlurm) -> None:
    pipe.send_text("help\r")
    pipe.send_text("bogus\r")
    pipe.send_text("start chroma --dry-run\r")
    pipe.close()
    run(repl_app, pipe)

    out = output(repl_app)
    assert "benchctl — executor slurm, profile meluxina" in out
    assert "services: chroma" in out  # help
    assert "error: unknown command 'bogus' (try 'help')" in out
    assert "#SBATCH --job-name=benchctl-chroma" in out
    assert out.index("services: chroma") < out.index("error: unknown command") < out.index("#SBATCH")
    assert f"transcript saved to {repl_app.session_dir / 'transcript.txt'}" in " ".join(out.split())
    assert repl_app.ui.errors == 1
    assert not any(c[0] == "sbatch" for c in fake_slurm.calls)

    text = transcript(repl_app)
    assert "benchctl> help" in text
    assert "benchctl> bogus" in text
    assert "error: unknown command 'bogus'" in text
    assert "benchctl> start chroma --dry-run" in text
    assert "#SBATCH --time=01:00:00" in text


def test_ctrl_c_does_not_end_the_loop(repl_app: App, pipe: PipeInput) -> None:
    pipe.send_text("hel\x03")  # half-typed line, then Ctrl-C: the line is dropped
    pipe.send_text("help\r")
    pipe.close()
    run(repl_app, pipe)
    assert "services: chroma" in output(repl_app)
    text = transcript(repl_app)
    assert "benchctl> help" in text
    assert "benchctl> hel\n" not in text


def test_exit_ends_the_loop_before_later_lines(repl_app: App, pipe: PipeInput) -> None:
    pipe.send_text("help\r")
    pipe.send_text("exit\r")
    pipe.send_text("bogus\r")  # never read: exit came first
    # The pipe stays open: only `exit` can end this loop.
    run(repl_app, pipe)
    assert "services: chroma" in output(repl_app)
    assert "bogus" not in output(repl_app)
    assert "benchctl> exit" in transcript(repl_app)


def test_empty_lines_are_no_ops(repl_app: App, pipe: PipeInput, fake_slurm: FakeSlurm) -> None:
    pipe.send_text("start chroma\r")
    pipe.send_text("\r\r")
    pipe.close()
    run(repl_app, pipe)
    assert len([c for c in fake_slurm.calls if c[0] == "sbatch"]) == 1  # Enter never repeats `start`
    assert len(repl_app.jobs.all()) == 1


def test_history_is_saved_and_shown(repl_app: App, pipe: PipeInput) -> None:
    pipe.send_text("help\r")
    pipe.send_text("status\r")
    pipe.send_text("history\r")
    pipe.close()
    run(repl_app, pipe)
    lines = output(repl_app).splitlines()
    assert "1  help" in lines and "2  status" in lines


def test_secret_lines_stay_out_of_history_and_transcript(repl_app: App, pipe: PipeInput) -> None:
    pipe.send_text("start chroma --hf-token hf_abcdefghijklmnop\r")
    pipe.send_text("help\r")
    pipe.close()
    run(repl_app, pipe)
    from benchctl.config import state_dir

    history = (state_dir() / "history").read_text()
    assert "help" in history
    assert "hf_abcdefghijklmnop" not in history
    assert "hf_abcdefghijklmnop" not in transcript(repl_app)


def test_poller_announces_state_changes(make_app, pipe: PipeInput, fake_slurm: FakeSlurm) -> None:  # type: ignore[no-untyped-def]
    app = make_app()
    app.settings.values["ui.poll_interval"] = 0.5  # the poller's minimum

    def drive() -> None:
        pipe.send_text("start chroma\r")
        deadline = time.monotonic() + 5
        while "100" not in fake_slurm.jobs and time.monotonic() < deadline:
            time.sleep(0.05)
        fake_slurm.jobs["100"].state = "RUNNING"
        fake_slurm.jobs["100"].nodes = "mel0009"
        while "PENDING → RUNNING" not in output(app) and time.monotonic() < deadline:
            time.sleep(0.05)
        pipe.close()

    driver = threading.Thread(target=drive, daemon=True)
    driver.start()
    run(app, pipe)
    driver.join(1)
    assert "[chroma job 100] PENDING → RUNNING on mel0009" in output(app)
    assert "PENDING → RUNNING" in transcript(app)
