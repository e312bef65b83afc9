"""The persisted job table: atomic saves, broken files, and two benchctl sessions sharing one table."""

from __future__ import annotations

import json
import stat
from pathlib import Path

from benchctl.jobs import Job, JobTable
from benchctl.slurm.states import JobState


def job(job_id: str, service: str = "chroma", **kw: object) -> Job:
    return Job(id=job_id, service=service, executor="slurm", **kw)  # type: ignore[arg-type]


def test_round_trip_and_private_file(tmp_path: Path) -> None:
    path = tmp_path / "state" / "jobs.json"
    table = JobTable(path)
    table.add(job("12", port=8000, options={"time": "01:00:00"}))
    table.update("12", state=JobState.RUNNING, host="mel0153", ready=True)
    again = JobTable(path)
    loaded = again.get("12")
    assert loaded is not None
    assert (loaded.state, loaded.host, loaded.ready, loaded.port) == (JobState.RUNNING, "mel0153", True, 8000)
    assert loaded.options == {"time": "01:00:00"}
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert [p.name for p in path.parent.iterdir() if p.name.startswith(".jobs-")] == []  # no temp files left


def test_update_without_change_does_not_save_or_bump(tmp_path: Path) -> None:
    table = JobTable(tmp_path / "jobs.json")
    table.add(job("1", state=JobState.RUNNING))
    version, mtime = table.version, (tmp_path / "jobs.json").stat().st_mtime_ns
    assert table.update("1", state=JobState.RUNNING) == table.get("1")
    assert table.version == version and (tmp_path / "jobs.json").stat().st_mtime_ns == mtime
    assert table.update("nosuch", state=JobState.FAILED) is None


def test_corrupt_file_is_kept_aside_not_overwritten(tmp_path: Path) -> None:
    path = tmp_path / "jobs.json"
    path.write_text("{not json")
    table = JobTable(path)
    assert table.all() == []
    assert path.with_suffix(".corrupt").read_text() == "{not json"
    table.add(job("2"))
    assert json.loads(path.read_text())["jobs"][0]["id"] == "2"


def test_unknown_fields_and_states_are_tolerated(tmp_path: Path) -> None:
    path = tmp_path / "jobs.json"
    record = job("3").to_dict() | {"state": "SOMETHING_NEW", "field_from_the_future": 1}
    path.write_text(json.dumps({"version": 1, "jobs": [record, {"id": "broken"}]}))
    table = JobTable(path)
    assert [j.id for j in table.all()] == ["3"]
    assert table.get("3").state is JobState.UNKNOWN  # type: ignore[union-attr]


def test_latest_for_prefers_active_jobs(tmp_path: Path) -> None:
    table = JobTable(None)
    table.add(job("1", submitted_at=1.0, state=JobState.RUNNING))
    table.add(job("2", submitted_at=2.0, state=JobState.FAILED))
    assert table.latest_for("chroma").id == "2"  # type: ignore[union-attr]
    assert table.latest_for("chroma", active_only=True).id == "1"  # type: ignore[union-attr]
    assert table.latest_for("vllm") is None


def test_two_sessions_share_the_table(tmp_path: Path) -> None:
    path = tmp_path / "jobs.json"
    first, second = JobTable(path), JobTable(path)
    first.add(job("10", submitted_at=1.0))
    second.add(job("11", submitted_at=2.0))  # must not drop the first session's job
    assert {j.id for j in JobTable(path).all()} == {"10", "11"}
    assert first.sync() and first.get("11") is not None
    assert not first.sync()  # nothing changed since
    second.sync()
    second.update("10", state=JobState.CANCELLED)
    first.sync()
    assert first.get("10").state is JobState.CANCELLED  # type: ignore[union-attr]
    first.update("11", state=JobState.RUNNING)  # the newest record of a job wins
    assert JobTable(path).get("11").state is JobState.RUNNING  # type: ignore[union-attr]


def test_removed_job_is_not_resurrected_by_merge(tmp_path: Path) -> None:
    path = tmp_path / "jobs.json"
    table = JobTable(path)
    table.add(job("5"))
    table.remove("5")
    assert JobTable(path).get("5") is None
