"""``bench --repeat N`` (means, Student's t 95 % intervals, CV; ``compare`` says "within noise" when intervals
overlap) and reference bands (``--reference FILE``: in/out marks, the most specific band wins, broken files
named by line) -- the pure parts on known numbers, then the real thing against a real llm-sim."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest

from benchctl.app import App
from benchctl.bench.compare import compare
from benchctl.bench.reference import check, load_bands, summary
from benchctl.bench.repeat import aggregate, interval, t_critical
from benchctl.yamlfile import FileError
from tests.test_compare import llm_point, llm_run


def test_t_table_and_interval_on_known_numbers() -> None:
    assert t_critical(1) == 12.706 and t_critical(4) == 2.776 and t_critical(30) == 2.042
    assert t_critical(1000) == 1.960
    mean, low, high, cv = interval([1.0, 2.0, 3.0])  # sd 1: half width t(2) / sqrt(3)
    assert mean == 2.0 and math.isclose(high - mean, 4.303 / math.sqrt(3)) and math.isclose(low, 4 - high)
    assert math.isclose(cv, 0.5)
    assert interval([5.0]) == (5.0, 5.0, 5.0, 0.0)
    with pytest.raises(ValueError):
        t_critical(0)


def test_aggregate_means_intervals_and_the_first_runs_shape() -> None:
    runs = [llm_run(f"r{i}", [llm_point(1, ttft=t), llm_point(8, ttft=t)]) for i, t in enumerate((1.0, 1.1, 0.9))]
    agg = aggregate(runs)
    assert agg.extra["repeats"] == ["r0", "r1", "r2"] and len(agg.points) == 2
    point = agg.points[0].values
    assert math.isclose(point["p50_ttft_ms"], 40.0) and point["repetitions"] == 3 and point["concurrency"] == 1
    low, high = point["ci95"]["ttft_p50"]
    assert low < 40.0 < high and math.isclose(high - 40.0, 4.303 * 4.0 / math.sqrt(3))
    assert math.isclose(point["cv"]["ttft_p50"], 0.1)
    assert point["ci95"]["request_throughput"] == [2.5, 2.5]  # no spread: a zero-width interval


def test_compare_says_within_noise_when_intervals_overlap() -> None:
    noisy_a = aggregate([llm_run(f"a{i}", [llm_point(4, ttft=t)]) for i, t in enumerate((1.0, 1.3, 0.8))])
    noisy_b = aggregate([llm_run(f"b{i}", [llm_point(4, ttft=t)]) for i, t in enumerate((1.2, 1.5, 1.0))])
    noisy_a.run_id, noisy_b.run_id = "A", "B"
    result = compare([noisy_a, noisy_b])
    row = next(r for r in result.rows if r.metric.name == "ttft_p99")
    assert row.cells[1].change is not None and row.cells[1].change > 10  # +20 %: beyond the 10 % threshold...
    assert row.cells[1].noise is True and not row.cells[1].regressed  # ...but within the runs' own noise
    assert not result.regressions
    tight_b = aggregate([llm_run(f"c{i}", [llm_point(4, ttft=t)]) for i, t in enumerate((2.0, 2.01, 1.99))])
    tight_a = aggregate([llm_run(f"d{i}", [llm_point(4, ttft=t)]) for i, t in enumerate((1.0, 1.01, 0.99))])
    tight_a.run_id, tight_b.run_id = "C", "D"
    verdict = compare([tight_a, tight_b])
    assert [r.metric for r in verdict.regressions] == ["ttft_p99"]  # p50 is shown, not gated by default
    assert next(r for r in verdict.rows if r.metric.name == "ttft_p99").cells[1].noise is False


BANDS = """\
- service: vllm
  metrics:
    ttft_p50: [30, 50]
    request_throughput: [2, null]
- service: vllm
  model: m
  point: c=8
  metrics:
    ttft_p50: [null, 30]
- service: chroma
  metrics:
    qps: [100, null]
