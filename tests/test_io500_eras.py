"""IO500 output of every era (tests/data/io500, sources in its README): phases read from io500.sh (2017-2019),
ISC20 and today's C application; which phase counts for [SCORE ] and which for [SCOREX] by IO500's own rule on
both paths; the printed scores recomputed and a result that does not add up flagged."""

from __future__ import annotations

import io
import math
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from rich.console import Console

from benchctl.bench.io500 import parse as r
from benchctl.bench.io500.kind import result_table

DATA = Path(__file__).resolve().parent / "data" / "io500"
ROOT = Path(__file__).resolve().parent.parent


def test_io500sh_2019_phases_are_read() -> None:
    res = r.load_result_dir(DATA / "era-2019-io500sh")
    assert len(res.phases) == 12
    easy = res.phase("ior_easy_write")
    assert easy is not None and (easy.value, easy.unit, easy.time_s, easy.decimals) == (8.581, "GB/s", 58.27, 3)
    assert easy.group == "bandwidth" and easy.in_score and not easy.invalid
    assert easy.gib_per_s == pytest.approx(8.581e9 / 2**30)  # GB/s is 10^9 bytes, GiB/s 2^30
    find = res.phase("find")
    assert find is not None and (find.value, find.unit, find.group) == (305.930, "kIOPS", "metadata")
    assert [p.group for p in res.phases].count("bandwidth") == 4 and all(p.in_score for p in res.phases)
    assert res.score is not None and res.score.legacy and not res.score.invalid  # "[SCORE-valid]", as printed
    assert res.score.decimals == (5, 4, 5)
    # ... but the script said the run is not valid for a submission: that is kept as a reason.
    assert not res.valid
    assert "One or more test phases invalid." in " ".join(res.invalid_reasons)
    # The published score follows from the phases (rounded to the 3 decimals printed).
    (again,) = res.recomputed
    assert again.matches and again.bandwidth == pytest.approx(1.61907, rel=1e-3)


def test_isc20_invalid_tags_and_the_zero_phase() -> None:
    res = r.load_result_dir(DATA / "era-isc20-s3")
    assert len(res.phases) == 12 and all(p.invalid for p in res.phases)  # "[RESULT-invalid]"
    assert res.version == "9c0f0c6"
    find = res.phase("find")
    assert find is not None and find.value == 0.0 and find.in_score
    # That release multiplied the zero in (MD = 0), as its own "; [I] MD = (... * 0.00000000 * ...)" line says.
    (again,) = res.recomputed
    assert again.iops == 0.0 and again.total == 0.0 and again.matches
    assert again.bandwidth == pytest.approx(0.007108, abs=1e-6)


def test_today_skips_a_zero_phase_like_calc_score() -> None:
    text = (DATA / "valid-run" / "result_summary.txt").read_text()
    text = text.replace("find      987.654321", "find        0.000000")
    kept = [p.value for p in r.parse_summary(text).phases if p.in_score and p.group == "metadata" and p.value > 0]
    md = math.prod(kept) ** (1 / len(kept))
    bw = r.parse_summary(text).score.bandwidth  # type: ignore[union-attr]
    text = text.replace("IOPS 51.340345 kiops : TOTAL 15.774108",
                        f"IOPS {md:f} kiops : TOTAL {math.sqrt(bw * md):f}")
    res = r.parse_summary(text)
    assert len(kept) == 7 and res.mismatches == []


def test_score_and_scorex_membership_is_iO500s_rule_on_both_paths(tmp_path: Path) -> None:
    summary = r.load_result_dir(DATA / "invalid-run")
    detail_only = tmp_path / "killed-before-summary"
    shutil.copytree(DATA / "invalid-run", detail_only)
    (detail_only / r.SUMMARY_FILE).unlink()
    detail = r.load_result_dir(detail_only)

    def membership(res: r.Io500Result) -> dict[str, tuple[bool, bool]]:
        return {p.name: (p.in_score, p.in_scorex) for p in res.phases}

    assert membership(detail) == {k: v for k, v in membership(summary).items() if k != "timestamp"}
    unscored = {name for name, (_, x) in membership(detail).items() if not x}
    assert unscored == {"ior-rnd4K-easy-read", "mdworkbench-create", "mdworkbench-delete"}
    scorex_only = {name for name, (s, x) in membership(summary).items() if x and not s}
    assert scorex_only == {"find-easy", "find-hard", "mdworkbench-bench"}
    assert sum(p.in_score for p in summary.phases) == 12
    # Both paths add up to the printed (or result.txt's) SCORE and SCOREX.
    for res in (summary, detail):
        assert [a.label for a in res.recomputed] == ["SCORE", "SCOREX"] and res.mismatches == []
    assert summary.score_extended is not None and summary.score is not None
    assert summary.score_extended.iops > summary.score.iops  # the optional phases count for SCOREX only


def _tampered(tmp_path: Path) -> Path:
    where = tmp_path / "tampered"
    shutil.copytree(DATA / "valid-run", where)
    summary = where / r.SUMMARY_FILE
    summary.write_text(summary.read_text().replace("ior-hard-write        1.234567", "ior-hard-write        2.234567"))
    return where


def test_a_result_that_does_not_add_up_is_flagged(tmp_path: Path) -> None:
    res = r.load_result_dir(_tampered(tmp_path))
    assert res.valid  # IO500 did not flag anything ...
    assert [m.split(" printed")[0] for m in res.mismatches] == ["SCORE bandwidth 4.846529", "SCORE TOTAL 15.774108"]
    assert res.to_dict()["adds_up"] is False
    buf = io.StringIO()
    Console(file=buf, width=160, color_system=None).print(result_table(res))
    out = buf.getvalue()
    row = next(line for line in out.splitlines() if "SCORE bandwidth" in line)
    assert "recomputed 5.621478" in row
    assert "does not add up" in " ".join(out.split())


def test_the_folder_checker(tmp_path: Path) -> None:
    ok = subprocess.run([sys.executable, str(ROOT / "scripts" / "io500_check.py"), str(DATA), "--brief"],
                        capture_output=True, text=True, timeout=60)
    assert ok.returncode == 0, ok.stderr
    assert "5 result directories, 5 add up, 0 do not" in ok.stdout
    assert "era-2019-io500sh: 12 phases (12 in SCORE), invalid; scores match the phases" in ok.stdout
    _tampered(tmp_path)
    bad = subprocess.run([sys.executable, str(ROOT / "scripts" / "io500_check.py"), str(tmp_path)],
                         capture_output=True, text=True, timeout=60, env={"COLUMNS": "200", "PATH": "/usr/bin"})
    assert bad.returncode == 1
    assert "DOES NOT ADD UP: SCORE bandwidth 4.846529 printed" in bad.stdout
    assert "ior-hard-write" in bad.stdout  # the phase table
    empty = subprocess.run([sys.executable, str(ROOT / "scripts" / "io500_check.py"), str(tmp_path / "tampered" / "x")],
                           capture_output=True, text=True, timeout=60)
    assert empty.returncode == 2 and "not a folder" in empty.stderr
