"""The slurm executor over a scripted runner: which commands it calls and how it reads their answers."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

import pytest

from benchctl.executors.base import ExecutorError, UnknownJob
from benchctl.executors.process import CommandNotFound, Completed, Runner
from benchctl.executors.slurm import SlurmExecutor
from benchctl.slurm.states import JobState


class Scripted(Runner):
    """Answers each program with a fixed (rc, stdout, stderr) and records calls and environments."""

    def __init__(self, answers: dict[str, tuple[int, str, str]], installed: bool = True) -> None:
        self.answers = answers
        self.installed = installed
        self.calls: list[tuple[str, ...]] = []
        self.envs: list[Mapping[str, str] | None] = []

    def run(self, argv: Sequence[str], *, timeout: float = 30.0, env: Mapping[str, str] | None = None,
            cwd: str | None = None, input_text: str | None = None) -> Completed:
        if not self.installed:
            raise CommandNotFound(f"{argv[0]}: command not found")
        self.calls.append(tuple(argv))
        self.envs.append(env)
        rc, out, err = self.answers.get(argv[0], (127, "", "not scripted"))
        return Completed(tuple(argv), rc, out, err)


def test_submit_parses_parsable_output_and_strips_allocation_env(tmp_path: Path,
                                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SLURM_JOB_ID", "999")
    monkeypatch.setenv("SBATCH_PARTITION", "wrong")
    runner = Scripted({"sbatch": (0, "3609965;meluxina\n", "")})
    assert SlurmExecutor(runner).submit(tmp_path / "job.sh", cwd=tmp_path) == "3609965"
    assert runner.calls[0][:3] == ("sbatch", "--export=ALL", "--parsable")
    env = runner.envs[0]
    assert env is not None and "SLURM_JOB_ID" not in env and "SBATCH_PARTITION" not in env and "PATH" in env


def test_submit_failure_is_one_line_with_slurms_reason(tmp_path: Path) -> None:
    err = "sbatch: error: Batch job submission failed: Invalid account or account/partition combination specified\n"
    with pytest.raises(ExecutorError, match=r"^sbatch failed: .*Invalid account"):
        SlurmExecutor(Scripted({"sbatch": (1, "", err)})).submit(tmp_path / "job.sh", cwd=tmp_path)


def test_missing_slurm_says_so(tmp_path: Path) -> None:
    with pytest.raises(ExecutorError, match=r"Slurm is not reachable.*--executor local"):
        SlurmExecutor(Scripted({}, installed=False)).submit(tmp_path / "job.sh", cwd=tmp_path)


def test_one_squeue_for_running_jobs_no_sacct() -> None:
    runner = Scripted({"squeue": (0, "1|RUNNING|n1|None\n2|PENDING||Priority\n", "")})
    found = SlurmExecutor(runner).query(["1", "2"])
    assert [c[0] for c in runner.calls] == ["squeue"]
    assert found["1"].state is JobState.RUNNING and found["2"].reason == "Priority"


def test_aged_out_job_falls_back_to_sacct() -> None:
    runner = Scripted({"squeue": (1, "", "slurm_load_jobs error: Invalid job id specified\n"),
                       "sacct": (0, "7|FAILED|3:0|00:00:01|n2|None\n", "")})
    found = SlurmExecutor(runner).query(["7"])
    assert found["7"].state is JobState.FAILED and found["7"].exit_code == 3
    assert [c[0] for c in runner.calls] == ["squeue", "sacct"]


def test_both_failing_raises_for_the_poller_to_back_off() -> None:
    runner = Scripted({"squeue": (1, "", "Unable to contact slurm controller"), "sacct": (1, "", "dbd down")})
    with pytest.raises(ExecutorError, match="cannot query Slurm"):
        SlurmExecutor(runner).query(["7"])


def test_completing_job_takes_its_final_state_from_sacct() -> None:
    runner = Scripted({"squeue": (0, "4|COMPLETING|n1|None\n", ""),
                       "sacct": (0, "4|TIMEOUT|0:0|00:01:28|n1|TimeLimit\n", "")})
    assert SlurmExecutor(runner).query(["4"])["4"].state is JobState.TIMEOUT


def test_completing_job_stays_completing_while_sacct_lags() -> None:
    runner = Scripted({"squeue": (0, "4|COMPLETING|n1|None\n", ""),
                       "sacct": (0, "4|RUNNING|0:0|00:01:20|n1|None\n", "")})
    assert SlurmExecutor(runner).query(["4"])["4"].state is JobState.COMPLETING


def test_graceful_signal_and_cancel_commands() -> None:
    runner = Scripted({"scancel": (0, "", "")})
    executor = SlurmExecutor(runner)
    executor.signal("12", "TERM")
    executor.cancel("12")
    assert runner.calls == [("scancel", "--full", "--signal=TERM", "12"), ("scancel", "12")]


def test_a_final_state_from_squeue_is_not_replaced_by_a_stale_sacct_row() -> None:
    squeue = (0, "4|CANCELLED|n1|None\n", "")
    runner = Scripted({"squeue": squeue, "sacct": (0, "4|RUNNING|0:0|00:01:20|n1|None\n", "")})
    assert SlurmExecutor(runner).query(["4"])["4"].state is JobState.CANCELLED
    runner = Scripted({"squeue": squeue, "sacct": (0, "4|CANCELLED|0:15|00:01:20|n1|\n", "")})
    status = SlurmExecutor(runner).query(["4"])["4"]
    assert status.state is JobState.CANCELLED and status.exit_code == 0 and status.signal == 15  # sacct's details


DOWN = "slurm_load_jobs error: Unable to contact slurm controller (connect failure)\n"
PING_DOWN = "Slurmctld(primary) at vm is DOWN\n"


def test_controller_down_is_one_error_then_scontrol_ping_answers_fast() -> None:
    runner = Scripted({"squeue": (1, "", DOWN), "sacct": (0, "7|RUNNING|0:0|00:00:01|n2|None\n", ""),
                       "scontrol": (1, PING_DOWN, "")})
    executor = SlurmExecutor(runner)
    with pytest.raises(ExecutorError, match=r"controller \(slurmctld\) does not answer"):
        executor.query(["7"])
    assert [c[0] for c in runner.calls] == ["squeue"]  # not sacct: its answer may be stale
    with pytest.raises(ExecutorError, match="does not answer"):
        executor.query(["7"])
    with pytest.raises(ExecutorError, match="does not answer"):
        executor.cancel("7")
    assert [c[0] for c in runner.calls] == ["squeue", "scontrol", "scontrol"]  # no slow squeue/scancel again
    runner.answers["scontrol"] = (0, "Slurmctld(primary) at vm is UP\n", "")
    runner.answers["squeue"] = (0, "7|RUNNING|n2|None\n", "")
    assert executor.query(["7"])["7"].state is JobState.RUNNING
    assert [c[0] for c in runner.calls][-2:] == ["scontrol", "squeue"]


def test_scancel_of_an_unknown_id_is_unknown_job() -> None:
    err = "scancel: error: Kill job error on job id 99: Invalid job id specified\n"
    with pytest.raises(UnknownJob, match="does not know job 99"):
        SlurmExecutor(Scripted({"scancel": (1, "", err)})).cancel("99")
