"""benchctl.slurm.parse: sbatch, squeue and sacct output exactly as Slurm 22.05 prints it."""

from __future__ import annotations

import pytest

from benchctl.slurm.parse import (
    SACCT_FIELDS,
    SQUEUE_FORMAT,
    JobStatus,
    ParseError,
    base_job_id,
    parse_sacct,
    parse_sbatch,
    parse_squeue,
)
from benchctl.slurm.states import JobState

# ---- sbatch ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("stdout", "expected"),
    [
        ("12\n", ("12", None)),
        ("12", ("12", None)),
        ("12;cluster\n", ("12", "cluster")),
        ("3609965;meluxina\n", ("3609965", "meluxina")),
        ("  77  \n", ("77", None)),
        ("Submitted batch job 34\n", ("34", None)),
        ("Submitted batch job 34 on cluster meluxina\n", ("34", "meluxina")),
        ("sbatch: Verify job submission ...\nSubmitted batch job 35\n", ("35", None)),
    ],
)
def test_parse_sbatch(stdout: str, expected: tuple[str, str | None]) -> None:
    assert parse_sbatch(stdout) == expected


def test_parse_sbatch_parsable_line_after_warning() -> None:
    out = "sbatch: warning: can't honor --ntasks-per-node set to 1\n42\n"
    assert parse_sbatch(out) == ("42", None)


@pytest.mark.parametrize(
    "stdout",
    ["", "\n", "sbatch: error: Batch job submission failed: Invalid account", "job twelve", "12 13", "-1"],
)
def test_parse_sbatch_garbage_raises(stdout: str) -> None:
    with pytest.raises(ParseError):
        parse_sbatch(stdout)


def test_parse_error_quotes_the_output_and_is_a_value_error() -> None:
    with pytest.raises(ParseError, match="Invalid account") as info:
        parse_sbatch("sbatch: error: Invalid account")
    assert isinstance(info.value, ValueError)


# ---- squeue -------------------------------------------------------------------------------------


def test_squeue_format_is_the_one_parsed() -> None:
    assert SQUEUE_FORMAT == "%i|%T|%N|%r"
    assert SACCT_FIELDS.split(",")[:4] == ["JobID", "State", "ExitCode", "Elapsed"]


def test_parse_squeue_slurm_22_05_lines() -> None:
    out = (
        "1|RUNNING|vm|None\n"
        "4|PENDING||Resources\n"
        "5|COMPLETING|vm|None\n"
        "2|TIMEOUT|vm|TimeLimit\n"
        "12_3|RUNNING|n1|None\n"
        "93+1|PENDING||Priority\n"
    )
    jobs = parse_squeue(out)
    assert list(jobs) == ["1", "4", "5", "2", "12_3", "93+1"]
    assert jobs["1"] == JobStatus("1", JobState.RUNNING, "RUNNING", "vm", "")
    assert jobs["4"] == JobStatus("4", JobState.PENDING, "PENDING", "", "Resources")
    assert jobs["5"] == JobStatus("5", JobState.COMPLETING, "COMPLETING", "vm", "")
    assert jobs["2"] == JobStatus("2", JobState.TIMEOUT, "TIMEOUT", "vm", "TimeLimit")
    assert jobs["12_3"].state is JobState.RUNNING
    assert jobs["12_3"].nodes == "n1"
    assert jobs["93+1"].state is JobState.PENDING
    assert jobs["93+1"].reason == "Priority"
    assert jobs["93+1"].nodes == ""
    # squeue reports neither exit codes nor elapsed time
    assert all(s.exit_code is None and s.signal is None and s.elapsed == "" for s in jobs.values())


def test_parse_squeue_reason_in_parentheses_and_null_nodes() -> None:
    jobs = parse_squeue("7|PENDING|(null)|(ReqNodeNotAvail, Reserved for maintenance)\n")
    assert jobs["7"].nodes == ""
    assert jobs["7"].reason == "ReqNodeNotAvail, Reserved for maintenance"


@pytest.mark.parametrize("stdout", ["", "\n\n", "garbage\n", "|RUNNING|vm|None\n"])
def test_parse_squeue_skips_blank_and_broken_lines(stdout: str) -> None:
    assert parse_squeue(stdout) == {}


def test_parse_squeue_short_line_is_padded() -> None:
    jobs = parse_squeue("8|RUNNING\n")
    assert jobs["8"] == JobStatus("8", JobState.RUNNING, "RUNNING", "", "")


def test_parse_squeue_unknown_state_does_not_crash() -> None:
    jobs = parse_squeue("9|SOME_NEW_STATE|vm|None\n")
    assert jobs["9"].state is JobState.UNKNOWN
    assert jobs["9"].raw_state == "SOME_NEW_STATE"


