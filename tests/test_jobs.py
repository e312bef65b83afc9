"""The persisted job table: atomic saves, broken files, and two benchctl sessions sharing one table."""

from __future__ import annotations

import json
import stat
from pathlib import Path

import pytest

from benchctl.jobs import Job, JobTable, TableReadOnly
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


def backups(path: Path) -> list[Path]:
    return sorted(path.parent.glob(path.name + ".corrupt-*"))


def test_corrupt_file_is_kept_aside_never_overwritten_and_said(tmp_path: Path) -> None:
    path = tmp_path / "jobs.json"
    path.write_text("{not json")
    table = JobTable(path)
    assert table.all() == []
    [first] = backups(path)
    assert first.read_text() == "{not json"
    [notice] = table.take_notices()
    assert "unreadable" in notice and str(first) in notice
    table.add(job("2"))
    assert json.loads(path.read_text())["jobs"][0]["id"] == "2"
    path.write_text("")  # a second corruption (truncated): a second backup, the first kept
    JobTable(path)
    assert len(backups(path)) == 2 and first.read_text() == "{not json"


@pytest.mark.parametrize("text", ["[]", "null", '{"jobs": "x"}', "", '{"jobs": [1', "\xff\xfe"])
def test_damaged_tables_of_every_shape_are_one_notice(tmp_path: Path, text: str) -> None:
    path = tmp_path / "state" / "jobs.json"
    path.parent.mkdir()
    path.write_bytes(text.encode("latin-1"))
    table = JobTable(path)
    assert table.all() == [] and len(table.take_notices()) == 1 and backups(path)


def test_bad_records_are_set_aside_the_good_ones_kept(tmp_path: Path) -> None:
    path = tmp_path / "jobs.json"
    good = job("3").to_dict()
    bad_time = job("4").to_dict() | {"submitted_at": "yesterday"}
    path.write_text(json.dumps({"version": 1, "jobs": [good, 1, {"id": "broken"}, bad_time]}))
    table = JobTable(path)
    assert [j.id for j in table.all()] == ["3"]
    [notice] = table.take_notices()
    assert "3 unusable record(s)" in notice
    rejected = [json.loads(line) for line in (tmp_path / "jobs.rejected.jsonl").read_text().splitlines()]
    assert [r["record"] for r in rejected] == [1, {"id": "broken"}, bad_time]


def test_unknown_fields_and_states_survive_a_rewrite(tmp_path: Path) -> None:
    path = tmp_path / "jobs.json"
    record = job("3").to_dict() | {"state": "SOMETHING_NEW", "field_from_the_future": 1}
    path.write_text(json.dumps({"version": 1, "jobs": [record], "top_from_the_future": True}))
    table = JobTable(path)
    assert table.get("3").state is JobState.UNKNOWN  # type: ignore[union-attr]
    table.add(job("5"))
    data = json.loads(path.read_text())
    rewritten = next(r for r in data["jobs"] if r["id"] == "3")
    assert rewritten["state"] == "SOMETHING_NEW" and rewritten["field_from_the_future"] == 1
    assert data["top_from_the_future"] is True


def test_a_newer_table_is_read_but_never_rewritten(tmp_path: Path) -> None:
    path = tmp_path / "jobs.json"
    text = json.dumps({"version": 99, "jobs": [job("7").to_dict() | {"service": "newsvc"}]})
    path.write_text(text)
    table = JobTable(path)
    assert table.get("7") is not None and table.read_only
    assert "newer benchctl" in table.take_notices()[0]
    table.update("7", state=JobState.RUNNING)  # in memory only
    with pytest.raises(TableReadOnly):
        table.add(job("8"))
    assert path.read_text() == text


def test_a_damaged_table_reattaches_the_jobs_of_the_run_folders(tmp_path: Path) -> None:
    runs = tmp_path / "jobs"
    for job_id in ("11", "12"):
        (runs / f"chroma-{job_id}").mkdir(parents=True)
        (runs / f"chroma-{job_id}" / "job.json").write_text(json.dumps(
            {"job_id": job_id, "service": "chroma", "executor": "slurm", "values": {"time": "01:00:00"}}))
    path = tmp_path / "state" / "jobs.json"
    path.parent.mkdir()
    path.write_text("{truncated")
    table = JobTable(path, runs=runs)
    assert sorted(j.id for j in table.all()) == ["11", "12"]
    assert table.get("11").out_path.endswith("chroma-11/slurm-11.out")  # type: ignore[union-attr]
    assert "2 job(s) re-attached" in table.take_notices()[0]
    assert json.loads(path.read_text())["jobs"]  # written back


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
