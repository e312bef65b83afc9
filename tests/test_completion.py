"""The completer (benchctl/completion.py), called directly: Tab through a real terminal is asynchronous (the
completion arrives after the keys that follow it), so exact candidates are checked here, not through a pty."""

from __future__ import annotations

from pathlib import Path

import pytest
from prompt_toolkit.completion import CompleteEvent, Completion
from prompt_toolkit.document import Document

from benchctl.app import App
from benchctl.completion import BenchctlCompleter
from benchctl.jobs import Job
from benchctl.slurm.states import JobState
from tests.fakes import FakeSlurm


def raw_completions(app: App, text: str) -> list[Completion]:
    completer = BenchctlCompleter(app)
    return list(completer.get_completions(Document(text, len(text)), CompleteEvent(completion_requested=True)))


def completions(app: App, text: str) -> list[str]:
    return [c.text for c in raw_completions(app, text)]


def applied(text: str, completion: Completion) -> str:
    """The line after accepting ``completion``."""
    return text[: len(text) + completion.start_position] + completion.text


@pytest.fixture(autouse=True)
def never_calls_slurm(fake_slurm: FakeSlurm):  # type: ignore[no-untyped-def]
    """The completer reads cached state only: no test here may reach the scheduler."""
    yield
    assert fake_slurm.calls == []


@pytest.fixture
def with_jobs(app: App) -> App:
    app.jobs.add(Job(id="4711", service="chroma", executor="slurm", state=JobState.RUNNING, nodes="mel0042",
                     submitted_at=1.0))
    app.jobs.add(Job(id="4720", service="chroma", executor="slurm", state=JobState.PENDING, submitted_at=2.0))
    app.jobs.add(Job(id="5000", service="chroma", executor="slurm", state=JobState.FAILED, nodes="mel0001",
                     submitted_at=3.0))
    return app


def test_all_command_names_on_empty_line(app: App) -> None:
    names = completions(app, "")
    assert {"start", "check", "logs", "stop", "status", "bench", "help", "history", "save", "config",
            "exit"} <= set(names)
    assert "quit" not in names  # aliases only when a prefix is typed
    assert len(names) == len(set(names))


def test_command_prefix(app: App) -> None:
    assert sorted(completions(app, "st")) == ["start", "status", "stop"]
    assert completions(app, "q") == ["quit"]
    assert completions(app, "zz") == []


def test_command_completion_replaces_the_typed_prefix(app: App) -> None:
    [c] = [c for c in raw_completions(app, "sta") if c.text == "start"]
    assert c.start_position == -3
    assert applied("sta", c) == "start"
    assert c.display_meta_text  # the command summary


def test_service_names_after_start(app: App) -> None:
    assert completions(app, "start ") == ["chroma", "io500", "llm-sim", "monitor", "ollama", "qdrant", "vllm"]
    assert completions(app, "start ch") == ["chroma"]
    assert completions(app, "start x") == []
    [c] = raw_completions(app, "start ch")
    assert applied("start ch", c) == "start chroma"
    assert "ChromaDB" in c.display_meta_text


def test_options_of_start_chroma(app: App) -> None:
    opts = completions(app, "start chroma --")
    for flag in ("--time", "--data-dir", "--dry-run", "--recipe", "--runtime", "--cpus", "--account"):
        assert flag in opts
    assert all(o.startswith("--") for o in opts)
    assert completions(app, "start chroma --da") == ["--data-dir"]
    [c] = raw_completions(app, "start chroma --ti")
    assert applied("start chroma --ti", c) == "start chroma --time"  # dashes do not split the word


def test_options_offered_after_a_space(app: App) -> None:
    opts = completions(app, "start chroma ")
    assert "--time" in opts and "--dry-run" in opts


def test_options_already_given_are_not_offered_again(app: App) -> None:
    opts = completions(app, "start chroma --time 01:00:00 --dry-run --cpus=4 --")
    assert "--time" not in opts and "--dry-run" not in opts and "--cpus" not in opts
    assert "--data-dir" in opts and "--runtime" in opts


