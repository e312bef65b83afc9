"""Typed results: ``RunResult``/``PointResult`` written by ``RunWriter`` and read back by ``read_run`` and
``iter_runs`` -- including a run.json written by benchctl before the records were typed."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from benchctl.bench.results import SCHEMA_VERSION, PointResult, ResultError, RunResult, RunWriter, iter_runs, read_run

# A run.json as benchctl 0.1.0 wrote it before RunResult existed (vLLM keys first, then the envelope).
OLD_RUN = {
    "completed": 6, "failed": 0, "median_ttft_ms": 12.5, "backend": "openai", "model_id": "sim",
    "percentile_method": "linear (numpy default)", "server": {"engine": "llm-sim", "version": "0.0.0-llmsim"},
    "schema_version": 1, "run_id": "20261201-120000-llm-llm-sim-ab12", "kind": "llm",
    "started_at": "2026-12-01T12:00:00.000+00:00", "ended_at": "2026-12-01T12:00:20.000+00:00",
    "benchctl_version": "0.1.0", "git_sha": "0" * 40, "host": "login01", "command_line": "benchctl -e bench llm-sim",
    "service": {"name": "llm-sim", "job_id": "42"}, "config": {"concurrency": [1, 8], "duration": 10.0},
    "metrics": {"server_metrics": {}, "errors": 0, "server_means_ms": {}},
    "points": [{"concurrency": 1, "rate": None, "completed": 3, "median_ttft_ms": 11.0},
               {"concurrency": 8, "rate": None, "completed": 6, "median_ttft_ms": 12.5}],
    "client_health": {"points": []}, "errors": {},
}


def test_a_run_written_before_the_typed_records_loads(tmp_path: Path) -> None:
    run_dir = tmp_path / "results" / OLD_RUN["run_id"]  # type: ignore[operator]
    run_dir.mkdir(parents=True)
    (run_dir / "run.json").write_text(json.dumps(OLD_RUN))
    run = read_run(run_dir)
    assert run.kind == "llm" and run.service["job_id"] == "42" and run.path == run_dir / "run.json"
    assert [p["concurrency"] for p in run.points] == [1, 8] and run.points[1].get("median_ttft_ms") == 12.5
    assert run.extra["completed"] == 6 and run.extra["server"]["engine"] == "llm-sim"
    assert run.to_dict() == OLD_RUN  # nothing lost, nothing renamed
    assert list(run.to_dict()) == list(OLD_RUN)  # the kind's keys first, as before


def test_writer_round_trip_and_index(tmp_path: Path) -> None:
    writer = RunWriter(tmp_path, "vector", "chroma")
    writer.request({"phase": "serial", "query": 0})
    result = RunResult(kind="vector", service={"name": "chroma"}, config={"n": 10}, metrics={"x": 1},
                       points=[PointResult({"concurrency": 1, "qps": 10.0})], errors={"HTTP 500": 1})
    path = writer.finish(result)
    assert result.run_id == writer.run_id and result.started_at and result.ended_at and result.host
    back = read_run(path)
    assert back.to_dict() == result.to_dict() and back.points[0]["qps"] == 10.0
    [entry] = list(iter_runs(tmp_path / "results"))
    assert (entry.run_id, entry.kind, entry.service) == (writer.run_id, "vector", "chroma")
    assert entry.load().metrics == {"x": 1}


def test_index_with_damaged_lines_and_no_index(tmp_path: Path) -> None:
    assert list(iter_runs(tmp_path)) == []
    (tmp_path / "index.jsonl").write_text('{"run_id": "a", "kind": "llm", "dir": "/x"}\nnot json\n[1]\n{"kind": "x"}\n'
                                          '{"run_id": "b", "kind": "vector", "service": "qdrant", "dir": "/y"}\n')
    assert [e.run_id for e in iter_runs(tmp_path)] == ["a", "b"]


def test_unreadable_or_newer_runs_are_one_clear_error(tmp_path: Path) -> None:
    with pytest.raises(ResultError, match="cannot read"):
        read_run(tmp_path / "missing.json")
    (tmp_path / "bad.json").write_text("{")
    with pytest.raises(ResultError, match="not valid JSON"):
        read_run(tmp_path / "bad.json")
    (tmp_path / "new.json").write_text(json.dumps({"schema_version": SCHEMA_VERSION + 1, "kind": "llm"}))
    with pytest.raises(ResultError, match="newer benchctl"):
        read_run(tmp_path / "new.json")
