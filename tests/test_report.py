"""``report`` and its analysis on real run folders: an llm-sim sweep and a real Chroma sweep run by the local
executor (``benchctl -e "start ...; bench ...; stop ..."`` in a subprocess, once per module), IO500 runs from the
fixture result directories; the knee finder on synthetic curves with a known knee; SLO parsing and checking; the
PNGs (valid, of sensible size), the HTML and Markdown files, 80 columns, and the report without matplotlib."""

from __future__ import annotations

import os
import re
import shutil
import struct
import subprocess
import sys
from pathlib import Path

import pytest

from benchctl.app import App
from benchctl.bench.io500.parse import load_result_dir
from benchctl.bench.results import PointResult, RunResult, RunWriter, read_run
from benchctl.report import analysis, content, plots, series
from benchctl.report.analysis import (
    Limit,
    SloError,
    curve_of,
    find_knee,
    knee_line,
    kneedle,
    parse_slo,
    saturation,
    sweep_summary,
)
from benchctl.report.terminal import terminal_view
from tests.conftest import string_ui
from tests.test_completion import completions

DATA = Path(__file__).parent / "data" / "io500"
HAS_CHROMA = shutil.which("chroma", path=os.path.dirname(sys.executable)) is not None


# ---- real runs, made once per module ---------------------------------------------------------------------
def benchctl_e(root: Path, line: str, cleanup: str) -> Path:
    """Run ``benchctl --executor local -e LINE`` with its own home; the folder of the run it wrote. ``cleanup``
    runs afterwards whatever happened: -e stops at the first failure, which would leave the service running."""
    home = root / "home"
    home.mkdir(parents=True, exist_ok=True)
    (root / "config.toml").touch()
    env = {**os.environ, "HOME": str(home), "BENCHCTL_HOME": str(root / "bc"),
           "BENCHCTL_CONFIG": str(root / "config.toml"),
           **{f"XDG_{k}_HOME": str(home / f".xdg-{k.lower()}") for k in ("CONFIG", "STATE", "DATA", "CACHE")}}

    def benchctl(words: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "benchctl", "--executor", "local", "-e", words], env=env,
                              capture_output=True, text=True, timeout=300)

    try:
        proc = benchctl(line)
    finally:
        benchctl(cleanup)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return Path(proc.stdout.split("results: ", 1)[1].split()[0]).parent


@pytest.fixture(scope="module")
def llm_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """llm-sim serving 4 sequences at once, swept past that: latency bends at c=4, throughput plateaus."""
    return benchctl_e(tmp_path_factory.mktemp("llm"),
                      "start llm-sim --ttft-ms 10 --itl-ms 2 --max-concurrency 4; check llm-sim --wait --timeout 60; "
                      "bench llm-sim --concurrency 1,2,4,8,16 --duration 1 --output-tokens 16 --input-tokens 16 "
                      "--server-metrics-interval 0.1 --slo ttft:50,tpot:20", "stop llm-sim")


@pytest.fixture(scope="module")
def vector_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    if not HAS_CHROMA:
        pytest.skip("chromadb is not installed next to this Python (pip install '.[test]')")
    return benchctl_e(tmp_path_factory.mktemp("vector"),
                      "start chroma; check chroma --wait --timeout 120; bench chroma --n 2000 --dim 16 --queries 30 "
                      "--concurrency 1,2,4 --duration 1", "stop chroma")


def io500_run(home: Path, fixture: str) -> Path:
    """An IO500 run folder as `bench io500` writes it, from one of the fixture result directories."""
    result = load_result_dir(DATA / fixture)
    metrics = result.to_dict()
    writer = RunWriter(home, "io500", "io500")
    run = writer.envelope(service={"name": "io500", "job_id": "42"}, config={"mode": "extended"}, metrics=metrics,
                          points=[], client_health={}, errors={} if metrics["valid"] else {"invalid": 1})
    return writer.finish(run).parent


def png_size(path: Path) -> tuple[int, int]:
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n", f"{path} is not a PNG"
    width, height = struct.unpack(">II", data[16:24])
    return width, height


def assert_sensible_png(path: Path) -> None:
    width, height = png_size(path)
    assert 600 <= width <= 2000 and 300 <= height <= 2000, (path.name, width, height)
    assert 10_000 < path.stat().st_size < 1_500_000, (path.name, path.stat().st_size)


# ---- the knee, saturation, SLO -----------------------------------------------------------------------------
def hockey(loads: list[float], knee: float, base: float = 100.0, slope: float = 40.0) -> list[float]:
    """Latency flat at ``base`` until ``knee``, then rising linearly: the knee is exactly there."""
    return [base + max(0.0, x - knee) * slope for x in loads]


