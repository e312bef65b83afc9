"""The shell's small frictions (issue 17, minor items and beyond): source, one-shot sessions, autosave,
validation, local wording, 80 columns, --json/--watch, !N, config KEY, confirmation."""

from __future__ import annotations

import io
import json
import subprocess
import sys
from pathlib import Path

import pytest
from rich.console import Console

from benchctl.app import App
from benchctl.bench.llm.loadgen import client_limited
from benchctl.repl import expand_bang
from benchctl.tables import Col, FitTable
from benchctl.toolbar import make_toolbar
from tests.fakes import FakeSlurm
from tests.test_commands import clear, fails_with, output


def test_source_runs_a_file_and_stops_at_the_first_failure(app: App, tmp_path: Path) -> None:
    script = tmp_path / "cmds.bc"
    script.write_text("# a comment\nstatus\n\nbogus\nconfig\n")
    clear(app)
    assert not app.run_line(f"source {script}")
    out = output(app)
    assert "unknown command 'bogus'" in out and "1 command(s) failed" in out
    assert "no jobs tracked" in out and "SETTING" not in out  # stopped at bogus
    clear(app)
    assert not app.run_line(f"source {script} --keep-going")
    assert "SETTING" in output(app)
    assert "cannot read" in fails_with(app, f"source {tmp_path / 'nope'}")
    looping = tmp_path / "loop.bc"
    looping.write_text(f"source {looping}\n")
    clear(app)
    assert not app.run_line(f"source {looping}")
    assert "nest too deep" in output(app) and output(app).count("error:") == 2  # the cause, then the sum


def test_validation_messages(app: App) -> None:
    assert "at most 65535" in fails_with(app, "start chroma --port 99999")
    assert "expects a number, got 'abc'" in fails_with(app, "bench llm --url http://h:1 --max-error-rate abc")
    assert "--timeout is how long --wait waits" in fails_with(app, "check chroma --timeout 5")
    assert "unexpected argument 'extra'" in fails_with(app, "status extra")


