"""The command engine through ``App.onecmd`` / ``run_line`` / ``run_lines`` over the fake Slurm."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from benchctl.__main__ import split_commands
from benchctl.app import App
from benchctl.commands import CommandError, ExitRepl
from benchctl.config import load_settings
from benchctl.executors.slurm import SlurmExecutor
from benchctl.slurm.states import JobState
from tests.conftest import string_ui
from tests.fakes import FakeSlurm

SECRET = "hf_abcdefghijklmnop"


def output(app: App) -> str:
    return app.out.getvalue()  # type: ignore[attr-defined]


def clear(app: App) -> None:
    app.out.seek(0)  # type: ignore[attr-defined]
    app.out.truncate()  # type: ignore[attr-defined]


def error_lines(app: App) -> list[str]:
    return [line for line in output(app).splitlines() if line.startswith("error:")]


def sbatch_calls(fake: FakeSlurm) -> list[tuple[str, ...]]:
    return [c for c in fake.calls if c[0] == "sbatch"]


def fails_with(app: App, line: str) -> str:
    """Run ``line``: it must fail with exactly one error line, which is returned."""
    clear(app)
    assert app.run_line(line) is False, f"{line!r} should fail; output:\n{output(app)}"
    assert app.last_failed
    out = output(app).strip()
    assert out.startswith("error: "), out
    assert out.count("error:") == 1, out
    # One message (rich may wrap a long one at the console width, e.g. a long path).
    return " ".join(out.split())


@pytest.fixture
def quick_app(make_app) -> App:  # type: ignore[no-untyped-def]
    """An app whose `stop` does not wait 20 s for a graceful shutdown the fake job never reports."""
    app = make_app()
    app.settings.values["slurm.stop_grace"] = 0
    return app


def write_user_config(text: str) -> None:
    Path(os.environ["BENCHCTL_CONFIG"]).write_text(text)


# ---- parse errors ---------------------------------------------------------------------------------
def test_unknown_command_is_one_error_line(app: App) -> None:
    line = fails_with(app, "bogus")
    assert "unknown command 'bogus'" in line
    assert "help" in line


def test_unknown_command_raises_command_error_from_onecmd(app: App) -> None:
    with pytest.raises(CommandError, match="unknown command"):
        app.onecmd("bogus --x")


def test_bad_option_names_it(app: App, fake_slurm: FakeSlurm) -> None:
    line = fails_with(app, "start chroma --bogus")
    assert "unknown option --bogus" in line
    assert "help start" in line
    assert not sbatch_calls(fake_slurm)


def test_bad_option_close_to_a_real_one_gets_did_you_mean(app: App) -> None:
    assert "did you mean --time?" in fails_with(app, "start chroma --tme 01:00:00")
    assert "did you mean --data-dir?" in fails_with(app, "start chroma --data-dri /x")


def test_option_missing_its_value(app: App) -> None:
    assert "--time needs a value" in fails_with(app, "start chroma --time")


def test_bad_int(app: App, fake_slurm: FakeSlurm) -> None:
    line = fails_with(app, "start chroma --cpus x")
    assert "--cpus" in line and "'x'" in line
    assert not sbatch_calls(fake_slurm)


def test_bad_choice_lists_the_choices(app: App) -> None:
    line = fails_with(app, "start chroma --runtime docker")
    assert "--runtime" in line and "apptainer" in line and "none" in line and "'docker'" in line


def test_bad_time_value(app: App) -> None:
    assert "--time" in fails_with(app, "start chroma --time soon")


def test_flag_given_a_value(app: App) -> None:
    assert "--dry-run takes no value" in fails_with(app, "start chroma --dry-run=yes")


def test_unknown_service_lists_available(app: App, fake_slurm: FakeSlurm) -> None:
    line = fails_with(app, "start nosuch")
    assert "unknown service 'nosuch'" in line and "chroma" in line
    assert not sbatch_calls(fake_slurm)


def test_missing_and_extra_arguments(app: App) -> None:
    assert "missing argument" in fails_with(app, "start")
    assert "unexpected argument 'extra'" in fails_with(app, "start chroma extra")


def test_unparseable_quotes(app: App) -> None:
    assert "cannot parse the line" in fails_with(app, "start 'chroma")


@pytest.mark.parametrize("line", ["", "   ", "\t"])
def test_empty_line_is_a_no_op_and_never_repeats(app: App, fake_slurm: FakeSlurm, line: str) -> None:
    assert app.run_line("start chroma --dry-run")
    clear(app)
    fake_slurm.calls.clear()
    assert app.run_line(line) is True
    assert output(app) == ""
    assert fake_slurm.calls == []


# ---- start / check / status / stop ----------------------------------------------------------------
def test_dry_run_prints_script_and_submits_nothing(app: App, fake_slurm: FakeSlurm) -> None:
    assert app.run_line("start chroma --dry-run")
    out = output(app)
    assert out.startswith("account p200981: your Slurm default")  # said once: no project in the profile
    assert "\n#!/bin/bash -l\n" in out
    assert "#SBATCH --job-name=benchctl-chroma" in out
    assert "#SBATCH --time=01:00:00" in out
    assert "#SBATCH --account=p200981" in out  # the user's default account, from Slurm
    assert "dry run: nothing submitted" in out
    assert not sbatch_calls(fake_slurm)
    assert fake_slurm.jobs == {}
    assert app.jobs.all() == []


def test_start_submits_and_tracks_pending_job(app: App, fake_slurm: FakeSlurm) -> None:
    assert app.run_line("start chroma")
    [call] = sbatch_calls(fake_slurm)
    assert call[1:3] == ("--export=ALL", "--parsable")  # the job gets this environment (its key too)
    assert call[-1].endswith("job.sh")
    job = app.jobs.get("100")
    assert job is not None
    assert job.service == "chroma" and job.state is JobState.PENDING and job.executor == "slurm"
    assert "submitted chroma as job 100" in output(app)
    assert fake_slurm.jobs["100"].script.startswith("#!/bin/bash")


def test_check_shows_running_and_node_then_status_lists_it(app: App, fake_slurm: FakeSlurm) -> None:
    assert app.run_line("start chroma")
    fake_slurm.jobs["100"].state = "RUNNING"
    fake_slurm.jobs["100"].nodes = "mel0042"
    clear(app)
    assert app.run_line("check chroma")
    first = output(app).splitlines()[0]
    assert "chroma job 100" in first and "RUNNING" in first and "mel0042" in first
    assert app.jobs.get("100").state is JobState.RUNNING  # type: ignore[union-attr]

    clear(app)
    assert app.run_line("status")
    rows = [line for line in output(app).splitlines() if line.strip().startswith("100")]
    assert len(rows) == 1
    assert "chroma" in rows[0] and "RUNNING" in rows[0] and "mel0042" in rows[0]
    assert "JOB" in output(app) and "STATE" in output(app)


def test_check_by_job_id_and_pending_reason(app: App, fake_slurm: FakeSlurm) -> None:
    assert app.run_line("start chroma")
    fake_slurm.jobs["100"].reason = "Priority"
    clear(app)
    assert app.run_line("check 100")
    assert "PENDING (Priority)" in output(app)


def test_check_without_jobs_and_unknown_target(app: App) -> None:
    assert "no jobs tracked" in fails_with(app, "check")
    assert "neither a tracked job id nor a service" in fails_with(app, "check 999")
    assert "no chroma job tracked" in fails_with(app, "check chroma")


def test_status_without_jobs(app: App) -> None:
    assert app.run_line("status")
    assert "no jobs tracked" in output(app)


def test_stop_cancels_the_job(quick_app: App, fake_slurm: FakeSlurm) -> None:
    app = quick_app
    assert app.run_line("start chroma")
    fake_slurm.jobs["100"].state = "RUNNING"
    fake_slurm.jobs["100"].nodes = "mel0001"
    clear(app)
    assert app.run_line("stop chroma")
    assert ("scancel", "100") in fake_slurm.calls
    assert ("scancel", "--full", "--signal=TERM", "100") in fake_slurm.calls  # graceful first
    assert app.jobs.get("100").state is JobState.CANCELLED  # type: ignore[union-attr]
    assert "stopped chroma job 100: CANCELLED" in output(app)
    clear(app)
    assert app.run_line("stop all")
    assert "no active jobs" in output(app)


def test_stop_pending_job_skips_the_signal(quick_app: App, fake_slurm: FakeSlurm) -> None:
    assert quick_app.run_line("start chroma")
    assert quick_app.run_line("stop 100")
    assert not any(c[0] == "scancel" and "--full" in c for c in fake_slurm.calls)
    assert ("scancel", "100") in fake_slurm.calls
    assert quick_app.jobs.get("100").state is JobState.CANCELLED  # type: ignore[union-attr]


def test_stop_all_cancels_every_active_job(quick_app: App, fake_slurm: FakeSlurm) -> None:
    app = quick_app
    assert app.run_line("start chroma")
    assert app.run_line("start chroma")
    fake_slurm.jobs["101"].state = "RUNNING"
    clear(app)
    assert app.run_line("stop all")
    cancelled = {c[-1] for c in fake_slurm.calls if c == ("scancel", c[-1])}
    assert cancelled == {"100", "101"}
    assert all(j.state is JobState.CANCELLED for j in app.jobs.all())
    assert output(app).count("stopped chroma job") == 2


def test_stop_needs_a_target(app: App) -> None:
    assert "missing argument" in fails_with(app, "stop")


def test_failed_job_shows_exit_code(app: App, fake_slurm: FakeSlurm) -> None:
    assert app.run_line("start chroma")
    fake_slurm.jobs["100"].state = "FAILED"
    fake_slurm.jobs["100"].nodes = "mel0007"
    fake_slurm.jobs["100"].exit_code = "3:0"
    clear(app)
    assert app.run_line("check chroma")
    out = output(app)
    assert "FAILED" in out
    assert "exit code 3" in out
    assert any(c[0] == "sacct" for c in fake_slurm.calls)  # the exit code lives in sacct
    assert app.jobs.get("100").exit_code == 3  # type: ignore[union-attr]
    clear(app)
    assert app.run_line("status")
    assert "exit 3" in output(app)


# ---- recipes and precedence -----------------------------------------------------------------------
def submitted_time(fake: FakeSlurm, job_id: str) -> str:
    lines = [ln for ln in fake.jobs[job_id].script.splitlines() if ln.startswith("#SBATCH --time=")]
    assert len(lines) == 1, fake.jobs[job_id].script
    return lines[0].split("=", 1)[1]


def test_valid_recipe_applies(app: App, fake_slurm: FakeSlurm, tmp_path: Path) -> None:
    recipe = tmp_path / "r.yaml"
    recipe.write_text("service: chroma\noptions:\n  time: '02:00:00'\n  cpus: 8\n  data-dir: /data/x\n")
    assert app.run_line(f"start chroma --recipe {recipe}")
    script = fake_slurm.jobs["100"].script
    assert "#SBATCH --time=02:00:00" in script
    assert "#SBATCH --cpus-per-task=8" in script
    assert "DATA_DIR=/data/x" in script


def test_recipe_as_bare_options_mapping(app: App, fake_slurm: FakeSlurm, tmp_path: Path) -> None:
    recipe = tmp_path / "r.yaml"
    recipe.write_text("time: '00:10:00'\n")
    assert app.run_line(f"start chroma --recipe {recipe}")
    assert submitted_time(fake_slurm, "100") == "00:10:00"


def test_recipe_unquoted_time_is_not_read_as_a_number(app: App, fake_slurm: FakeSlurm, tmp_path: Path) -> None:
    # YAML 1.1 reads 12:00:00 as the base-60 integer 43200, which Slurm would take as 43200 *minutes*.
    recipe = tmp_path / "r.yaml"
    recipe.write_text("service: chroma\noptions:\n  time: 12:00:00\n")
    assert app.run_line(f"start chroma --recipe {recipe}"), output(app)
    assert submitted_time(fake_slurm, "100") == "12:00:00"


def test_recipe_for_another_service(app: App, fake_slurm: FakeSlurm, tmp_path: Path) -> None:
    recipe = tmp_path / "r.yaml"
    recipe.write_text("service: vllm\noptions: {time: '01:00:00'}\n")
    assert "is for 'vllm', not 'chroma'" in fails_with(app, f"start chroma --recipe {recipe}")
    assert not sbatch_calls(fake_slurm)


def test_recipe_unknown_key(app: App, fake_slurm: FakeSlurm, tmp_path: Path) -> None:
    recipe = tmp_path / "r.yaml"
    recipe.write_text("service: chroma\noptions: {gpus_per_node: 2}\n")
    assert "unknown option 'gpus_per_node'" in fails_with(app, f"start chroma --recipe {recipe}")
    assert not sbatch_calls(fake_slurm)


def test_recipe_bad_value(app: App, tmp_path: Path) -> None:
    recipe = tmp_path / "r.yaml"
    recipe.write_text("cpus: many\n")
    line = fails_with(app, f"start chroma --recipe {recipe}")
    assert str(recipe) in line and "--cpus" in line


def test_recipe_bad_yaml(app: App, fake_slurm: FakeSlurm, tmp_path: Path) -> None:
    recipe = tmp_path / "r.yaml"
    recipe.write_text("options: [unclosed\n  time: 1\n")
    assert "is not valid YAML" in fails_with(app, f"start chroma --recipe {recipe}")
    assert not sbatch_calls(fake_slurm)


def test_recipe_not_a_mapping_and_missing_file(app: App, tmp_path: Path) -> None:
    recipe = tmp_path / "r.yaml"
    recipe.write_text("- time\n- cpus\n")
    assert "expected a mapping" in fails_with(app, f"start chroma --recipe {recipe}")
    assert "cannot read recipe" in fails_with(app, f"start chroma --recipe {tmp_path / 'missing.yaml'}")


def test_precedence_option_over_recipe_over_config(make_app, fake_slurm: FakeSlurm, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    write_user_config('[slurm]\ntime = "00:30:00"\n')
    app = make_app()
    recipe = tmp_path / "r.yaml"
    recipe.write_text("service: chroma\noptions:\n  time: '02:00:00'\n")

    assert app.run_line("start chroma")
    assert submitted_time(fake_slurm, "100") == "00:30:00"  # config > profile default
    assert app.run_line(f"start chroma --recipe {recipe}")
    assert submitted_time(fake_slurm, "101") == "02:00:00"  # recipe > config
    assert app.run_line(f"start chroma --recipe {recipe} --time 03:00:00")
    assert submitted_time(fake_slurm, "102") == "03:00:00"  # option > recipe
    assert app.run_line(f"start chroma --time=04:00:00 --recipe={recipe}")
    assert submitted_time(fake_slurm, "103") == "04:00:00"  # order on the line does not matter


# ---- Slurm unreachable ----------------------------------------------------------------------------
def test_unreachable_slurm_is_one_clear_line() -> None:
    fake = FakeSlurm(installed=False)
    ui, buf = string_ui()
    app = App(settings=load_settings(executor="slurm", profile="meluxina"), runner=fake, ui=ui,
              executor_obj=SlurmExecutor(fake))
    app.out = buf  # type: ignore[attr-defined]
    line = fails_with(app, "start chroma")
    assert "Slurm is not reachable" in line
    assert "--executor local" in line
    assert app.jobs.all() == []


def test_unreachable_slurm_after_submit(app: App, fake_slurm: FakeSlurm) -> None:
    assert app.run_line("start chroma")
    fake_slurm.installed = False
    clear(app)
    assert app.run_line("check chroma") is False  # fails, but shows what is known, marked as such
    [error] = error_lines(app)
    assert "Slurm is not reachable" in error and "chroma job 100: PENDING (last known)" in output(app)
    clear(app)
    assert app.run_line("status")  # still shows the cached table, with a warning
    assert "Slurm is not reachable" in output(app)
    assert "100" in output(app)


# ---- help / history ---------------------------------------------------------------------------------
def test_help_lists_commands_and_services(app: App) -> None:
    assert app.run_line("help")
    out = output(app)
    for name in ("start", "check", "logs", "stop", "status", "help", "history", "save", "exit"):
        assert name in out
    assert "services: chroma" in out


def test_help_start_lists_the_common_options_and_the_services(app: App) -> None:
    assert app.run_line("help start")
    out = output(app)
    assert out.startswith("usage: start SERVICE")
    for flag in ("--time", "--dry-run", "--recipe", "--runtime {apptainer|none}", "-h, --help"):
        assert flag in out
    assert "--data-dir" not in out and "--api-key-env" not in out  # one service's own options are not common
    assert "start takes: chroma, io500, llm-sim, monitor, ollama, qdrant, vllm" in out


def test_help_start_service_lists_exactly_its_options(app: App) -> None:
    assert app.run_line("help start chroma")
    out = output(app)
    assert "options for start chroma:" in out and "--data-dir" in out and "--time" in out
    assert "--tp" not in out and "--stonewall" not in out
    clear(app)
    assert app.run_line("start io500 --help")  # = help start io500
    out = output(app)
    assert "options for start io500:" in out and "--stonewall" in out and "--data-dir" not in out
    assert "[mdtest-easy] and [mdtest-hard] n" in out  # help text is text, not markup
    assert "no topic 'bogus'" in fails_with(app, "help start bogus")


def test_help_bench_target_and_dash_h_everywhere(app: App) -> None:
    assert app.run_line("bench chroma --help")
    out = output(app)
    assert "options for bench chroma:" in out and "--concurrency LIST" in out and "--recall" not in out
    assert "(default 1,4)" in out  # defaults shown from the option records
    clear(app)
    assert app.run_line("help bench")
    assert "bench takes: chroma, io500, llm-sim, ollama, qdrant, vllm, llm, vector" in output(app)
    for line in ("status -h", "check --help", "logs -h", "save --help", "help -h"):
        clear(app)
        assert app.run_line(line), line
        assert output(app).startswith("usage: "), line


def test_unknown_commands_and_options_suggest_only_close_matches(app: App) -> None:
    assert "did you mean 'start'?" in fails_with(app, "strat chroma")
    assert "did you mean 'status'?" in fails_with(app, "stauts")
    assert "did you mean 'check'?" in fails_with(app, "chek")
    assert "did you mean" not in fails_with(app, "xyzzy")
    assert "did you mean" not in fails_with(app, "start chroma --bogus")  # not --qos
    assert "did you mean --concurrency?" in fails_with(app, "bench chroma --concurency 4")


def test_help_alias_and_unknown(app: App) -> None:
    assert app.run_line("help quit")
    assert "usage: exit" in output(app)
    assert "no command 'nosuch'" in fails_with(app, "help nosuch")


def test_history(app: App) -> None:
    app.history_strings = ["start chroma", "check chroma", "status"]
    assert app.run_line("history")
    assert output(app).splitlines() == ["1  start chroma", "2  check chroma", "3  status"]
    clear(app)
    assert app.run_line("history 1")
    assert output(app).splitlines() == ["3  status"]
    assert "must be a number" in fails_with(app, "history x")


# ---- save and transcript ----------------------------------------------------------------------------
def test_save_without_path_writes_into_session_dir(app: App) -> None:
    assert app.run_lines(["help", "bogus", "save"], keep_going=True) == 1
    saved = app.session_dir / "transcript.txt"
    text = saved.read_text()
    assert "benchctl> help" in text
    assert "start SERVICE" in text  # the help table
    assert "error: unknown command 'bogus'" in text
    assert (app.session_dir / "transcript-jobs.json").exists()
    assert oct(saved.stat().st_mode & 0o777) == "0o600"


def test_save_html_and_second_save_keeps_everything(app: App, tmp_path: Path) -> None:
    assert app.run_lines(["start chroma --dry-run", f"save {tmp_path / 'one.txt'} --html"]) == 0
    text = (tmp_path / "one.txt").read_text()
    html = (tmp_path / "one.html").read_text()
    assert "#SBATCH --job-name=benchctl-chroma" in text
    assert "<html" in html.lower() and "SBATCH" in html
    assert app.run_lines(["help", f"save {tmp_path / 'two.txt'}"]) == 0
    second = (tmp_path / "two.txt").read_text()
    assert "#SBATCH --job-name=benchctl-chroma" in second  # rich export with clear=False
    assert "benchctl> help" in second
    assert len(second) > len(text)


def test_save_into_directory(app: App, tmp_path: Path) -> None:
    target = tmp_path / "out"
    target.mkdir()
    assert app.run_lines(["help", f"save {target}/"]) == 0
    assert "benchctl> help" in (target / "transcript.txt").read_text()


def test_save_to_unwritable_place(app: App, tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("x")
    assert "cannot save to" in fails_with(app, f"save {blocker}/sub/t.txt")


def test_secrets_never_reach_the_transcript(app: App, tmp_path: Path) -> None:
    lines = [
        f"start chroma --account x --hf-token {SECRET}",
        f"start chroma --account x --hf-token={SECRET}",
        f"start chroma --cpus {SECRET}",
        f"start chroma --time {SECRET}",
        f"HF_TOKEN={SECRET}",
        SECRET,  # a token pasted into the wrong window
    ]
    assert app.run_lines(lines, keep_going=True) == len(lines)
    assert app.run_line(f"save {tmp_path / 't.txt'} --html")
    assert "benchctl> start chroma --account x --hf-token ****" in (tmp_path / "t.txt").read_text()
    for path in (tmp_path / "t.txt", tmp_path / "t.html"):
        text = path.read_text()
        assert SECRET not in text
        assert "abcdefghijklmnop" not in text


# ---- exit / batch ---------------------------------------------------------------------------------------
@pytest.mark.parametrize("line", ["exit", "quit"])
def test_exit_raises_exit_repl(app: App, line: str) -> None:
    with pytest.raises(ExitRepl):
        app.onecmd(line)
    with pytest.raises(ExitRepl):
        app.run_line(line)


def test_run_lines_stops_at_first_failure(app: App) -> None:
    assert app.run_lines(["# a comment", "", "bogus", "help"]) == 1
    assert "services:" not in output(app)  # help never ran
    assert app.ui.transcript.text().count("benchctl> ") == 1


def test_run_lines_keep_going_counts_failures(app: App) -> None:
    assert app.run_lines(["bogus", "start nosuch", "help"], keep_going=True) == 2
    assert "services: chroma" in output(app)
    assert len(error_lines(app)) == 2


def test_run_lines_stops_at_exit(app: App) -> None:
    assert app.run_lines(["help", "exit", "bogus"]) == 0
    assert not error_lines(app)


@pytest.mark.parametrize(("text", "parts"), [
    ("help", ["help"]),
    ("logs x; stop x", ["logs x", "stop x"]),
    ("  ; help ;; status ;", ["help", "status"]),
    ("start chroma --image 'a;b'; status", ["start chroma --image 'a;b'", "status"]),
    ('save "x;y.txt";help', ['save "x;y.txt"', "help"]),
    ("""save "it's;ok" ; help""", ['''save "it's;ok"''', "help"]),
    ("", []),
])
def test_split_commands(text: str, parts: list[str]) -> None:
    assert split_commands(text) == parts


def test_jobs_of_another_executor_are_shown_but_not_managed(app: App, fake_slurm: FakeSlurm) -> None:
    from benchctl.jobs import Job
    from benchctl.slurm.states import JobState

    app.jobs.add(Job(id="local-1", service="chroma", executor="local", state=JobState.RUNNING))
    assert app.run_line("check local-1")  # shown, with a note, from the table
    assert "(last seen state: job local-1 was started by the local executor; manage it with" in output(app)
    msg = fails_with(app, "stop local-1")
    assert "started by the local executor" in msg and "--executor local" in msg
    # A service name resolves among this executor's jobs only.
    assert "no chroma job tracked" in fails_with(app, "stop chroma")
    assert not [c for c in fake_slurm.calls if c[0] == "scancel"]
