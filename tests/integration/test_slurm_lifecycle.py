"""Real Slurm: the chroma life cycle, failures, pending jobs and re-attaching after a restart."""

from __future__ import annotations

import os
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from benchctl.slurm.states import JobState
from tests.integration.conftest import sacct_state

pytestmark = pytest.mark.slurm


def wait_until(predicate, timeout: float, step: float = 1.0):  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(step)
    raise AssertionError(f"condition not met within {timeout} s")


def test_cli_chroma_lifecycle_on_real_slurm(slurm_config: Path, isolated_env: Path) -> None:
    """benchctl -e "start chroma; check chroma --wait; stop chroma": PENDING/RUNNING → ready → CANCELLED."""
    env = dict(os.environ)
    proc = subprocess.run([sys.executable, "-m", "benchctl", "-e",
                           "start chroma; check chroma; check chroma --wait --timeout 120; logs chroma -n 200; "
                           "stop chroma; status"],
                          capture_output=True, text=True, timeout=240, env=env)
    out = proc.stdout
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "submitted chroma as job" in out
    job_id = out.split("submitted chroma as job ", 1)[1].split()[0]
    assert job_id.isdigit()
    assert "ready" in out and " on n" in out  # node n1 or n2 of the local cluster
    assert "tunnel: ssh -p 22" in out and "-NL" in out
    # `logs chroma`: the job's markers and chroma's own start-up lines (benchctl's readiness probe may beat
    # the job's READY marker, so that one is not required here).
    assert f"BENCHCTL_JOBID={job_id}" in out and "Saving data to:" in out
    assert f"stopped chroma job {job_id}: CANCELLED" in out
    assert sacct_state(job_id).startswith("CANCELLED")
    # The job shut chroma down cleanly before the cancel (graceful stop).
    job_out = next(Path(os.environ["BENCHCTL_HOME"], "jobs").glob(f"chroma-*/slurm-{job_id}.out")).read_text()
    assert "BENCHCTL_STOPPING=TERM" in job_out and "BENCHCTL_STOPPED=" in job_out
    # The autosaved transcript holds the commands and their output.
    transcript = next(Path(os.environ["BENCHCTL_HOME"], "sessions").glob("*/transcript.txt")).read_text()
    assert "benchctl> start chroma" in transcript
    assert "benchctl> check chroma --wait --timeout 120" in transcript
    assert "CANCELLED" in transcript and "ready" in transcript


def test_chroma_answers_real_requests_while_ready(slurm_app) -> None:  # type: ignore[no-untyped-def]
    app = slurm_app()
    assert app.run_line("start chroma --time 00:10:00")
    assert app.run_line("check chroma --wait --timeout 120")
    job = app.jobs.latest_for("chroma")
    assert job is not None and job.ready and job.state is JobState.RUNNING and job.port
    assert job.host in ("n1", "n2")
    with urllib.request.urlopen(f"http://127.0.0.1:{job.port}/api/v2/heartbeat", timeout=5) as resp:
        assert resp.status == 200 and b"heartbeat" in resp.read()
    assert app.run_line("stop chroma")
    assert app.jobs.get(job.id).state is JobState.CANCELLED


def test_failing_job_reports_failed_and_exit_code(slurm_app) -> None:  # type: ignore[no-untyped-def]
    """Runtime apptainer where there is no apptainer: the job fails with 127 and check says why."""
    app = slurm_app()
    assert app.run_line("start chroma --runtime apptainer")
    ok = app.run_line("check chroma --wait --timeout 60")
    out = app.out.getvalue()
    assert not ok
    assert "ended FAILED (exit code 127)" in out
    assert "apptainer not found" in out
    job = app.jobs.latest_for("chroma")
    assert job.state is JobState.FAILED and job.exit_code == 127
    assert sacct_state(job.id) == "FAILED"


def test_stop_pending_job(slurm_app) -> None:  # type: ignore[no-untyped-def]
    """A full cluster keeps the job PENDING (Resources); stop cancels it without the graceful phase."""
    blocker = subprocess.run(["sbatch", "--parsable", "-N", "2", "-c", "4", "-t", "5", "-J", "blocker",
                              "-o", "/dev/null", "--wrap", "sleep 300"], capture_output=True, text=True, timeout=30)
    assert blocker.returncode == 0, blocker.stderr
    blocker_id = blocker.stdout.strip().split(";")[0]
    try:
        wait_until(lambda: sacct_state(blocker_id) == "RUNNING", 30)
        app = slurm_app()
        assert app.run_line("start chroma")
        job = app.jobs.latest_for("chroma")
        time.sleep(2)
        assert app.run_line("check chroma")
        assert app.jobs.get(job.id).state is JobState.PENDING
        assert "PENDING" in app.out.getvalue()
        assert app.run_line(f"stop {job.id}")
        assert app.jobs.get(job.id).state is JobState.CANCELLED
        assert wait_until(lambda: sacct_state(job.id).startswith("CANCELLED"), 20)
    finally:
        subprocess.run(["scancel", blocker_id], capture_output=True, timeout=30)


def test_restart_reattaches_to_running_job(slurm_app) -> None:  # type: ignore[no-untyped-def]
    first = slurm_app()
    assert first.run_line("start chroma")
    job_id = first.jobs.latest_for("chroma").id
    del first  # "quit" benchctl: the job keeps running
    second = slurm_app()  # same BENCHCTL_HOME: reads state/jobs.json
    assert second.jobs.get(job_id) is not None
    assert second.run_line("check chroma --wait --timeout 120")
    assert second.jobs.get(job_id).ready
    assert second.run_line("status")
    assert job_id in second.out.getvalue() and "RUNNING" in second.out.getvalue()
    assert second.run_line("stop all")
    assert second.jobs.get(job_id).state is JobState.CANCELLED


def test_time_limit_is_reported(slurm_app) -> None:  # type: ignore[no-untyped-def]
    """--time 1: Slurm kills the job after ~60-90 s; TIMEOUT and the time-limit line reach `check`."""
    app = slurm_app()
    assert app.run_line("start chroma --time 1")
    job_id = app.jobs.latest_for("chroma").id
    assert wait_until(lambda: sacct_state(job_id) == "TIMEOUT", 180, step=3)
    # benchctl shows the final state as soon as Slurm has it (even while squeue still says COMPLETING).
    assert wait_until(lambda: app.run_line(f"check {job_id}") and app.jobs.get(job_id).state is JobState.TIMEOUT,
                      20)
    out = " ".join(app.out.getvalue().split())  # undo the console's line wrapping
    job = app.jobs.get(job_id)
    assert job.state is JobState.TIMEOUT and job.time_limit_hit
    assert "hit its time limit" in out
    assert f"*** JOB {job_id} ON" in out and "DUE TO TIME LIMIT ***" in out
    # The USR1 warning before the limit let chroma shut down cleanly first.
    job_out = Path(job.out_path).read_text()
    assert "BENCHCTL_STOPPING=USR1" in job_out and "BENCHCTL_STOPPED=0" in job_out