def test_local_executor_wording(make_app, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    app = make_app(profile="local", executor="local")
    assert app.run_line("start llm-sim --runtime none")
    out = output(app)
    assert "partition" not in out and "time 01:00:00" in out
    assert app.run_line("check llm-sim --wait --timeout 30")
    clear(app)
    assert app.run_line("check llm-sim")
    out = output(app)
    assert "tunnel:" not in out  # no cluster to tunnel into
    labels = [line.split(":", 1)[0] for line in out.splitlines()[1:] if line.startswith("  ") and ": " in line]
    assert {"  auth", "  url", "  logs"} <= set(labels)
    starts = {len(line) - len(line.split(":", 1)[1].lstrip()) for line in out.splitlines()[1:]
              if line.startswith("  ") and ": " in line}
    assert len(starts) == 1  # the values line up
    job = app.jobs.latest_for("llm-sim")
    clear(app)
    assert app.run_line(f"logs {job.id} --err")
    assert "(empty)" in output(app) or output(app).count("\n") > 1
    assert app.run_line("stop all --yes")


def test_a_short_run_does_not_blame_the_client_cpu() -> None:
    health = {"client_cpu_percent": 104.0, "dispatch_lag_ms": {"p99": 1.0}}
    assert client_limited({"client_health": health, "duration": 0.2, "completed": 1, "failed": 0}) == ""
    long = {"client_health": health, "duration": 30.0, "completed": 500, "failed": 0}
    assert "104% of a core" in client_limited(long)


def test_tables_fit_80_columns_without_cutting_numbers() -> None:
    table = FitTable([Col("POINT", justify="left"), Col("OK"), Col("req/s"), Col("TTFT p50"), Col("TTFT p99", 2),
                      Col("TPOT p50"), Col("TPOT p99", 2), Col("ITL p50", 3), Col("E2EL p50", 1),
                      Col("out tok/s", 4), Col("goodput", 5)])
    table.add_row("c=64 (interrupted)", "1234", "45.6", "1234.5", "2345.6", "12.3", "45.6", "12.1", "12934.5",
                  "12345", "44.4")
    buf = io.StringIO()
    Console(file=buf, width=80, color_system=None).print(table)
    out = buf.getvalue()
    assert "…" not in out and "12934.5" in out and "1234.5" in out
    assert all(len(line) <= 80 for line in out.splitlines())
    assert "not shown at this width: " in " ".join(out.split())


def test_toolbar_fits_and_never_cuts_mid_word(app: App, fake_slurm: FakeSlurm) -> None:
    for _ in range(5):
        assert app.run_line("start chroma")
    text = "".join(t for _, t in make_toolbar(app, None, width=lambda: 80)())
    assert len(text) <= 79 and "| +" in text and " more " in text
    entries = [e.strip() for e in text.split("|")[1:]]
    assert all(e.startswith(("chroma:", "+")) for e in entries), entries  # whole entries only


def test_status_and_check_json(app: App, fake_slurm: FakeSlurm) -> None:
    assert app.run_line("start chroma")
    clear(app)
    assert app.run_line("status --json")
    data = json.loads(output(app))
    assert [j["service"] for j in data["jobs"]] == ["chroma"] and "endpoint" in data["jobs"][0]
    clear(app)
    assert app.run_line("check chroma --json")
    assert json.loads(output(app))["jobs"][0]["state"] == "PENDING"


def test_status_watch_redraws_on_change_until_ctrl_c(app: App, fake_slurm: FakeSlurm,
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    assert app.run_line("start chroma")
    job = app.jobs.latest_for("chroma")
    ticks = iter([lambda: None, lambda: setattr(fake_slurm.jobs[job.id], "state", "RUNNING"), lambda: None])

    def sleep(_: float) -> None:
        step = next(ticks, None)
        if step is None:
            raise KeyboardInterrupt
        step()

    monkeypatch.setattr("benchctl.commands.jobs.time.sleep", sleep)
    clear(app)
    assert app.run_line("status --watch")
    out = output(app)
    assert out.count("(Ctrl-C ends --watch)") == 2 and "RUNNING" in out and "watch ended" in out


def test_bang_n_and_config_key(app: App) -> None:
    history = ["status", "check chroma", "logs chroma"]
    assert expand_bang("!2", history) == "check chroma" and expand_bang("!!", history) == "logs chroma"
    assert expand_bang("status", history) == "status"
    with pytest.raises(ValueError, match="no such history entry"):
        expand_bang("!9", history)
    assert app.run_line("config executor")
    assert output(app).count("\n") <= 4 and "executor" in output(app)
    assert "did you mean executor?" in fails_with(app, "config executr")


def test_stop_of_several_jobs_asks_in_the_shell(app: App, fake_slurm: FakeSlurm) -> None:
    assert app.run_line("start chroma") and app.run_line("start chroma")
    asked: list[str] = []
    app.confirm = lambda q: asked.append(q) or False  # type: ignore[func-returns-value]
    clear(app)
    assert app.run_line("stop chroma")
    assert asked and "stop 2 jobs" in asked[0] and "nothing stopped" in output(app)
    assert len(app.jobs.active()) == 2
    assert app.run_line("stop all --yes")
    assert len(asked) == 1


def test_history_in_batch_mode_and_one_shot_runs_leave_no_session(tmp_path: Path) -> None:
    env = {k: v for k, v in __import__("os").environ.items()}
    state = Path(env["XDG_STATE_HOME"]) / "benchctl"
    state.mkdir(parents=True, exist_ok=True)
    (state / "history").write_text("\n# 2026-12-01 10:00:00.000000\n+status\n\n# 2026-12-01 10:00:01.000000\n"
                                   "+check chroma\n")

    def run(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "benchctl", "--executor", "local", *args], env=env,
                              text=True, capture_output=True, timeout=60)

    out = run("-e", "history")
    assert out.returncode == 0 and "1  status" in out.stdout and "2  check chroma" in out.stdout
    run("status")
    sessions = Path(env["BENCHCTL_HOME"]) / "sessions"
    assert not sessions.exists() or not list(sessions.iterdir())  # a read-only one-shot run keeps nothing
    run("-e", "start llm-sim --dry-run --runtime none; forget nothing")  # changes (or tries to): kept
    assert sessions.exists() and len(list(sessions.iterdir())) == 1


def test_autosave_refreshes_what_save_wrote(app: App, tmp_path: Path) -> None:
    target = tmp_path / "mine" / "t.txt"
    assert app.run_line(f"save {target} --html")
    assert app.run_line("status")
    app.ui.transcript.record_input("benchctl> ", "status")
    app.autosave()
    assert "benchctl> status" in target.read_text()
    html = target.with_suffix(".html").read_text()
    assert "benchctl&gt; status" in html and "white-space: pre-wrap" in html  # long lines wrap in a browser
    assert json.loads(target.with_name("t-jobs.json").read_text()) == []
