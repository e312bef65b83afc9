"""Real services under the local executor: a second server on a port another job holds is never called
ready (the job's own process must listen on the port) and its failure is named; `stop` does not wait out
its grace for a log that was deleted."""

from __future__ import annotations

import sys
import time
from pathlib import Path

import pytest

from benchctl.app import App
from benchctl.config import load_settings
from tests.conftest import string_ui
from tests.test_faults_llm import free_port

CHROMA = Path(sys.executable).with_name("chroma")


@pytest.fixture
def local_app() -> App:
    ui, buf = string_ui()
    app = App(settings=load_settings(executor="local", profile="local"), ui=ui)
    app.out = buf  # type: ignore[attr-defined]
    yield app  # type: ignore[misc]
    for job in app.jobs.active():
        app.service(job.service).stop(job, grace=3, poll=0.2)


def out(app: App) -> str:
    return " ".join(app.out.getvalue().split())  # type: ignore[attr-defined]


@pytest.mark.skipif(not CHROMA.exists(), reason="chroma is not installed next to this Python")
def test_a_port_held_by_another_job_is_not_ready_and_the_cause_is_named(local_app: App) -> None:
    port = free_port()
    assert local_app.run_line(f"start chroma --port {port}"), out(local_app)
    first = local_app.jobs.latest_for("chroma")
    assert local_app.run_line(f"check {first.id} --wait --timeout 60"), out(local_app)  # type: ignore[union-attr]
    assert local_app.run_line(f"start chroma --port {port}"), out(local_app)
    second = local_app.jobs.latest_for("chroma")
    assert second is not None and second.id != first.id  # type: ignore[union-attr]
    assert not local_app.run_line(f"check {second.id} --wait --timeout 60")
    text = out(local_app)
    assert f"chroma:{second.id} ready" not in text
    assert f"chroma:{second.id} ended before it was ready" in text or f"chroma:{second.id} ended FAILED" in text
    assert "last error:" in text and str(port) in text.split(f"chroma:{second.id} ended", 1)[1]
    assert local_app.jobs.get(second.id).ready is False  # type: ignore[union-attr]


def test_llmsim_on_a_taken_port_fails_with_the_bind_error(local_app: App) -> None:
    port = free_port()
    assert local_app.run_line(f"start llm-sim --port {port}")
    assert local_app.run_line("check llm-sim --wait --timeout 30"), out(local_app)
    assert local_app.run_line(f"start llm-sim --port {port}")
    second = local_app.jobs.latest_for("llm-sim")
    assert not local_app.run_line(f"check {second.id} --wait --timeout 30")  # type: ignore[union-attr]
    assert "address already in use" in out(local_app).lower()


def test_stop_does_not_wait_out_its_grace_for_a_deleted_log(local_app: App) -> None:
    assert local_app.run_line("start llm-sim")
    assert local_app.run_line("check llm-sim --wait --timeout 30"), out(local_app)
    job = local_app.jobs.latest_for("llm-sim")
    Path(job.out_path).unlink()  # type: ignore[union-attr]
    local_app.settings.values["slurm.stop_grace"] = 20
    t0 = time.monotonic()
    assert local_app.run_line("stop llm-sim"), out(local_app)
    assert time.monotonic() - t0 < 12, out(local_app)
    assert "CANCELLED" in out(local_app)
