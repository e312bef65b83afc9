"""Damaged state, broken config, full disks and truncated logs, produced for real: files written damaged,
a small tmpfs filled up (root mounts it; the test is skipped where mounting is not allowed), a log
truncated while it is followed."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from benchctl.app import App
from benchctl.llmsim import SimConfig, running
from tests.fakes import FakeSlurm
from tests.test_wait_logs import output, started


@pytest.mark.parametrize("text", ["[]", "null", '{"jobs": "x"}', '{"jobs": [1]}', "", "{truncated"])
def test_a_damaged_job_table_is_one_warning_and_every_command_works(make_app, text: str) -> None:  # type: ignore[no-untyped-def]
    path = Path(os.environ["BENCHCTL_HOME"]) / "state" / "jobs.json"
    path.parent.mkdir(parents=True)
    path.write_text(text)
    app = make_app()
    assert app.run_line("help") and app.run_line("status")
    warnings = [line for line in output(app).split("warning: ")[1:]]
    assert len(warnings) == 1 and str(path.parent) in warnings[0]
    assert app.run_line("start chroma") and len(app.jobs.all()) == 1


def test_a_record_with_a_bad_field_does_not_break_status(make_app, fake_slurm: FakeSlurm) -> None:  # type: ignore[no-untyped-def]
    app = make_app()
    started(app)
    path = Path(os.environ["BENCHCTL_HOME"]) / "state" / "jobs.json"
    data = json.loads(path.read_text())
    data["jobs"].append(dict(data["jobs"][0], id="101", submitted_at="yesterday"))
    path.write_text(json.dumps(data))
    again = make_app()
    assert again.run_line("status")
    assert "1 unusable record(s)" in output(again) and "100" in output(again)


def test_a_broken_config_is_one_line_naming_file_and_key(tmp_path: Path) -> None:
    config = Path(os.environ["BENCHCTL_CONFIG"])
    config.write_text('[slurm]\ntime = "01:00:00"\n\n[container]\nbinds = [1, 2]\n')
    res = subprocess.run([sys.executable, "-m", "benchctl", "-e", "help"], capture_output=True, text=True,
                         timeout=60)
    assert res.returncode == 2 and res.stdout == ""
    assert res.stderr.strip() == (f"benchctl: user {config} line 5: container.binds should be a list of text "
                                  "(paths or names), got [1, 2]")


# ---- a full disk ------------------------------------------------------------------------------------------


def test_bench_on_a_full_results_disk_shows_the_summary_and_leaves_no_torn_file(app: App, full_disk: Path) -> None:
    app.home.mkdir(parents=True, exist_ok=True)
    os.symlink(full_disk / "results", app.home / "results")  # results on the full disk, the rest elsewhere
    with running(SimConfig(ttft_ms=1, itl_ms=1, output_tokens=4)) as sim:
        assert not app.run_line(f"bench llm --url {sim.url} --model sim --requests 40 --concurrency 4 "
                                "--output-tokens 4")
    text = output(app)
    assert "TTFT p50" in text  # the summary was shown
    assert "results not saved: No space left on device" in text
    for run_dir in (full_disk / "results").iterdir():
        if run_dir.is_dir():
            assert not (run_dir / "run.json").exists() or json.loads((run_dir / "run.json").read_text())
            assert not [p for p in run_dir.iterdir() if p.name.endswith(".tmp")]


def test_logs_follow_goes_on_after_the_log_is_truncated(make_app, fake_slurm: FakeSlurm) -> None:  # type: ignore[no-untyped-def]
    app = make_app(profile="local")
    job = started(app)
    fake_slurm.jobs[job.id].state = "RUNNING"
    out = Path(job.out_path)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text("old line 1\nold line 2\n")
    thread = threading.Thread(target=app.run_line, args=(f"logs {job.id} --follow",))
    thread.start()
    time.sleep(0.8)
    out.write_text("")  # truncated (logrotate, or the user)
    time.sleep(0.5)
    with out.open("a") as fh:
        fh.write("new line after truncation\n")
    time.sleep(0.8)
    fake_slurm.jobs[job.id].state = "COMPLETED"
    thread.join(timeout=10)
    text = output(app)
    assert "the log was truncated" in text and "new line after truncation" in text