@pytest.mark.parametrize(("loads", "knee"), [
    ([1, 2, 4, 8, 16, 32, 64], 16),  # a doubling sweep, the usual --concurrency 1,2,4,...
    ([1, 2, 3, 4, 5, 6, 7, 8, 9, 10], 6),
    ([0.5, 1, 1.5, 2, 2.5, 3], 2),  # request rates
])
def test_kneedle_finds_the_known_knee(loads: list[float], knee: float) -> None:
    found = kneedle(loads, hockey(loads, knee))
    assert found is not None and loads[found[0]] == knee


def test_kneedle_on_a_queueing_curve_and_through_noise() -> None:
    # M/M/1 response time 1/(1-rho): the bend where rho nears 1; a dip of noise must not move or fake the knee.
    rho = [0.1, 0.3, 0.5, 0.7, 0.8, 0.9, 0.95, 0.98]
    found = kneedle(rho, [1 / (1 - r) for r in rho])
    assert found is not None and rho[found[0]] in (0.9, 0.95)
    noisy = hockey([1, 2, 4, 8, 16, 32], 8)
    noisy[-1] = noisy[-2] * 0.8  # the last point faster than the one before: still not a knee at the end
    found = kneedle([1, 2, 4, 8, 16, 32], noisy)
    assert found is not None and found[0] == 3


@pytest.mark.parametrize("ys", [[100, 100, 100, 100], [1, 2, 3, 4], [10, 40, 55, 60], [5, 5]])
def test_no_knee_when_the_curve_does_not_bend(ys: list[float]) -> None:
    assert kneedle(list(range(1, len(ys) + 1)), ys) is None  # flat, straight, concave, too short


@pytest.mark.parametrize(("p99", "why"), [
    ([100, 104, 106], "no bend: latency flat, 6 % rise (< 10 %)"),
    ([3.5, 9.6, 19.4], "no bend: latency climbs 3.50 → 19.4 ms steadily from the first point"),
    ([100, 200], "too few points"),
])
def test_the_no_knee_line_says_which_reason(p99: list[float], why: str) -> None:
    curve = curve_of("llm", points([10.0] * len(p99), p99))
    assert knee_line(curve, find_knee(curve)).startswith(f"knee: none ({why}")


def points(throughputs: list[float], p99_e2el: list[float]) -> list[dict[str, object]]:
    return [{"concurrency": 2 ** i, "rate": None, "completed": 10, "request_throughput": t, "p99_e2el_ms": e,
             "p99_ttft_ms": e / 4, "median_ttft_ms": e / 5, "p99_tpot_ms": 5.0}
            for i, (t, e) in enumerate(zip(throughputs, p99_e2el, strict=True))]


def test_saturation_plateau_rising_and_overload() -> None:
    sat = saturation(curve_of("llm", points([10, 20, 39, 40, 40.5], [100] * 5)))
    assert sat is not None and sat.saturated and sat.point.label == "c=4" and sat.best == 40.5
    rising = saturation(curve_of("llm", points([10, 20, 40, 80], [100] * 4)))
    assert rising is not None and not rising.saturated and rising.last_gain == pytest.approx(1.0)
    run = RunResult(kind="llm", points=[PointResult(p) for p in points([10, 20, 40, 30], [100, 100, 110, 400])])
    lines = sweep_summary(run)
    assert lines[1].startswith("saturation: 40.0 req/s from c=4") and "falls to 30.0 at c=8 (overload)" in lines[1]


def test_slo_parsing() -> None:
    assert parse_slo("ttft:500,tpot:50") == (Limit("ttft", "p99", 500.0), Limit("tpot", "p99", 50.0))
    assert parse_slo("p50_ttft:300") == (Limit("ttft", "p50", 300.0),)
    assert parse_slo("recall:0.9,latency:20") == (Limit("recall", "", 0.9, floor=True), Limit("latency", "p99", 20))
    for bad, message in (("ttft", "NAME:VALUE"), ("ttft:x", "NAME:VALUE"), ("goodput:5", "unknown SLO"),
                         ("recall:90", "fraction")):
        with pytest.raises(SloError, match=message):
            parse_slo(bad)
    assert analysis.limits_of({"ttft": 500.0}) == (Limit("ttft", "p99", 500.0),)  # the bench's own --slo