# ---- sacct --------------------------------------------------------------------------------------


def test_parse_sacct_slurm_22_05_rows() -> None:
    out = (
        "1|COMPLETED|0:0|00:00:05|vm|None\n"
        "4|PENDING|0:0|00:00:00|None assigned|None\n"
        "5|CANCELLED by 0|0:0|00:00:02|vm|None\n"
        "9|FAILED|3:0|00:00:00|vm|None\n"
        "2|TIMEOUT|0:0|00:01:26|vm|TimeLimit\n"
    )
    jobs = parse_sacct(out)
    assert set(jobs) == {"1", "4", "5", "9", "2"}
    assert jobs["1"] == JobStatus("1", JobState.COMPLETED, "COMPLETED", "vm", "", 0, 0, "00:00:05")
    assert jobs["4"] == JobStatus("4", JobState.PENDING, "PENDING", "", "", 0, 0, "00:00:00")
    assert jobs["5"].state is JobState.CANCELLED
    assert jobs["5"].raw_state == "CANCELLED by 0"
    assert jobs["5"].elapsed == "00:00:02"
    assert jobs["9"].state is JobState.FAILED
    assert (jobs["9"].exit_code, jobs["9"].signal) == (3, 0)
    assert jobs["2"] == JobStatus("2", JobState.TIMEOUT, "TIMEOUT", "vm", "TimeLimit", 0, 0, "00:01:26")


def test_parse_sacct_skips_step_rows() -> None:
    out = (
        "2|TIMEOUT|0:0|00:01:26|vm|TimeLimit\n"
        "2.batch|CANCELLED|0:15|00:01:27|vm|\n"
        "2.extern|COMPLETED|0:0|00:01:26|vm|\n"
        "2.0|CANCELLED|0:15|00:01:20|vm|\n"
    )
    jobs = parse_sacct(out)
    assert list(jobs) == ["2"]
    assert jobs["2"].state is JobState.TIMEOUT


@pytest.mark.parametrize(
    ("row", "state", "exit_code", "sig"),
    [
        ("6|OUT_OF_MEMORY|0:125|00:00:09|n1|None", JobState.OUT_OF_MEMORY, 0, 125),
        ("7|NODE_FAIL|0:0|00:10:00|n2|NodeDown", JobState.NODE_FAIL, 0, 0),
        ("8|FAILED|0:9|00:00:01|vm|None", JobState.FAILED, 0, 9),
        ("10|CANCELLED+|0:0|00:00:01|vm|None", JobState.CANCELLED, 0, 0),
    ],
)
def test_parse_sacct_bad_endings(row: str, state: JobState, exit_code: int, sig: int) -> None:
    status = parse_sacct(row + "\n")[row.split("|")[0]]
    assert status.state is state
    assert (status.exit_code, status.signal) == (exit_code, sig)


def test_parse_sacct_node_fail_keeps_reason_and_nodes() -> None:
    status = parse_sacct("7|NODE_FAIL|0:0|00:10:00|n[2-3]|NodeDown\n")["7"]
    assert status.nodes == "n[2-3]"
    assert status.reason == "NodeDown"


def test_parse_sacct_last_duplicate_wins() -> None:
    jobs = parse_sacct("3|RUNNING|0:0|00:00:01|vm|None\n3|COMPLETED|0:0|00:00:09|vm|None\n")
    assert jobs["3"].state is JobState.COMPLETED


def test_parse_sacct_unreadable_exit_code_is_none() -> None:
    status = parse_sacct("11|RUNNING||00:00:01|vm|None\n")["11"]
    assert status.exit_code is None
    assert status.signal is None
    assert status.state is JobState.RUNNING


def test_parse_sacct_short_row_and_blank_lines() -> None:
    jobs = parse_sacct("\n12|PENDING\n\n")
    assert jobs == {"12": JobStatus("12", JobState.PENDING, "PENDING", "", "", None, None, "")}


def test_parse_sacct_array_and_hetjob_ids_kept() -> None:
    jobs = parse_sacct("12_3|COMPLETED|0:0|00:00:05|n1|None\n93+1|FAILED|1:0|00:00:05|n2|None\n")
    assert jobs["12_3"].state is JobState.COMPLETED
    assert jobs["93+1"].exit_code == 1


# ---- ids ----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("job_id", "base"),
    [("12", "12"), ("12_3", "12"), ("93+1", "93"), ("12_[1-5]", "12"), ("local-3", "local-3")],
)
def test_base_job_id(job_id: str, base: str) -> None:
    assert base_job_id(job_id) == base
