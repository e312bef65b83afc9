"""`check --wait`, readiness probes and `logs` over the fake Slurm, with a REAL HTTP server on loopback
standing in for the service's health endpoint (what benchctl probes is real HTTP)."""

from __future__ import annotations

import http.server
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from benchctl.app import App
from benchctl.jobs import Job
from benchctl.poller import Poller
from benchctl.slurm.states import JobState
from tests.fakes import FakeSlurm


class Heartbeat(http.server.BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        ok = self.path == "/api/v2/heartbeat"
        self.send_response(200 if ok else 404)
        self.end_headers()
        if ok:
            self.wfile.write(b'{"nanosecond heartbeat": 1}')

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def health_port() -> Iterator[int]:
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Heartbeat)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server.server_address[1]
    server.shutdown()


@pytest.fixture
def local_app(make_app) -> App:  # type: ignore[no-untyped-def]
    """Profile `local`: services are reached on 127.0.0.1 (network.connect = localhost)."""
    return make_app(profile="local")


def output(app: App) -> str:
    return " ".join(app.out.getvalue().split())  # type: ignore[attr-defined]


def started(app: App) -> Job:
    assert app.run_line("start chroma")
    job = app.jobs.latest_for("chroma")
    assert job is not None
    return job


def write_markers(job: Job, port: int, node: str = "n1", *, ready: bool = True) -> None:
    """What the job script prints; READY once its own service answers on its port (see the serve macro)."""
    Path(job.out_path).write_text(f"BENCHCTL_JOBID={job.id}\nBENCHCTL_HOST={node}\nBENCHCTL_NODE={node}\n"
                                  f"BENCHCTL_IP=10.0.0.1\nBENCHCTL_PORT={port}\n"
                                  + ("BENCHCTL_READY=2026-12-03T10:00:00Z\n" if ready else ""))


def test_wait_succeeds_when_the_health_endpoint_answers(local_app: App, fake_slurm: FakeSlurm,
                                                        health_port: int) -> None:
    job = started(local_app)
    fake_slurm.jobs[job.id].state, fake_slurm.jobs[job.id].nodes = "RUNNING", "n1"
    write_markers(job, health_port)
    assert local_app.run_line("check chroma --wait --timeout 10")
    out = output(local_app)
    assert f"chroma:{job.id} ready" in out
    assert f"RUNNING on n1 127.0.0.1:{health_port} ready" in out
    assert f"tunnel: ssh -p 22 tester@localhost -NL {health_port}:n1:{health_port}" in out
    assert local_app.jobs.get(job.id).ready  # type: ignore[union-attr]


def test_wait_times_out_with_the_state_and_keeps_the_job(local_app: App, fake_slurm: FakeSlurm) -> None:
    job = started(local_app)
    fake_slurm.jobs[job.id].reason = "Resources"
    assert not local_app.run_line("check chroma --wait --timeout 1")
    out = output(local_app)
    assert f"chroma:{job.id} not ready after 1 s (state PENDING, Resources)" in out
    assert f"chroma:{job.id} PENDING (Resources)" in out  # the progress line, recorded
    assert local_app.jobs.get(job.id).state is JobState.PENDING  # type: ignore[union-attr]


def test_wait_fails_with_the_reason_when_the_job_dies(local_app: App, fake_slurm: FakeSlurm) -> None:
    job = started(local_app)
    fake_slurm.jobs[job.id].state, fake_slurm.jobs[job.id].exit_code = "FAILED", "3:0"
    Path(job.err_path).write_text("Traceback ...\nOSError: [Errno 28] No space left on device\n")
    assert not local_app.run_line("check chroma --wait --timeout 10")
    out = output(local_app)
    assert f"chroma:{job.id} ended FAILED (exit code 3); last error: OSError: [Errno 28] No space left" in out


def test_wait_on_a_port_nobody_answers_is_not_ready(local_app: App, fake_slurm: FakeSlurm) -> None:
    job = started(local_app)
    fake_slurm.jobs[job.id].state = "RUNNING"
    write_markers(job, 9)  # discard port: nothing listens
    assert not local_app.run_line("check chroma --wait --timeout 1")
    assert "not ready after 1 s (state RUNNING)" in output(local_app)


def test_poller_probe_marks_the_job_ready(local_app: App, fake_slurm: FakeSlurm, health_port: int) -> None:
    job = started(local_app)
    fake_slurm.jobs[job.id].state = "RUNNING"
    write_markers(job, health_port)
    Poller(local_app, 1.0).poll_once()
    assert local_app.jobs.get(job.id).ready  # type: ignore[union-attr]
    assert f"[chroma job {job.id}] PENDING → RUNNING on n1, ready" in output(local_app)


def test_logs_tail_and_err(local_app: App, fake_slurm: FakeSlurm) -> None:
    job = started(local_app)
    Path(job.out_path).write_text("".join(f"line {i}\n" for i in range(100)))
    Path(job.err_path).write_text("[rank0]: warning [/scratch/x]\n")
    assert local_app.run_line("logs chroma -n 2")
    out = local_app.out.getvalue()  # type: ignore[attr-defined]
    assert "line 98\nline 99\n" in out and "line 97" not in out
    assert local_app.run_line(f"logs {job.id} --err")
    assert "[rank0]: warning [/scratch/x]" in local_app.out.getvalue()  # type: ignore[attr-defined]  # no markup


def test_logs_follow_ends_when_the_job_ends(local_app: App, fake_slurm: FakeSlurm) -> None:
    job = started(local_app)
    fake_slurm.jobs[job.id].state = "RUNNING"
    Path(job.out_path).write_text("first\n")

    def produce() -> None:
        time.sleep(0.5)
        with open(job.out_path, "a") as fh:
            fh.write("second\n")
        time.sleep(0.5)
        fake_slurm.jobs[job.id].state = "COMPLETED"

    threading.Thread(target=produce, daemon=True).start()
    started_at = time.monotonic()
    assert local_app.run_line("logs chroma --follow")
    assert time.monotonic() - started_at < 10
    out = local_app.out.getvalue()  # type: ignore[attr-defined]
    assert "first" in out and "second" in out and f"(job {job.id} ended: COMPLETED)" in out
