"""Real Slurm faults: slurmctld stopped (one clear line, the last known states, no slow retry per command),
slurmdbd stopped then back with a lagging database (a cancelled job never shows RUNNING again), and a job id
Slurm does not know inside `stop all`. The daemons are stopped and started by scripts/local-slurm.sh."""

from __future__ import annotations

import os
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from benchctl.jobs import Job
from benchctl.slurm.states import JobState
from tests.conftest import REPO
from tests.integration.conftest import sacct_state

pytestmark = pytest.mark.slurm
SCRIPT = str(REPO / "scripts" / "local-slurm.sh")


def daemon(action: str, name: str) -> None:
    subprocess.run([SCRIPT, "daemon", action, name], check=True, capture_output=True, timeout=180)


@pytest.fixture
def restore_daemons() -> Iterator[None]:
    yield
    for name in ("slurmdbd", "slurmctld"):  # whatever a failed test left stopped
        daemon("start", name)


def out(app) -> str:  # type: ignore[no-untyped-def]
    return str(app.out.getvalue())


@pytest.mark.usefixtures("restore_daemons")
def test_controller_down_is_one_line_and_the_last_known_states(slurm_app) -> None:  # type: ignore[no-untyped-def]
    app = slurm_app()
    assert app.run_line("start llm-sim --ttft-ms 1 --itl-ms 1"), out(app)
    assert app.run_line("check llm-sim --wait --timeout 120"), out(app)
    daemon("stop", "slurmctld")
    t0 = time.monotonic()
    assert app.run_line("status")  # the cached table with one warning
    assert "controller (slurmctld) does not answer" in out(app) and "RUNNING" in out(app)
    t1 = time.monotonic()
    assert not app.run_line("check llm-sim")
    took_check = time.monotonic() - t1
    assert "(last known)" in out(app)
    errors = [line for line in out(app).splitlines()[-6:] if line.startswith("error:")]
    assert len(errors) == 1 and "does not answer" in errors[0]
    assert took_check < 5, took_check  # scontrol ping answers at once: squeue's ~18 s retry happens once only
    assert t1 - t0 < 40
    daemon("start", "slurmctld")
    assert app.run_line("check llm-sim"), out(app)
    assert app.run_line("stop llm-sim"), out(app)


@pytest.mark.usefixtures("restore_daemons")
def test_a_lagging_accounting_database_never_revives_a_cancelled_job(slurm_app) -> None:  # type: ignore[no-untyped-def]
    app = slurm_app()
    daemon("stop", "slurmdbd")
    assert app.run_line("start llm-sim --ttft-ms 1 --itl-ms 1"), out(app)
    assert app.run_line("check llm-sim --wait --timeout 120"), out(app)
    assert app.run_line("stop llm-sim"), out(app)
    [job] = app.jobs.all()
    assert app.jobs.get(job.id).state is JobState.CANCELLED
    daemon("start", "slurmdbd")
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:  # the database catches up with rows older than squeue's answer
        assert app.run_line("status")
        assert app.jobs.get(job.id).state is JobState.CANCELLED, out(app)
        time.sleep(1)


def test_stop_all_stops_the_real_jobs_despite_an_unknown_id(slurm_app) -> None:  # type: ignore[no-untyped-def]
    app = slurm_app()
    app.jobs.add(Job(id="987654", service="llm-sim", executor="slurm", state=JobState.RUNNING,
                     out_path=str(Path(app.home) / "missing.out")))
    assert app.run_line("start llm-sim --ttft-ms 1 --itl-ms 1"), out(app)
    real = app.jobs.latest_for("llm-sim")
    assert real is not None and real.id != "987654"
    assert app.run_line("stop all"), out(app)
    assert app.jobs.get("987654").state is JobState.GONE
    assert app.jobs.get(real.id).state.is_final
    assert app.run_line("forget 987654") and app.jobs.get("987654") is None


def test_a_job_that_cannot_be_recorded_is_cancelled(slurm_app, full_disk: Path) -> None:  # type: ignore[no-untyped-def]
    home = Path(os.environ["BENCHCTL_HOME"])
    home.mkdir(parents=True, exist_ok=True)
    (full_disk / "state").mkdir(exist_ok=True)
    os.symlink(full_disk / "state", home / "state")  # the job table on a full disk, the jobs folder elsewhere
    app = slurm_app()
    assert not app.run_line("start llm-sim")
    text = out(app)
    assert "was submitted but cannot be recorded (No space left on device" in text, text
    assert "it was cancelled so that nothing runs untracked" in text
    job_id = text.split("job ", 1)[1].split()[0]
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and not sacct_state(job_id).startswith("CANCELLED"):
        time.sleep(1)
    assert sacct_state(job_id).startswith("CANCELLED")
