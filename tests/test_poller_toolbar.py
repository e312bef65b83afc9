"""The poller thread's rounds (one squeue for all jobs, announcements, back-off) and the toolbar it feeds."""

from __future__ import annotations

from benchctl.app import App
from benchctl.executors.process import Completed
from benchctl.jobs import Job
from benchctl.poller import MAX_INTERVAL, Poller
from benchctl.slurm.states import JobState
from benchctl.toolbar import make_toolbar
from tests.fakes import FakeSlurm


def toolbar_text(app: App, poller: Poller | None = None) -> str:
    return "".join(text for _style, text in make_toolbar(app, poller)())


def submit(app: App, fake: FakeSlurm) -> Job:
    assert app.run_line("start chroma")
    job = app.jobs.latest_for("chroma")
    assert job is not None
    return job


def test_one_squeue_call_per_round_for_all_jobs(app: App, fake_slurm: FakeSlurm) -> None:
    first, second = submit(app, fake_slurm), submit(app, fake_slurm)
    fake_slurm.calls.clear()
    Poller(app, 1.0).poll_once()
    squeues = [c for c in fake_slurm.calls if c[0] == "squeue"]
    assert len(squeues) == 1
    assert squeues[0][squeues[0].index("-j") + 1] == f"{first.id},{second.id}"


def test_state_change_is_announced_once_and_shown_in_toolbar(app: App, fake_slurm: FakeSlurm) -> None:
    job = submit(app, fake_slurm)
    changes: list[int] = []
    poller = Poller(app, 1.0, on_change=lambda: changes.append(1))
    assert f"chroma:{job.id} PENDING" in toolbar_text(app, poller)
    fake_slurm.jobs[job.id].state, fake_slurm.jobs[job.id].nodes = "RUNNING", "mel0153"
    app.out.truncate(0)  # type: ignore[attr-defined]
    delay = poller.poll_once()
    out = app.out.getvalue()  # type: ignore[attr-defined]
    assert f"[chroma job {job.id}] PENDING → RUNNING on mel0153" in out
    assert changes == [1]
    assert delay == 1.0  # not ready yet: keep polling often
    assert f"chroma:{job.id} RUNNING@mel0153" in toolbar_text(app, poller)
    app.out.truncate(0)  # type: ignore[attr-defined]
    poller.poll_once()
    assert "→" not in app.out.getvalue()  # type: ignore[attr-defined]  # no change, no line


def test_finished_jobs_leave_the_toolbar_and_polling_stops(app: App, fake_slurm: FakeSlurm) -> None:
    job = submit(app, fake_slurm)
    fake_slurm.jobs[job.id].state = "FAILED"
    fake_slurm.jobs[job.id].exit_code = "3:0"
    poller = Poller(app, 1.0)
    poller.poll_once()
    assert app.jobs.get(job.id).state is JobState.FAILED  # type: ignore[union-attr]
    assert "no active jobs" in toolbar_text(app, poller)
    fake_slurm.calls.clear()
    poller.poll_once()
    assert fake_slurm.calls == []  # nothing active: Slurm is not asked


def test_scheduler_failures_back_off_and_show_in_toolbar(app: App, fake_slurm: FakeSlurm) -> None:
    job = submit(app, fake_slurm)
    poller = Poller(app, 2.0)
    down = Completed(("squeue",), 1, "", "slurm_load_jobs error: Unable to contact slurm controller")
    delays = []
    for _ in range(3):
        fake_slurm.fail_next = {"squeue": down, "sacct": Completed(("sacct",), 1, "", "connection refused")}
        delays.append(poller.poll_once())
    assert delays == [4.0, 8.0, 16.0]
    assert "scheduler not answering (3x)" in toolbar_text(app, poller)
    assert app.jobs.get(job.id).state is JobState.PENDING  # a failed poll changes nothing  # type: ignore[union-attr]
    poller.poll_once()  # Slurm answers again
    assert poller.error == "" and "not answering" not in toolbar_text(app, poller)


def test_stable_ready_jobs_are_polled_rarely(app: App, fake_slurm: FakeSlurm) -> None:
    job = submit(app, fake_slurm)
    fake_slurm.jobs[job.id].state = "RUNNING"
    app.jobs.update(job.id, ready=True, state=JobState.RUNNING)
    assert Poller(app, 1.0).poll_once() == MAX_INTERVAL
