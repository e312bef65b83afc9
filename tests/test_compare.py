"""The comparison logic (benchctl/bench/compare.py) on RunResults: changes in the right direction for "lower is
better" and "higher is better" metrics, points matched by load, thresholds, kinds, headlines."""

from __future__ import annotations

from typing import Any

import pytest

from benchctl.bench.compare import (
    CompareError,
    Comparison,
    compare,
    headline,
    parse_thresholds,
    thresholds_for,
)
from benchctl.bench.results import PointResult, RunResult


def llm_point(c: int, *, ttft: float = 1.0, tput: float = 1.0, completed: int = 100, failed: int = 0,
              rate: float | None = None) -> dict[str, Any]:
    """An LLM point with vLLM's keys; ``ttft``/``tput`` scale the latencies/throughputs."""
    return {"concurrency": c, "rate": rate, "completed": completed, "failed": failed,
            "request_throughput": 2.5 * c * tput, "output_throughput": 320.0 * c * tput,
            "p50_ttft_ms": 40.0 * ttft, "p99_ttft_ms": 95.0 * ttft, "p50_tpot_ms": 11.0, "p99_tpot_ms": 16.0,
            "p50_itl_ms": 10.5, "p99_itl_ms": 22.0, "p99_e2el_ms": 1480.0}


def llm_run(run_id: str, points: list[dict[str, Any]], **config: Any) -> RunResult:
    return RunResult(kind="llm", run_id=run_id, service={"name": "vllm"}, config={"model": "m", **config},
                     points=[PointResult(p) for p in points])


def vector_run(run_id: str, recall: float = 0.98, requests: int = 1000, errors: int = 0) -> RunResult:
    point = {"concurrency": 4, "qps": 1500.0, "recall@10": recall, "requests": requests, "errors": errors,
             "latency_ms": {"p50": 2.0, "p99": 6.0}}
    return RunResult(kind="vector", run_id=run_id, points=[PointResult(point)])


def regressed(result: Comparison) -> set[tuple[str, str]]:
    return {(r.point, r.metric) for r in result.regressions}


def cell(result: Comparison, point: str, metric: str, run: int = 1) -> Any:
    [row] = [r for r in result.rows if r.point == point and r.metric.name == metric]
    return row.cells[run]


def test_doubled_ttft_and_halved_throughput_regress_exactly_those_metrics() -> None:
    base = llm_run("a", [llm_point(1), llm_point(8)])
    worse = llm_run("b", [llm_point(1, ttft=2.0, tput=0.5), llm_point(8, ttft=2.0, tput=0.5)])
    result = compare([base, worse])
    assert regressed(result) == {(p, m) for p in ("c=1", "c=8")
                                 for m in ("request_throughput", "output_throughput", "ttft_p99")}
    assert cell(result, "c=8", "request_throughput").change == pytest.approx(-50.0)
    assert cell(result, "c=8", "ttft_p99").change == pytest.approx(100.0)
    ttft_p50 = cell(result, "c=1", "ttft_p50")  # worse, but no threshold by default: shown, not gated
    assert ttft_p50.change == pytest.approx(100.0) and not ttft_p50.regressed
    assert all(c.change == 0.0 for row in result.rows for c in row.cells[:1])  # the baseline against itself


def test_improvements_are_never_regressions() -> None:
    base = llm_run("a", [llm_point(8)])
    better = llm_run("b", [llm_point(8, ttft=0.5, tput=2.0)])
    result = compare([base, better])
    assert result.regressions == []
    assert cell(result, "c=8", "ttft_p99").change == pytest.approx(-50.0)
    assert cell(result, "c=8", "output_throughput").change == pytest.approx(100.0)


def test_thresholds_change_the_verdict_and_later_entries_win() -> None:
    base = llm_run("a", [llm_point(8)])
    worse = llm_run("b", [llm_point(8, ttft=1.05, tput=0.92)])  # +5 % latency, -8 % throughput
    assert compare([base, worse]).regressions == []
    strict = compare([base, worse], parse_thresholds("throughput=5,ttft_p99=4%"))
    assert regressed(strict) == {("c=8", "request_throughput"), ("c=8", "output_throughput"), ("c=8", "ttft_p99")}
    assert regressed(compare([base, worse], parse_thresholds("p99=1,p99=off,ttft_p50=-4"))) == {("c=8", "ttft_p50")}
    limits = thresholds_for("llm", parse_thresholds("latency=30"))
    assert limits["ttft_p50"] == 30 and limits["e2el_p99"] == 30 and limits["request_throughput"] == 10