def test_slo_highest_load_meeting_it() -> None:
    curve = curve_of("llm", points([10, 20, 40, 41, 41], [100, 100, 120, 400, 800]))
    res = analysis.check_slo(curve, parse_slo("ttft:50"))  # p99 TTFT = e2el / 4: 25, 25, 30, 100, 200
    assert res.best is not None and res.best.label == "c=4"
    assert res.first_miss is not None and res.first_miss[0].label == "c=8" and res.first_miss[1] == ["p99 TTFT 100 ms"]
    line = analysis.slo_line(curve, res)
    assert line == "SLO p99 TTFT <= 50 ms: met up to c=4, 40.0 req/s; missed at c=8 (p99 TTFT 100 ms)"
    assert "no point meets it (p99 TTFT 25 ms at c=1)" in analysis.slo_line(
        curve, analysis.check_slo(curve, parse_slo("ttft:10")))
    vec = curve_of("vector", [{"concurrency": c, "qps": 100.0 * c, "requests": 5, "recall@10": r,
                               "latency_ms": {"p99": 2.0 * c}} for c, r in ((1, 0.99), (2, 0.95), (4, 0.85))])
    res = analysis.check_slo(vec, parse_slo("recall:0.9"))
    assert res.best is not None and res.best.label == "c=2" and res.first_miss is not None
    assert res.first_miss[1] == ["recall 0.85"]


# ---- on real runs ----------------------------------------------------------------------------------------
def test_sweep_summary_of_a_real_llm_sim_sweep(llm_run: Path) -> None:
    run = read_run(llm_run)
    lines = sweep_summary(run)  # the run's own --slo ttft:50,tpot:20
    assert len(lines) == 3
    knee, sat, slo = lines
    # 4 sequences at once: from c=8 requests queue, latency rises; throughput stops growing at c=4.
    assert knee.startswith("knee: c=4 ") and "method: maximum curvature of p99 E2EL vs concurrency (Kneedle" in knee
    assert sat.startswith("saturation: ") and "from c=4 (more load adds < 5 % throughput)" in sat
    assert slo.startswith("SLO p99 TTFT <= 50 ms, p99 TPOT <= 20 ms: met up to c=4")
    assert sweep_summary(run, "ttft:1")[-1].startswith("SLO p99 TTFT <= 1 ms: no point meets it")


def test_llm_plots_from_a_real_run(llm_run: Path, tmp_path: Path) -> None:
    run = read_run(llm_run)
    written = plots.make_plots(run, tmp_path / "out", parse_slo("e2el:100"))
    assert [p.name for p in written] == ["sweep", "latency_percentiles", "latency_cdf", "timeline"]
    for plot in written:
        assert_sensible_png(plot.path)
    # Three panels: the server's timeline is there (the run sampled /metrics).
    assert png_size(tmp_path / "out" / "timeline.png")[1] > 700


def test_vector_plots_from_a_real_chroma_run(vector_run: Path, tmp_path: Path) -> None:
    run = read_run(vector_run)
    written = plots.make_plots(run, tmp_path)
    assert {p.name for p in written} == {"sweep", "latency_percentiles", "latency_cdf", "timeline", "recall_qps"}
    for plot in written:
        assert_sensible_png(plot.path)
    reqs = {r.label: r for r in series.point_requests(run)}
    assert set(reqs) == {"concurrency 1", "concurrency 2", "concurrency 4"}
    assert all(len(r.latency_ms) == p["requests"] for r, p in zip(reqs.values(), (q.values for q in run.points),
                                                                      strict=True))


@pytest.mark.parametrize("fixture", ["invalid-run", "valid-run"])
def test_io500_phase_bars_from_the_fixtures(fixture: str, tmp_path: Path) -> None:
    run = read_run(io500_run(tmp_path / "bc", fixture))
    written = plots.make_plots(run, tmp_path / "out")
    assert [p.name for p in written] == ["io500_phases"]
    assert_sensible_png(written[0].path)
    phases = content.io500_phases(run)
    flagged = [phases.rows[i][0] for i in phases.flagged]
    assert flagged == (["mdtest-hard-write"] if fixture == "invalid-run" else [])
    assert "timestamp" not in phases.column("PHASE")
    assert sweep_summary(run) == []  # no sweep in an IO500 run


