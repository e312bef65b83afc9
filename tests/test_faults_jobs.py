"""'Ready' is re-checked, states only move forward, and `stop` finishes what it can -- over the fake Slurm,
with a REAL HTTP server on loopback standing in for the service (what benchctl probes is real HTTP)."""

from __future__ import annotations

import http.server
import threading
from pathlib import Path

from benchctl.app import App
from benchctl.jobs import Job
from benchctl.poller import Poller
from benchctl.slurm.states import JobState
from tests.fakes import FakeSlurm
from tests.test_wait_logs import Heartbeat, output, started, write_markers


def serve() -> http.server.ThreadingHTTPServer:
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Heartbeat)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server


def ready_job(app: App, fake: FakeSlurm, port: int) -> Job:
    job = started(app)
    fake.jobs[job.id].state, fake.jobs[job.id].nodes = "RUNNING", "n1"
    write_markers(job, port)
    assert app.run_line("check chroma --wait --timeout 10")
    assert app.jobs.get(job.id).ready  # type: ignore[union-attr]
    return job


def test_a_service_that_stopped_answering_is_not_called_ready(make_app, fake_slurm: FakeSlurm) -> None:  # type: ignore[no-untyped-def]
    app = make_app(profile="local")
    server = serve()
    job = ready_job(app, fake_slurm, server.server_address[1])
    server.shutdown()
    server.server_close()
    assert app.run_line("check chroma")
    assert "RUNNING on n1" in output(app) and "not answering" in output(app)
    assert app.jobs.get(job.id).ready is False  # type: ignore[union-attr]
    assert app.run_line("status") and "not answering" in output(app)
    assert not app.run_line("bench chroma --n 10 --timeout 600")  # fails at once, no 600 s wait
    assert "was ready but does not answer now" in output(app)


def test_a_service_stopped_inside_its_job_is_said_and_bench_fails_fast(make_app, fake_slurm: FakeSlurm) -> None:  # type: ignore[no-untyped-def]
    app = make_app(profile="local")
    server = serve()
    job = ready_job(app, fake_slurm, server.server_address[1])
    with Path(job.out_path).open("a") as fh:  # the pre-time-limit USR1 stopped the service; the job lives on
        fh.write("BENCHCTL_STOPPING=USR1\nBENCHCTL_STOPPED=0\n")
    assert app.run_line("check chroma") and "service stopped" in output(app)
    assert not app.run_line("bench chroma --n 10")
    assert "the service stopped inside the job" in output(app)
    server.shutdown()


def test_the_poller_rechecks_a_ready_job(make_app, fake_slurm: FakeSlurm, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    app = make_app(profile="local")
    server = serve()
    job = ready_job(app, fake_slurm, server.server_address[1])
    server.shutdown()
    server.server_close()
    monkeypatch.setattr("benchctl.poller.RECHECK_READY", 0.0)
    Poller(app, 1.0).poll_once()
    assert app.jobs.get(job.id).health == "not answering"  # type: ignore[union-attr]
    assert f"[chroma job {job.id}] not answering" in output(app)


def test_states_only_move_forward(app: App, fake_slurm: FakeSlurm) -> None:
    job = started(app)
    fake_slurm.jobs[job.id].state = "CANCELLED"
    assert app.run_line("status")
    assert app.jobs.get(job.id).state is JobState.CANCELLED  # type: ignore[union-attr]
    fake_slurm.jobs[job.id].state = "RUNNING"  # a lagging database answers with an older row
    assert app.run_line("status")
    assert app.jobs.get(job.id).state is JobState.CANCELLED  # type: ignore[union-attr]


def test_stop_all_stops_what_it_can_and_marks_unknown_ids_gone(make_app, fake_slurm: FakeSlurm) -> None:  # type: ignore[no-untyped-def]
    app = make_app()
    app.jobs.add(Job(id="555", service="chroma", executor="slurm", state=JobState.RUNNING))  # Slurm forgot it
    job = started(app)
    fake_slurm.jobs[job.id].state = "RUNNING"
    app.settings.values["slurm.stop_grace"] = 0.2
    assert app.run_line("stop all"), output(app)
    assert app.jobs.get(job.id).state is JobState.CANCELLED  # type: ignore[union-attr]
    assert app.jobs.get("555").state is JobState.GONE  # type: ignore[union-attr]
    assert "no longer knows this job; marked GONE" in output(app)
    assert app.run_line("forget 555") and app.jobs.get("555") is None


def test_forget_refuses_a_job_that_may_still_run(app: App, fake_slurm: FakeSlurm) -> None:
    job = started(app)
    assert not app.run_line(f"forget {job.id}")
    assert "stop it first" in output(app)
    assert app.run_line(f"forget {job.id} --force") and app.jobs.get(job.id) is None
    assert not app.run_line("forget 424242") and "no tracked job" in output(app)
