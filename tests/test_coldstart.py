"""Cold-start figures from a job's own markers: queued, image (pulled or cached), start to ready, total --
and `check` showing them for a real job (llm-sim under the local executor)."""

from __future__ import annotations

import pytest

from benchctl.app import App
from benchctl.coldstart import cold_start, seconds
from tests.test_commands import output


def test_figures_from_markers() -> None:
    markers = {"T_STARTED": "1041.5", "T_IMAGE": "1053.5", "PULLED": "SIF", "T_READY": "1111.5"}
    cs = cold_start(1000.0, markers)
    assert cs is not None
    assert (cs.queued, cs.image, cs.pulled, cs.to_ready, cs.total) == (41.5, 12.0, True, 58.0, 111.5)
    assert cs.line() == "queued 41.5 s · image 12.0 s (pulled) · start to ready 58.0 s · total 1m52s"


def test_partial_and_skewed() -> None:
    assert cold_start(1000.0, {}) is None  # not started yet
    cs = cold_start(1000.0, {"T_STARTED": "999.0"})  # the node's clock behind benchctl's: unknown, not negative
    assert cs is not None and cs.queued is None and cs.to_ready is None and cs.line() == ""
    cs = cold_start(1000.0, {"T_STARTED": "1002", "T_READY": "1010", "T_IMAGE": "bad"})
    assert cs is not None and cs.image is None and cs.to_ready == 8.0 and "image" not in cs.line()


@pytest.mark.parametrize(("value", "text"), [(8.24, "8.2 s"), (112, "1m52s"), (7380, "2h03m")])
def test_seconds(value: float, text: str) -> None:
    assert seconds(value) == text



def test_check_shows_the_cold_start_of_a_real_job(local_app: App) -> None:
    assert local_app.run_line("start llm-sim --ttft-ms 1 --itl-ms 1")
    assert local_app.run_line("check llm-sim --wait --timeout 30")
    assert local_app.run_line("check llm-sim")
    line = next(ln for ln in output(local_app).splitlines() if ln.strip().startswith("start:"))
    assert "queued " in line and "start to ready " in line and "total " in line and "image" not in line
