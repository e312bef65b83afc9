"""Job logs as Slurm and vLLM really print them (tests/data/logs, sources in its README): every slurmstepd kill
form, both accounting plugins' memory kills, and the root cause of real vLLM/Python crash logs."""

from __future__ import annotations

from pathlib import Path

import pytest

from benchctl.slurm.logparse import last_error, parse_lines
from benchctl.slurm.parse import parse_sbatch
from benchctl.slurm.states import JobState, map_state

DATA = Path(__file__).parent / "data" / "logs"


def kill_lines() -> list[tuple[str, str]]:
    rows = []
    for row in (DATA / "slurmstepd-kill-lines.txt").read_text().splitlines():
        if row and not row.startswith("#"):
            line, expected = row.split("\t")
            rows.append((line, expected))
    return rows


@pytest.mark.parametrize(("line", "expected"), kill_lines(), ids=lambda v: v[:60] if " " in v else v)
def test_every_slurmstepd_kill_form(line: str, expected: str) -> None:
    info = parse_lines(["BENCHCTL_HOST=mel2041", line])
    assert info.host == "mel2041"  # the markers still read around the kill line
    if expected == "time-limit":
        assert info.hit_time_limit and info.time_limit_line == line
        assert info.cancelled_line == ""
    elif expected == "oom":
        assert info.oom_line == line
        assert not info.hit_time_limit and info.cancelled_line == ""
    else:
        assert not info.hit_time_limit
        assert info.cancelled_line == line
        assert info.cancel_reason == ("" if expected == "cancelled" else expected)
        assert info.oom_line == ""


def test_the_reason_line_after_a_plain_cancel() -> None:
    info = parse_lines(["slurmstepd: error: *** JOB 5521 ON node01 CANCELLED AT 2025-07-01T12:00:00 ***",
                        "slurmstepd: error: *** REASON: maintenance window ***"])
    assert info.cancel_reason == "maintenance window"


def test_the_first_kill_line_says_why() -> None:
    # The step dies of the node failure first; the job's own plain cancel after it must not hide the reason.
    info = parse_lines([
        "slurmstepd: error: *** STEP 9.0 ON n1 CANCELLED AT 2025-01-01T00:00:00 DUE TO NODE FAILURE, SEE SLURMCTLD "
        "LOG FOR DETAILS ***",
        "slurmstepd: error: *** JOB 9 ON n1 CANCELLED AT 2025-01-01T00:00:01 ***",
    ])
    assert info.cancel_reason == "node failure"


@pytest.mark.parametrize(("sample", "cause", "pointer"), [
    ("vllm-kv-cache-init.err",
     "ValueError: No available memory for the cache blocks. Try increasing `gpu_memory_utilization` when "
     "initializing the engine.",
     "RuntimeError: Engine core initialization failed. See root cause above. Failed core proc(s): "
     "{'EngineCore_DP0': 1}"),
    ("vllm-worker-oom.err",
     "torch.OutOfMemoryError: CUDA out of memory. Tried to allocate 896.00 MiB. GPU 0 has a total capacity of "
     "39.39 GiB of which 512.00 MiB is free.",
     "Exception: WorkerProc initialization failed due to an exception in a background process. See stack trace "
     "for root cause."),
    ("vllm-engine-dead.err",
     "RuntimeError: CUDA error: an illegal memory access was encountered",
     "vllm.v1.engine.exceptions.EngineDeadError: EngineCore encountered an issue. See stack trace (above) for "
     "the root cause."),
    ("python-deprecation-tail.err", "AttributeError: 'NoneType' object has no attribute 'heartbeat'", ""),
])
def test_root_cause_of_real_crash_logs(sample: str, cause: str, pointer: str) -> None:
    lines = (DATA / sample).read_text().splitlines()
    expected = f"{cause} (then {pointer})" if pointer else cause
    assert last_error(lines) == expected


def test_root_cause_ignores_shutdown_noise_and_warnings_alone() -> None:
    # A log with nothing but a warning tail and no exception: the last real line, not the warning.
    lines = ["INFO: server listening on 8000", "benchctl: the server ended with exit code 1",
             "/usr/lib/python3.12/multiprocessing/resource_tracker.py:279: UserWarning: resource_tracker: There "
             "appear to be 2 leaked shared_memory objects to clean up at shutdown",
             "  warnings.warn('resource_tracker: There appear to be %d '"]
    assert last_error(lines) == "benchctl: the server ended with exit code 1"


@pytest.mark.parametrize(("text", "state"), [
    ("OUT_OF_ME+", JobState.OUT_OF_MEMORY), ("CANCELLED+", JobState.CANCELLED),
    ("COMPLETI+", JobState.COMPLETING), ("NODE_FAIL", JobState.NODE_FAIL), ("REQUEUE_F+", JobState.REQUEUED),
    ("EXPEDITING", JobState.REQUEUED), ("CANCELLED by 1001", JobState.CANCELLED), ("PREEMPTED", JobState.PREEMPTED),
    ("RE+", JobState.UNKNOWN),  # RESIZING, REQUEUED, REVOKED...: no guess
    ("SOMETHING_NEW", JobState.UNKNOWN),
])
def test_sacct_default_width_and_new_states(text: str, state: JobState) -> None:
    assert map_state(text) is state


@pytest.mark.parametrize(("out", "expected"), [
    ("Submitted batch job 3712345\n", ("3712345", None)),
    ("Submitted batch job 3712345 on cluster meluxina\n", ("3712345", "meluxina")),
    ("3712345;meluxina\n", ("3712345", "meluxina")),
    ("sbatch: Verify job submission ...\nSubmitted batch job 77\n", ("77", None)),
])
def test_sbatch_output_keeps_the_cluster(out: str, expected: tuple[str, str | None]) -> None:
    assert parse_sbatch(out) == expected


@pytest.fixture
def local_app(make_app):  # type: ignore[no-untyped-def]
    return make_app(profile="local")


def _check_after(app, fake_slurm, state: str, err: str) -> str:  # type: ignore[no-untyped-def]
    assert app.run_line("start chroma")
    job = app.jobs.latest_for("chroma")
    fake_slurm.jobs[job.id].state, fake_slurm.jobs[job.id].exit_code = state, "0:9"
    Path(job.err_path).write_text(err)
    app.run_line("check chroma")
    return " ".join(app.out.getvalue().split())


def test_check_says_slurm_killed_the_job_for_a_node_failure(local_app, fake_slurm) -> None:  # type: ignore[no-untyped-def]
    line = next(line for line, why in kill_lines() if why == "node failure")
    out = _check_after(local_app, fake_slurm, "NODE_FAIL", line + "\n")
    assert "lost its node (node failure)" in out


def test_check_says_out_of_memory_when_the_older_plugin_killed_it(local_app, fake_slurm) -> None:  # type: ignore[no-untyped-def]
    line = "slurmstepd: error: Job 6398 exceeded memory limit (50385312 > 49152000), being killed"
    out = _check_after(local_app, fake_slurm, "CANCELLED", line + "\n")
    assert f"was cancelled; out of memory: {line}" in out