# ---- the command ---------------------------------------------------------------------------------------
def test_report_command_writes_pngs_html_and_markdown(app: App, llm_run: Path) -> None:
    app.ui, app.out = string_ui(80)  # type: ignore[attr-defined]
    assert app.run_line(f"report {llm_run} --html --md --slo p50_ttft:1000"), app.out.getvalue()  # type: ignore[attr-defined]
    out = app.out.getvalue()  # type: ignore[attr-defined]
    folder = llm_run / "report"
    assert f"HTML report: {folder / 'report.html'}" in out and f"Markdown report: {folder / 'report.md'}" in out
    assert "knee: c=4" in out and "SLO p50 TTFT <= 1000 ms: met up to c=16" in out
    assert "◀ knee" in out and "out tok/s" in out and "running" in out  # bars and sparklines
    table_lines = [line for line in out.splitlines() if "│" in line or "┃" in line]
    assert table_lines and max(len(line) for line in table_lines) <= 80
    page = (folder / "report.html").read_text()
    assert page.count('src="data:image/png;base64,') == 4
    assert not re.search(r"""(src|href)\s*=\s*["']?(https?:)?//""", page) and "url(" not in page
    assert "default-src 'none'" in page and 'id="analysis"' in page
    md = (folder / "report.md").read_text()
    for name in ("sweep", "latency_percentiles", "latency_cdf", "timeline"):
        assert f"]({name}.png)" in md and (folder / f"{name}.png").is_file()
    assert "| c=16 |" in md and "- knee: c=4" in md


def test_report_last_and_completion(app: App, tmp_path: Path) -> None:
    run_dir = io500_run(app.home, "invalid-run")
    assert app.run_line("report last")
    out = app.out.getvalue()  # type: ignore[attr-defined]
    assert run_dir.name in out and "INVALID" in out and "io500_phases.png" in out
    assert "last" in completions(app, "report ") and run_dir.name in completions(app, "report 2")


def test_report_errors(app: App) -> None:
    assert not app.run_line("report")
    assert "report: last: only 0 run(s)" in app.out.getvalue()  # type: ignore[attr-defined]
    assert not app.run_line("report nosuch")
    assert "report: no run 'nosuch'" in app.out.getvalue()  # type: ignore[attr-defined]
    assert not app.run_line("report last --slo ttft:fast")
    assert "--slo" in app.out.getvalue() and "NAME:VALUE" in app.out.getvalue()  # type: ignore[attr-defined]


def test_report_without_matplotlib(app: App, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setitem(sys.modules, "matplotlib", None)  # import matplotlib now raises ImportError
    run_dir = io500_run(app.home, "invalid-run")
    assert app.run_line("report last --html")
    out = app.out.getvalue()  # type: ignore[attr-defined]
    assert out.count("pip install 'benchctl[report]'") == 1
    assert "HTML report:" in out and "(tables only: the plots need matplotlib)" in out
    page = (run_dir / "report" / "report.html").read_text()
    assert "<img" not in page and "mdtest-hard-write" in page and "benchctl[report]" in page
    assert not list((run_dir / "report").glob("*.png"))


def test_terminal_view_fits_80_columns(llm_run: Path, tmp_path: Path) -> None:
    for run in (read_run(llm_run), read_run(io500_run(tmp_path, "invalid-run"))):
        ui, buf = string_ui(80)
        for part in terminal_view(run, sweep_summary(run)):
            ui.print(part, wrap=True)
        assert max(len(line) for line in buf.getvalue().splitlines()) <= 80


def test_runs_that_measured_little_still_report(app: App) -> None:
    """One point, every request failed, an SLO of the other kind, old-style keys: lines that say so, no crash."""
    failed = [{"concurrency": c, "rate": None, "completed": 0, "failed": 5, "request_throughput": 0.0} for c in (1, 2)]
    run = RunResult(kind="llm", points=[PointResult(p) for p in failed])
    assert sweep_summary(run)[1] == "saturation: none (no request succeeded)"
    vec = RunResult(kind="vector", points=[PointResult({"concurrency": 1, "qps": 10.0, "requests": 3,
                                                        "recall@10": 0.9, "latency_ms": {"p99": 2.0}})])
    assert sweep_summary(vec, "ttft:100") == ["SLO: ttft does not apply to a vector run (it has recall, latency)"]
    assert sweep_summary(vec, "recall:0.8") == ["SLO recall >= 0.8: met up to c=1, 10.0 QPS"]
    # p50 as "p50_*" only (no vLLM "median_*"): read the same.
    old = RunResult(kind="llm", points=[PointResult({"concurrency": 1, "rate": None, "completed": 3,
                                                     "request_throughput": 1.0, "p50_ttft_ms": 40.0})])
    assert sweep_summary(old, "p50_ttft:50") == ["SLO p50 TTFT <= 50 ms: met up to c=1, 1.00 req/s"]
    assert content.llm_points(old).rows[0][5] == "40.0"


def test_a_flat_latency_curve_has_no_knee() -> None:
    """683 -> 687 ms across a sweep is noise, not a bend (a real llm-sim sweep looked like this)."""
    from benchctl.report.analysis import kneedle

    assert kneedle([1, 4, 16], [683.4, 683.6, 686.7]) is None
    assert kneedle([1, 4, 16], [100.0, 101.0, 400.0]) is not None