"""


def test_bands_mark_in_and_out_and_the_most_specific_wins(tmp_path: Path) -> None:
    path = tmp_path / "bands.yaml"
    path.write_text(BANDS)
    bands = load_bands(str(path))
    marks = check(llm_run("r", [llm_point(1), llm_point(8)]), bands)
    by = {(m.point, m.metric): m for m in marks}
    assert by[("c=1", "ttft_p50")].ok is True and by[("c=8", "ttft_p50")].ok is False  # c=8: upper 30 wins
    assert by[("c=8", "ttft_p50")].band.where.endswith("ttft_p50") and ":9:" in by[("c=8", "ttft_p50")].band.where
    assert by[("c=8", "request_throughput")].ok is True
    head, outside = summary(marks)
    assert head == "reference: 3 in, 1 out" and outside == [f"c=8 ttft_p50 = 40 outside [-inf, 30] ({path}:9: "
                                                             "[1].metrics.ttft_p50)"]
    assert check(llm_run("r", [llm_point(1)], model="other"), bands)[0].band.point == ""  # model-less bands apply


@pytest.mark.parametrize(("text", "expected"), [
    ("- service: vllm\n  metrics:\n    ttft: [1, 2]\n", ":3: [0].metrics.ttft: unknown metric"),
    ("- service: vllm\n  metrics:\n    ttft_p50: [5, 2]\n", ":3: [0].metrics.ttft_p50: lower 5 is above upper 2"),
    ("- service: vllm\n  metrics:\n    ttft_p50: [a, 2]\n", "expected a number or null, got 'a'"),
    ("- service: vllm\n", ":1: [0].metrics: missing"),
    ("- metrics: {qps: [1, 2]}\n", "[0].service: missing"),
    ("- service: vllm\n  modle: x\n  metrics: {qps: [1, 2]}\n", "[0].modle: unknown key (did you mean 'model'?)"),
    ("{}\n", "expected a list"),
])
def test_broken_band_files_name_line_and_key(tmp_path: Path, text: str, expected: str) -> None:
    path = tmp_path / "bands.yaml"
    path.write_text(text)
    with pytest.raises(FileError) as info:
        load_bands(str(path))
    assert expected in str(info.value) and str(path) in str(info.value)


def test_bench_repeat_and_reference_against_a_real_llm_sim(local_app: App, tmp_path: Path) -> None:
    bands = tmp_path / "bands.yaml"
    bands.write_text("- service: llm-sim\n  metrics:\n    ttft_p50: [20, 200]\n    ttft_p99: [null, 5]\n")
    assert local_app.run_line("start llm-sim --ttft-ms 30 --itl-ms 1")
    assert not local_app.run_line(f"bench llm-sim --concurrency 2 --duration 1 --output-tokens 8 --repeat 2 "
                                  f"--reference {bands} --quiet")
    out = local_app.out.getvalue()  # type: ignore[attr-defined]
    assert "repetition 2/2" in out and "95 % confidence interval" in out and "TTFT p50 ms" in out
    assert "error: bench: 1 figure(s) outside the reference bands" in out and "reference: 1 in, 1 out" in out
    agg = json.loads((local_app.home / "results" / local_app.last_run_id / "run.json").read_text())
    assert len(agg["repeats"]) == 2 and agg["points"][0]["repetitions"] == 2
    assert set(agg["points"][0]["ci95"]) >= {"ttft_p50", "request_throughput"}
    assert [m["in_band"] for m in agg["reference"]["marks"]] == [True, False]
    assert agg["manifest"]["repeats"] == agg["repeats"]
    index = [json.loads(line) for line in (local_app.home / "results" / "index.jsonl").open()]
    assert [e["run_id"] for e in index] == [*agg["repeats"], agg["run_id"]]
    assert not local_app.run_line(f"bench llm-sim --reference {tmp_path / 'missing.yaml'}")  # before any request
    assert "cannot read" in local_app.out.getvalue().splitlines()[-1]  # type: ignore[attr-defined]


def test_compare_reference_marks_each_run_and_fails_when_one_is_out(make_app, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    from tests.test_results_cmd import write_run

    app = make_app()
    good = write_run(app.home, "llm", "vllm", [llm_point(1)], model="m")
    slow = write_run(app.home, "llm", "vllm", [llm_point(1, ttft=2.0)], model="m")
    bands = tmp_path / "bands.yaml"
    bands.write_text("- service: vllm\n  metrics:\n    ttft_p50: [null, 50]\n")
    assert app.run_line(f"compare {good} {good} --reference {bands}")
    assert not app.run_line(f"compare {good} {slow} --reference {bands} --threshold ttft_p99=off")
    out = app.out.getvalue()
    assert "A reference: 1 in, 0 out" in out and "B reference: 0 in, 1 out" in out
    assert "c=1 ttft_p50 = 80 outside [-inf, 50]" in out
    assert out.strip().splitlines()[-1] == "error: compare: 1 figure(s) outside the reference bands"