def test_success_rate_is_in_points_and_recall_a_difference() -> None:
    base = llm_run("a", [llm_point(1)])
    one_point = llm_run("b", [llm_point(1, completed=99, failed=1)])
    two_points = llm_run("c", [llm_point(1, completed=98, failed=2)])
    result = compare([base, one_point, two_points])
    assert cell(result, "c=1", "success_rate", 1).change == pytest.approx(-1.0)
    assert regressed(result) == {("c=1", "success_rate")} and result.regressions[0].run == 2  # -1 pt is allowed
    vectors = compare([vector_run("v1"), vector_run("v2", recall=0.97), vector_run("v3", recall=0.9699)])
    assert cell(vectors, "c=4", "recall", 1).change == pytest.approx(-0.01)
    assert [(r.run, r.metric) for r in vectors.regressions] == [(2, "recall")]  # exactly -0.01 is not beyond


def test_points_are_matched_by_concurrency_or_rate() -> None:
    base = llm_run("a", [llm_point(1), llm_point(8)])
    other = llm_run("b", [llm_point(8), llm_point(64)])
    result = compare([base, other])
    assert list(dict.fromkeys(r.point for r in result.rows)) == ["c=1", "c=8", "c=64"]
    assert cell(result, "c=1", "ttft_p99").value is None and cell(result, "c=64", "ttft_p99", 0).value is None
    assert cell(result, "c=8", "ttft_p99").change == 0.0
    assert "c=1 is not in b" in result.notes and "c=64 is not in a" in result.notes
    rates = compare([llm_run("r1", [llm_point(1, rate=2.0)]), llm_run("r2", [llm_point(1, rate=4.0)])])
    assert [r.point for r in rates.rows][:1] == ["rate=2"] and "rate=4" in {r.point for r in rates.rows}


def test_zero_baseline_gives_no_percentage() -> None:
    zero = llm_point(1)
    zero["request_throughput"] = 0.0
    result = compare([llm_run("a", [zero]), llm_run("b", [llm_point(1)])])
    assert cell(result, "c=1", "request_throughput").change is None


def test_different_kinds_and_unknown_kinds_are_one_error() -> None:
    with pytest.raises(CompareError, match="different kinds: a is llm, v is vector"):
        compare([llm_run("a", [llm_point(1)]), vector_run("v")])
    with pytest.raises(CompareError, match="cannot compare"):
        compare([RunResult(kind="fio", run_id="x"), RunResult(kind="fio", run_id="y")])
    with pytest.raises(CompareError, match="two runs"):
        compare([vector_run("v")])


@pytest.mark.parametrize(("text", "message"), [("ttft_p99", "metric=PCT"), ("bogus=1", "unknown metric 'bogus'"),
                                               ("qps=fast", "a number or 'off'"), ("qps=inf", "finite")])
def test_bad_thresholds_are_refused(text: str, message: str) -> None:
    with pytest.raises(CompareError, match=message):
        parse_thresholds(text)


def test_config_differences_and_cut_points_are_noted() -> None:
    cut = llm_point(8)
    cut["interrupted"] = True
    other = llm_run("b", [cut], input_tokens=512)
    other.status = "interrupted"
    notes = compare([llm_run("a", [llm_point(8)], input_tokens=128), other]).notes
    assert "b was configured differently: input_tokens" in notes and "b is interrupted (c=8 cut short)" in notes


def test_headlines_per_kind() -> None:
    run = llm_run("a", [llm_point(1), llm_point(8, ttft=1.5), llm_point(64, tput=0.1)])
    assert headline(run) == {"request_throughput": 20.0, "point": "c=8", "ttft_p50": 60.0, "ttft_p99": 142.5}
    assert headline(vector_run("v", recall=0.97)) == {"qps": 1500.0, "point": "c=4", "recall": 0.97}
    io500 = RunResult(kind="io500", metrics={"score": {"total": 5.25, "bandwidth": 1.5, "iops": 18.375}})
    assert headline(io500) == {"score": 5.25, "bandwidth": 1.5, "iops": 18.375}
    assert headline(RunResult(kind="llm")) == {} and headline(RunResult(kind="fio")) == {}


def test_io500_runs_compare_their_scores() -> None:
    def io(run_id: str, total: float) -> RunResult:
        return RunResult(kind="io500", run_id=run_id, metrics={"score": {"total": total, "bandwidth": 2.0,
                                                                         "iops": 30.0}})

    result = compare([io("a", 10.0), io("b", 8.0)])
    assert regressed(result) == {("run", "score")} and cell(result, "run", "score").change == pytest.approx(-20.0)
    assert result.to_dict()["regressions"] == [{"run_id": "b", "point": "run", "metric": "score",
                                                "change": pytest.approx(-20.0), "threshold": 10.0}]