def test_runtime_values(app: App) -> None:
    assert completions(app, "start chroma --runtime ") == ["apptainer", "none"]
    assert completions(app, "start chroma --runtime a") == ["apptainer"]


def test_option_value_is_not_completed_as_an_option(app: App) -> None:
    # After `--time`, the next word is its value: nothing sensible to offer, certainly not options.
    assert completions(app, "start chroma --time ") == []


def test_job_ids_for_stop_check_logs(with_jobs: App) -> None:
    for command in ("stop", "check", "logs"):
        got = completions(with_jobs, f"{command} ")
        assert {"4711", "4720", "5000"} <= set(got), command
        assert "chroma" in got, command  # service names are targets too
    assert completions(with_jobs, "check 47") == ["4720", "4711"]  # newest first


def test_job_id_meta_shows_service_state_and_node(with_jobs: App) -> None:
    metas = {c.text: c.display_meta_text for c in raw_completions(with_jobs, "check ")}
    assert "chroma" in metas["4711"] and "RUNNING" in metas["4711"] and "mel0042" in metas["4711"]
    assert "chroma" in metas["4720"] and "PENDING" in metas["4720"]
    assert "FAILED" in metas["5000"]


def test_stop_also_offers_all(with_jobs: App) -> None:
    assert "all" in completions(with_jobs, "stop ")
    assert completions(with_jobs, "stop a") == ["all"]
    assert "all" not in completions(with_jobs, "check ")


def test_no_jobs_tracked(app: App) -> None:
    # pull and client jobs are followed like any other, so check and stop name them; start takes neither
    # (pull and `bench --client job` submit them)
    services = ["bench-client", "chroma", "io500", "llm-sim", "monitor", "ollama", "pull", "qdrant", "vllm"]
    assert completions(app, "check ") == services
    assert completions(app, "stop ") == [*services, "all"]
    assert "pull" not in completions(app, "start ") and "bench-client" not in completions(app, "start ")


def test_pull_offers_the_services_with_a_pinned_image_and_all(app: App) -> None:
    offered = completions(app, "pull ")
    assert offered[-1] == "all" and {"chroma", "qdrant", "vllm", "ollama"} <= set(offered)
    assert "pull" not in offered and "llm-sim" not in offered  # llm-sim runs on the host's python
    assert completions(app, "pull q") == ["qdrant"]


def test_help_offers_command_names(app: App) -> None:
    assert sorted(completions(app, "help st")) == ["start", "status", "stop"]
    assert "save" in completions(app, "help ")
    assert completions(app, "help start ") == ["chroma", "io500", "llm-sim", "monitor", "ollama", "qdrant", "vllm"]
    assert "vector" in completions(app, "help bench ") and completions(app, "help status ") == []
    assert completions(app, "help start vllm ") == []  # help takes two words at most


def test_save_completes_paths(app: App, tmp_path: Path) -> None:
    (tmp_path / "alpha.txt").write_text("x")
    (tmp_path / "alpine").mkdir()
    (tmp_path / "beta.txt").write_text("x")
    text = f"save {tmp_path}/al"
    got = {applied(text, c) for c in raw_completions(app, text)}
    assert got == {f"save {tmp_path}/alpha.txt", f"save {tmp_path}/alpine/"}  # a directory keeps its "/"
    assert "--html" in completions(app, f"save {tmp_path}/t.txt --")


def test_save_expands_home(app: App) -> None:
    home = Path.home()  # the isolated test HOME
    (home / "transcripts").mkdir()
    text = "save ~/tra"
    assert {applied(text, c) for c in raw_completions(app, text)} == {"save ~/transcripts/"}


def test_unknown_command_yields_nothing(with_jobs: App) -> None:
    assert completions(with_jobs, "bogus ") == []
    assert completions(with_jobs, "bogus --") == []
    assert completions(with_jobs, "bogus 47") == []


def test_commands_without_arguments_offer_only_their_options(app: App) -> None:
    assert completions(app, "status ") == ["--all", "--watch", "--json"]
    assert completions(app, "config ") == []
    assert completions(app, "exit ") == []
