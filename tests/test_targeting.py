"""Which job a command acts on: `bench SERVICE` takes the newest READY job (and says which), `bench JOBID` and
`--job ID` name one, options are checked before any wait; `check SERVICE` shows all of that service's jobs; a
second `start` says the service already runs."""

from __future__ import annotations

import time

import pytest

from benchctl.app import App
from benchctl.commands.bench import pick_server_job
from benchctl.jobs import Job
from tests.fakes import FakeSlurm
from tests.test_commands import clear, fails_with, output


def _start(app: App, fake: FakeSlurm, state: str, ready: bool = False) -> Job:
    assert app.run_line("start chroma"), output(app)
    job = app.jobs.latest_for("chroma")
    assert job is not None
    fake.jobs[job.id].state, fake.jobs[job.id].nodes = state, "n1" if state == "RUNNING" else ""
    time.sleep(0.01)  # distinct submission times
    return app.jobs.update(job.id, ready=ready, state=job.state) or job


@pytest.fixture
def three(app: App, fake_slurm: FakeSlurm) -> tuple[Job, Job, Job]:
    a = _start(app, fake_slurm, "RUNNING", ready=True)
    b = _start(app, fake_slurm, "RUNNING", ready=True)
    c = _start(app, fake_slurm, "PENDING")
    clear(app)
    return a, b, c


def test_bench_takes_the_newest_ready_job_and_says_which(app: App, three: tuple[Job, Job, Job]) -> None:
    a, b, c = three
    assert pick_server_job(app, "chroma", None).id == b.id  # not the newer pending one
    assert f"bench chroma: job {b.id} (the newest ready one; also running: {a.id}, {c.id}" in output(app)


def test_a_named_job_is_taken(app: App, three: tuple[Job, Job, Job]) -> None:
    a, _, _ = three
    assert pick_server_job(app, "chroma", a.id).id == a.id
    with pytest.raises(Exception, match="is a chroma job, not qdrant"):
        pick_server_job(app, "qdrant", a.id)


def test_without_a_ready_job_the_newest_starting_one(app: App, fake_slurm: FakeSlurm) -> None:
    a = _start(app, fake_slurm, "PENDING")
    b = _start(app, fake_slurm, "PENDING")
    assert pick_server_job(app, "chroma", None).id == b.id
    assert f"none is ready yet: the newest; also running: {a.id}" in output(app)


def test_options_are_checked_before_any_wait(app: App, three: tuple[Job, Job, Job]) -> None:
    started = time.monotonic()
    assert "--concurrency" in fails_with(app, "bench chroma --concurrency 0")
    assert "--concurrency" in fails_with(app, f"bench {three[2].id} --concurrency 0")  # a job id as the target
    assert time.monotonic() - started < 2


def test_bench_jobid_is_bench_service_job(app: App, three: tuple[Job, Job, Job], fake_slurm: FakeSlurm) -> None:
    a, _, _ = three
    fake_slurm.jobs[a.id].state = "COMPLETED"
    err = fails_with(app, f"bench {a.id}")
    assert f"chroma:{a.id} has ended (COMPLETED)" in err


def test_check_service_lists_all_its_active_jobs(app: App, three: tuple[Job, Job, Job]) -> None:
    assert app.run_line("check chroma")
    out = output(app)
    assert all(f"chroma job {j.id}:" in out for j in three)


def test_a_second_start_says_the_service_already_runs(app: App, three: tuple[Job, Job, Job]) -> None:
    a, b, c = three
    assert app.run_line("start chroma")
    out = output(app)  # the states as last seen (start does not query the scheduler for this note)
    assert f"note: chroma already runs as {a.id} (" in out and f"{b.id} (" in out and f"{c.id} (PENDING)" in out
