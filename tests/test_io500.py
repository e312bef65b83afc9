"""IO500: the result parser, the INI template, the batch script, and one local run of the whole job.

Parser tests use verbatim lines of IO500's output format (from IO500's README and public runs) and the
result directories in tests/data/io500/ (built from the documented format).
Golden files live in tests/golden/; after an intended template change regenerate them with

    BENCHCTL_UPDATE_GOLDEN=1 .venv/bin/python -m pytest tests/test_golden.py tests/test_io500.py

and review the diff.
"""

from __future__ import annotations

import io
import json
import math
import os
import re
import shlex
import shutil
import subprocess
import time
from pathlib import Path
from typing import Any

import pytest
from rich.console import Console

from benchctl.bench.io500 import parse as r
from benchctl.bench.io500.kind import result_table
from benchctl.config import load_settings
from benchctl.executors.local import sbatch_options
from benchctl.jobs import Job, JobTable
from benchctl.services import ServiceContext, ServiceError
from benchctl.services.io500 import Io500, Io500ConfigError, ini_values, read_global_dirs
from benchctl.slurm.states import JobState
from benchctl.templates import Renderer, TemplateError
from tests.test_templates import assert_golden, service_for

DATA = Path(__file__).resolve().parent / "data" / "io500"
GOLDEN_DIR = Path(__file__).resolve().parent / "golden"
UPDATE = os.environ.get("BENCHCTL_UPDATE_GOLDEN") == "1"
BASH = shutil.which("bash")

RUN_DIR = Path("/home/u/benchctl/jobs/io500-X")
HOST_BIN_DIR = "/opt/benchctl/bin"
# A placeholder image, pinned here so the golden files change only when the templates do.
IMAGES = {"io500": "docker://registry.example.org/benchctl/io500:test"}
RUNTIMES = {"apptainer": ("meluxina", "slurm"), "none": ("local", "local")}


# ---- verbatim lines (IO500's README and public runs) ------------------------------------------------

PHASE_LINES = [
    # line, name, value, unit, seconds, scored, invalid
    ("[RESULT]       ior-easy-write        0.186620 GiB/s  : time 0.027 seconds",  # README (old spacing)
     "ior-easy-write", 0.186620, "GiB/s", 0.027, True, False),
    ("[RESULT]    mdtest-easy-write      103.300821 kIOPS : time 1.121 seconds",
     "mdtest-easy-write", 103.300821, "kIOPS", 1.121, True, False),
    ("[      ]            timestamp        0.000000 kIOPS : time 0.001 seconds",
     "timestamp", 0.0, "kIOPS", 0.001, False, False),
    ("[RESULT]       ior-hard-write        0.381392 GiB/s : time 599.690 seconds",
     "ior-hard-write", 0.381392, "GiB/s", 599.690, True, False),
    ("[RESULT]    mdtest-hard-write       19.860258 kIOPS : time 36.082 seconds [INVALID]",
     "mdtest-hard-write", 19.860258, "kIOPS", 36.082, True, True),
    ("[RESULT]                 find    24346.302247 kIOPS : time 4.760 seconds",
     "find", 24346.302247, "kIOPS", 4.760, True, False),
    ("[      ]  ior-rnd4K-easy-read        0.134469 GiB/s : time 30.157 seconds",
     "ior-rnd4K-easy-read", 0.134469, "GiB/s", 30.157, False, False),
]

SCORE_LINES = [
    # line, extended, bandwidth, unit, iops, total, invalid, legacy
    ("[SCORE ] Bandwidth 4.761314 GiB/s : IOPS 65.731505 kiops : TOTAL 17.690911 [INVALID]",
     False, 4.761314, "GiB/s", 65.731505, 17.690911, True, False),
    ("[SCORE INVALID] Bandwidth 0.172092 GB/s : IOPS 292.625029 kiops : TOTAL 7.096374",  # README appendix B
     False, 0.172092, "GB/s", 292.625029, 7.096374, True, True),
    ("[SCOREX] Bandwidth 3.109452 GiB/s : IOPS 65.731505 kiops : TOTAL 14.296411",  # main.c's [SCOREX] format
     True, 3.109452, "GiB/s", 65.731505, 14.296411, False, False),
    ("[SCORE ] Bandwidth 4.846529 GiB/s : IOPS 51.340345 kiops : TOTAL 15.774108",
     False, 4.846529, "GiB/s", 51.340345, 15.774108, False, False),
]

# IO500 README, "mpiexec -np 2 ./io500 config-minimal.ini" (appendix B), verbatim.
README_RUN = """\
[RESULT]       ior-easy-write        0.186620 GiB/s  : time 0.027 seconds
[RESULT]    mdtest-easy-write      103.300821 kIOPS : time 1.121 seconds
[RESULT]       ior-hard-write        0.001313 GiB/s  : time 0.067 seconds
[RESULT]    mdtest-hard-write       58.939081 kIOPS : time 1.021 seconds
[RESULT]                 find     1486.435084 kIOPS : time 0.118 seconds
[RESULT]        ior-easy-read        1.575557 GiB/s  : time 0.005 seconds
[RESULT]     mdtest-easy-stat      839.392805 kIOPS : time 0.138 seconds
[RESULT]        ior-hard-read        2.272671 GiB/s  : time 0.000 seconds
[RESULT]     mdtest-hard-stat     1212.558124 kIOPS : time 0.050 seconds
[RESULT]   mdtest-easy-delete      160.765642 kIOPS : time 0.753 seconds
[RESULT]     mdtest-hard-read      275.011939 kIOPS : time 0.219 seconds
[RESULT]   mdtest-hard-delete      132.015851 kIOPS : time 0.474 seconds
[SCORE INVALID] Bandwidth 0.172092 GB/s : IOPS 292.625029 kiops : TOTAL 7.096374
"""


@pytest.mark.parametrize(("line", "name", "value", "unit", "secs", "scored", "invalid"), PHASE_LINES,
                         ids=[p[1] for p in PHASE_LINES])
def test_phase_line(line: str, name: str, value: float, unit: str, secs: float, scored: bool,
                    invalid: bool) -> None:
    phase = r.parse_phase_line(line)
    assert phase == r.Phase(name=name, value=value, unit=unit, time_s=secs, scored=scored, invalid=invalid)
    assert phase.kind == ("bandwidth" if name.startswith("i") else "metadata")
    assert r.parse_score_line(line) is None


def test_invalid_suffix_does_not_break_the_fields() -> None:
    """`line.split()` unpacking breaks on the suffix; the regex keeps every field and only adds the flag."""
    plain = r.parse_phase_line("[RESULT]    mdtest-hard-write       19.860258 kIOPS : time 36.082 seconds")
    flagged = r.parse_phase_line(PHASE_LINES[4][0])
    assert plain is not None and flagged is not None
    assert (plain.name, plain.value, plain.time_s) == (flagged.name, flagged.value, flagged.time_s)
    assert (plain.invalid, flagged.invalid) == (False, True)


@pytest.mark.parametrize(("line", "extended", "bw", "unit", "iops", "total", "invalid", "legacy"), SCORE_LINES)
def test_score_line(line: str, extended: bool, bw: float, unit: str, iops: float, total: float, invalid: bool,
                    legacy: bool) -> None:
    score = r.parse_score_line(line)
    assert score == r.Score(extended=extended, bandwidth=bw, iops=iops, total=total, invalid=invalid,
                            bandwidth_unit=unit, legacy=legacy)
    assert score.label == ("SCOREX" if extended else "SCORE")
    assert r.parse_phase_line(line) is None


def test_invalid_notes_both_forms() -> None:
    stdout = r.parse_invalid_note("ERROR INVALID (src/main.c:20) DRY RUN MODE ACTIVATED")
    assert stdout == r.InvalidNote(message="DRY RUN MODE ACTIVATED", source="src/main.c:20")
    legacy = r.parse_invalid_note("; ERROR INVALID stonewall-time != 300")  # README appendix B, result.txt
    assert legacy == r.InvalidNote(message="stonewall-time != 300")
    in_phase = r.parse_invalid_note(
        "; ERROR INVALID Runtime of phase (0.027088) is below stonewall time. This shouldn't happen!",
        section="ior-easy-write")
    assert in_phase is not None and str(in_phase).startswith("[ior-easy-write] Runtime of phase (0.027088)")
    assert r.parse_invalid_note("; ERROR Could not open file") is None  # an error, not an invalidity note
    assert r.parse_invalid_note("; WARNING something") is None


@pytest.mark.parametrize("line", ["[SCORE]", "SCORE           = 17.690911 [INVALID]", "BENCHCTL_DONE=0",
                                  "[RESULT] ior-easy-write", "", "IO500 version io500-sc24_v1 (standard)",
                                  "[RESULT] BW   phase 1  ior_easy_write  3.14 GB/s : time 331.72"])
def test_other_lines_are_not_results(line: str) -> None:
    assert r.parse_phase_line(line) is None
    assert r.parse_score_line(line) is None
    assert r.parse_invalid_note(line) is None


def test_readme_run_is_invalid_with_twelve_phases() -> None:
    res = r.parse_summary(README_RUN)
    assert [p.name for p in res.phases][:3] == ["ior-easy-write", "mdtest-easy-write", "ior-hard-write"]
    assert len(res.phases) == 12 and all(p.scored and not p.invalid for p in res.phases)
    assert res.score is not None and res.score.legacy and res.score.invalid
    assert res.score_extended is None
    assert not res.valid
    assert res.invalid_reasons == ["[SCORE] flagged INVALID"]


# ---- result directories and job logs --------------------------------------------------------------


def test_valid_result_dir() -> None:
    res = r.load_result_dir(DATA / "valid-run")
    assert (res.version, res.mode, res.procs, res.config_hash) == ("io500-sc24_v1", "standard", 16, "8A7C21F0")
    assert res.result_dir == str(DATA / "valid-run")
    assert len(res.phases) == 13
    assert [p.name for p in res.phases if not p.scored] == ["timestamp"]
    assert res.valid and res.invalid_reasons == []
    assert res.score is not None and not res.score.invalid and res.score_extended is None
    # The score is IO500's calc_score: geometric means per group, TOTAL = sqrt(BW * MD).
    bw = math.prod(p.value for p in res.phases if p.scored and p.kind == "bandwidth") ** (1 / 4)
    md = math.prod(p.value for p in res.phases if p.scored and p.kind == "metadata") ** (1 / 8)
    assert res.score.bandwidth == pytest.approx(bw, abs=1e-6)
    assert res.score.iops == pytest.approx(md, abs=1e-6)
    assert res.score.total == pytest.approx(math.sqrt(bw * md), abs=1e-6)
    # result.txt details: a value holding "=" (ior's -O key=value) survives whole.
    exe = res.details["ior-easy-write"]["exe"]
    assert exe.startswith("./ior ") and "stoneWallingStatusFile=/project/scratch/" in exe
    assert res.details["find"]["found"] == "1234567"
    assert res.details["SCORE"]["SCORE"] == f"{res.score.total:f}"


def test_invalid_result_dir() -> None:
    res = r.load_result_dir(DATA / "invalid-run")
    assert (res.mode, res.procs) == ("extended", 4)
    assert not res.valid
    flagged = [p.name for p in res.phases if p.invalid]
    assert flagged == ["mdtest-hard-write"]
    unscored = res.phase("ior-rnd4K-easy-read")
    assert unscored is not None and not unscored.scored and unscored.unit == "GiB/s"
    assert res.score is not None and res.score.invalid and res.score.total == 10.769375
    assert res.score_extended is not None and res.score_extended.invalid and res.score_extended.extended
    assert [str(n) for n in res.notes] == [
        "stonewall-time != 300s",
        "[mdtest-hard-write] Write phase needed 36.082000s instead of stonewall 30s. Stonewall was hit at 36.0s",
    ]
    assert res.invalid_reasons == [
        "phase mdtest-hard-write flagged [INVALID]", "[SCORE] flagged INVALID", "[SCOREX] flagged INVALID",
        "ERROR INVALID: stonewall-time != 300s",
        "ERROR INVALID: [mdtest-hard-write] Write phase needed 36.082000s instead of stonewall 30s. "
        "Stonewall was hit at 36.0s",
    ]


def test_to_dict_common_format() -> None:
    valid = r.load_result_dir(DATA / "valid-run").to_dict()
    invalid = r.load_result_dir(DATA / "invalid-run").to_dict()
    for d in (valid, invalid):
        assert {"phases", "score", "valid", "invalid_reasons"} <= d.keys()
        json.dumps(d, allow_nan=False)  # plain JSON, no NaN
    assert valid["valid"] is True and valid["invalid_reasons"] == []
    assert valid["phases"][0] == {"name": "ior-easy-write", "value": 12.345678, "unit": "GiB/s",
                                  "time_s": 312.456, "scored": True, "invalid": False, "kind": "bandwidth",
                                  "in_score": True, "in_scorex": True, "decimals": 6}
    assert valid["score"]["iops_unit"] == "kiops" and valid["score_extended"] == {}
    assert invalid["valid"] is False and invalid["score"]["invalid"] is True
    assert invalid["score_extended"]["total"] == 11.982975
    assert [p["name"] for p in invalid["phases"] if p["invalid"]] == ["mdtest-hard-write"]


def test_nan_value_is_kept_and_exported_as_null() -> None:
    res = r.parse_summary("[RESULT]       ior-hard-write            -nan GiB/s : time 0.010 seconds [INVALID]\n")
    assert len(res.phases) == 1 and math.isnan(res.phases[0].value) and res.phases[0].invalid
    assert res.to_dict()["phases"][0]["value"] is None
    assert "no [SCORE ] line: the run did not finish" in res.invalid_reasons


def test_either_file_alone_is_enough(tmp_path: Path) -> None:
    summary_only = tmp_path / "summary-only"
    shutil.copytree(DATA / "invalid-run", summary_only)
    (summary_only / r.DETAIL_FILE).unlink()
    res = r.load_result_dir(summary_only)
    assert len(res.phases) == 19 and res.score is not None and res.score.invalid
    assert res.notes == () and res.procs is None

    detail_only = tmp_path / "detail-only"
    shutil.copytree(DATA / "invalid-run", detail_only)
    (detail_only / r.SUMMARY_FILE).unlink()
    res = r.load_result_dir(detail_only)  # a run killed before the summary: rebuilt from result.txt
    assert res.phase("mdtest-hard-write") == r.Phase("mdtest-hard-write", 19.860258, "kIOPS", 36.082, True, True)
    assert res.phase("timestamp") is None  # no score pair: a dummy phase
    assert res.score == r.Score(extended=False, bandwidth=1.329055, iops=87.264559, total=10.769375, invalid=True)
    assert res.score_extended is not None and res.score_extended.total == 11.982975
    assert (res.mode, res.version) == ("extended", "io500-sc24_v1")

    with pytest.raises(FileNotFoundError):
        r.load_result_dir(tmp_path / "missing")


def test_job_log() -> None:
    text = (DATA / "slurm-3712345.out").read_text()
    expected = "/home/users/u100001/benchctl/jobs/io500-20250111-090000-cd34/results/2025.01.11-09.00.02"
    assert r.find_result_dir(text) == expected
    assert r.find_result_dir(text.splitlines()) == expected
    res = r.parse_summary(text)  # the job's stdout: same lines as result_summary.txt, plus the notes
    assert res.result_dir == expected and res.version == "io500-sc24_v1" and res.mode == "extended"
    assert len(res.phases) == 19 and not res.valid
    assert [(n.source, n.message[:22]) for n in res.notes] == [
        ("src/phase_dbg.c:25", "stonewall-time != 300s"),
        ("src/phase_mdtest_hard_write.c:41", "Write phase needed 36."),
    ]
    assert res.to_dict()["phases"] == r.load_result_dir(DATA / "invalid-run").to_dict()["phases"]


def test_find_result_dir_edge_cases() -> None:
    no_line = "IO500 version x (standard)\n[SCORE ] Bandwidth 1 GiB/s : IOPS 1 kiops : TOTAL 1\n"
    assert r.find_result_dir(no_line) is None
    twice = ("The result files are stored in the directory: ./results/2025.01.01-00.00.00\r\n"
             "\x1b[0mThe result files are stored in the directory: ./results/2025.01.02-00.00.00  \n")
    assert r.find_result_dir(twice) == "./results/2025.01.02-00.00.00"  # the requeued run's, trimmed


def _render_table(res: r.Io500Result) -> str:
    buf = io.StringIO()
    Console(file=buf, width=160, color_system=None, force_terminal=False).print(result_table(res))
    return buf.getvalue()


def test_table_flags_invalid_rows() -> None:
    out = _render_table(r.load_result_dir(DATA / "invalid-run"))
    assert "INVALID" in out.splitlines()[0]  # the title
    row = next(line for line in out.splitlines() if "mdtest-hard-write" in line)
    assert "19.860258" in row and "INVALID" in row
    rnd = next(line for line in out.splitlines() if "ior-rnd4K-easy-read" in line)
    assert "not scored" in rnd
    score_rows = [line for line in out.splitlines() if line.startswith("│ SCORE")]
    assert len(score_rows) == 6 and all("INVALID" in row for row in score_rows)  # SCORE + SCOREX rows
    # the caption names every reason, brackets included (no rich markup swallowed them)
    flat = " ".join(out.split())
    assert "[mdtest-hard-write] Write phase needed" in flat and "[SCOREX] flagged INVALID" in flat


def test_table_of_a_valid_run() -> None:
    out = _render_table(r.load_result_dir(DATA / "valid-run"))
    assert "VALID" in out.splitlines()[0] and "INVALID" not in out
    for col in ("phase", "value", "unit", "time (s)", "flag"):
        assert col in out
    assert re.search(r"SCORE TOTAL[\s│]+15\.774108", out)
    assert re.search(r"ior-easy-write[\s│]+12\.345678[\s│]+GiB/s[\s│]+312\.456", out)


# ---- the service: INI -----------------------------------------------------------------------------


def make_service(tmp_path: Path, runtime: str = "apptainer", host_bin_dir: str = HOST_BIN_DIR) -> Io500:
    return service_for("io500", tmp_path, runtime, IMAGES, host_bin_dir)  # type: ignore[no-any-return]


def check_golden(name: str, text: str) -> None:
    golden = GOLDEN_DIR / name
    assert_golden(golden, text)


# IO500's own INI grammar (src/ini-parse.c, POSIX EREs translated): a line is a section, a pair or empty.
_IO500_SECTION = re.compile(r"^\s*\[\s*([0-9a-zA-Z_-]+)\s*\]\s*(\s[#;].*)?$")
_IO500_PAIR = re.compile(r"^\s*([0-9a-zA-Z_.-]+)\s*=\s*([^#;]*)\s*(\s[#;].*)?$")
_IO500_EMPTY = re.compile(r"^\s*([#;].*)?$")


def io500_read(text: str) -> dict[str, dict[str, str]]:
    """Read an INI the way IO500 does; fail on any line IO500 would reject."""
    sections: dict[str, dict[str, str]] = {}
    current = None
    for line in text.split("\n"):
        if m := _IO500_SECTION.match(line):
            current = sections.setdefault(m[1], {})
        elif m := _IO500_PAIR.match(line):
            assert current is not None, f"pair outside a section: {line!r}"
            current[m[1]] = m[2].rstrip()
        else:
            assert _IO500_EMPTY.match(line), f"IO500 would reject {line!r}"
    return sections


@pytest.mark.usefixtures("fixed_env")
def test_ini_golden_and_io500_grammar(tmp_path: Path) -> None:
    service = make_service(tmp_path)
    text = service.render_ini(service.resolve({}), RUN_DIR)
    check_golden("io500-config.ini", text)
    ini = io500_read(text)
    assert ini["global"] == {
        "datadir": "/project/scratch/p200981/u/benchctl/io500/io500-X", "timestamp-datadir": "TRUE",
        "resultdir": "/home/u/benchctl/jobs/io500-X/results", "timestamp-resultdir": "TRUE", "api": "POSIX",
        "drop-caches": "FALSE"}
    assert ini["debug"] == {"stonewall-time": "300"}
    assert ini["ior-easy"] == {"transferSize": "2m", "blockSize": "9920000m", "filePerProc": "TRUE",
                               "uniqueDir": "FALSE"}
    assert ini["mdtest-easy"] == ini["mdtest-hard"] == {"n": "1000000"}


@pytest.mark.usefixtures("fixed_env")
def test_ini_values_from_options(tmp_path: Path) -> None:
    service = make_service(tmp_path)
    values = service.resolve({"datadir": "{scratch}/fs-test", "stonewall": 30, "mode": "extended",
                              "transfer_size": "4k", "block_size": "1g", "files_per_proc": 5000})
    text = service.render_ini(values, RUN_DIR)
    ini = io500_read(text)
    assert ini["global"]["datadir"] == "/project/scratch/p200981/u/fs-test"
    assert ini["debug"]["stonewall-time"] == "30"
    assert (ini["ior-easy"]["transferSize"], ini["ior-easy"]["blockSize"]) == ("4k", "1g")
    assert ini["mdtest-hard"]["n"] == "5000"
    assert "mode" not in ini["global"]  # a command-line flag, documented in a comment
    assert "--mode=extended" in text


BAD_VALUES = [
    ("datadir", "/scratch/x\nstonewall-time = 1", "line break"),
    ("datadir", "/scratch/x # comment", "may hold only"),
    ("datadir", "/scratch/x;y", "may hold only"),
    ("datadir", "/scratch/with space", "may hold only"),
    ("datadir", "/scratch/$(id)", "may hold only"),
    ("datadir", "relative/dir", "absolute path"),
    ("stonewall", "0", "whole number >= 1"),
    ("stonewall", "30s", "whole number >= 1"),
    ("stonewall", "300\n[debug]", "line break"),
    ("transfer_size", "2 m", "size like"),
    ("transfer_size", "2mb", "size like"),
    ("block_size", "3m", "multiple of the transfer size"),
    ("files_per_proc", "-5", "whole number >= 1"),
    ("mode", "fast", "standard or extended"),
    ("api", "POSIX --posix.odirect", "backend name"),
]


@pytest.mark.usefixtures("fixed_env")
@pytest.mark.parametrize(("key", "value", "message"), BAD_VALUES, ids=[f"{k}={v!r}" for k, v, _ in BAD_VALUES])
def test_bad_ini_value_is_refused(tmp_path: Path, key: str, value: str, message: str) -> None:
    service = make_service(tmp_path)
    values = {**service.resolve({}), key: value}
    with pytest.raises(Io500ConfigError, match=message):
        service.render_ini(values, RUN_DIR)
    with pytest.raises(TemplateError, match=message):  # the batch script refuses to render too (start --dry-run)
        service.render(values, RUN_DIR)


def test_ini_values_refuses_bool_and_keeps_good_values() -> None:
    with pytest.raises(Io500ConfigError):
        ini_values({"stonewall": True}, datadir="/d", resultdir="/r")
    with pytest.raises(Io500ConfigError, match="stonewall"):  # a 0 from the command line is not "unset"
        ini_values({"stonewall": 0}, datadir="/d", resultdir="/r")
    ok = ini_values({"stonewall": "300", "transfer_size": "2M", "block_size": "4m"}, datadir="/d", resultdir="/r")
    assert (ok["stonewall"], ok["transfer_size"], ok["block_size"]) == (300, "2M", "4m")


def test_user_config_is_used_verbatim(tmp_path: Path) -> None:
    user_ini = tmp_path / "mine.ini"
    user_ini.write_text("[global]\ndatadir = ./datafiles   # on the test FS\n\n[debug]\nstonewall-time = 1\n")
    service = make_service(tmp_path, "none")
    values = service.resolve({"config": str(user_ini)})
    assert service.render_ini(values, RUN_DIR) == user_ini.read_text()
    tv = service.template_values(values, RUN_DIR)
    assert (tv["datadir"], tv["resultdir"]) == (f"{RUN_DIR}/datafiles", f"{RUN_DIR}/results")
    assert tv["config_source"] == str(user_ini)
    assert read_global_dirs("[debug]\ndatadir = /no\n[global]\nresultdir = /r ; c\n") == {"resultdir": "/r"}
    with pytest.raises(Io500ConfigError, match="datadir is mandatory"):
        user_ini.write_text("[debug]\nstonewall-time = 1\n")
        service.render(values, RUN_DIR)
    with pytest.raises(Io500ConfigError, match="cannot read"):
        service.render(service.resolve({"config": str(tmp_path / "missing.ini")}), RUN_DIR)


# ---- the service: batch script --------------------------------------------------------------------


def render_script(tmp_path: Path, runtime: str, options: dict[str, Any] | None = None) -> str:
    service = make_service(tmp_path, runtime)
    values = service.resolve(options or {})
    assert values["runtime"] == runtime
    return service.render(values, RUN_DIR)


def bash_n(script: str) -> None:
    assert BASH is not None
    res = subprocess.run([BASH, "-n"], input=script, capture_output=True, text=True, timeout=10)
    assert res.returncode == 0, res.stderr


GOLDEN_CASES = [(runtime, nodes) for runtime in sorted(RUNTIMES) for nodes in (1, 2)]


@pytest.mark.usefixtures("fixed_env")
@pytest.mark.parametrize(("runtime", "nodes"), GOLDEN_CASES, ids=[f"{r}-{n}node" for r, n in GOLDEN_CASES])
def test_script_header_and_launch(tmp_path: Path, runtime: str, nodes: int) -> None:
    script = render_script(tmp_path, runtime, {"nodes": nodes, "tasks_per_node": 16})
    assert script.startswith("#!/bin/bash -l\n")
    opts = sbatch_options(script)  # the last --ntasks-per-node wins, as in sbatch
    assert (opts["nodes"], opts["ntasks-per-node"], opts["cpus-per-task"]) == (str(nodes), "16", "1")
    assert opts["job-name"] == "benchctl-io500" and "gres" not in opts
    assert f"LAUNCH=(srun --mpi=pmix --nodes={nodes} --ntasks-per-node=16)" in script
    assert 'export PMIX_MCA_psec="${PMIX_MCA_psec:-native}"' in script
    assert f"CONFIG={RUN_DIR}/config.ini\n" in script
    assert 'mkdir -p "$DATA_DIR" "$RESULT_BASE"' in script
    if runtime == "apptainer":
        assert '"${LAUNCH[@]}" apptainer exec "${BINDS[@]}" "$SIF" io500 "$CONFIG" > >(tee "$IO500_LOG") &' in script
        assert "DATA_DIR=/project/scratch/p200981/u/benchctl/io500/io500-X\n" in script
    else:
        assert '"${LAUNCH[@]}" io500 "$CONFIG" > >(tee "$IO500_LOG") &' in script
        assert "apptainer" not in script and f'export PATH={HOST_BIN_DIR}:"$PATH"' in script
    for marker in ("JOBID", "CONFIG", "DATA_DIR", "LAUNCH", "PID", "RESULT_DIR", "DONE", "STOPPED"):
        assert f"BENCHCTL_{marker}=" in script, marker


@pytest.mark.usefixtures("fixed_env")
def test_script_mode_and_mpi_options(tmp_path: Path) -> None:
    script = render_script(tmp_path, "apptainer", {"mode": "extended", "mpi": "default"})
    assert 'io500 "$CONFIG" --mode=extended > >(tee' in script
    assert "LAUNCH=(srun --nodes=1 --ntasks-per-node=8)" in script  # default: the site's MpiDefault
    assert "--mode=" not in render_script(tmp_path, "apptainer").split("# ---- benchmark")[1]
    assert "--mpi=pmi2 " in render_script(tmp_path, "none", {"mpi": "pmi2"})
    for key, value in (("nodes", 0), ("tasks_per_node", 0), ("mpi", "openmpi"), ("mode", "fast")):
        with pytest.raises(Io500ConfigError, match=key.replace("_", " ")):
            render_script(tmp_path, "none", {key: value})


@pytest.mark.usefixtures("fixed_env")
@pytest.mark.skipif(BASH is None, reason="bash not installed")
def test_hostile_config_path_is_only_quoted(tmp_path: Path) -> None:
    hostile = tmp_path / "it's $(touch pwned) `id`.ini"
    hostile.write_text("[global]\ndatadir = /scratch/io500\n")
    script = render_script(tmp_path, "none", {"config": str(hostile)})
    assert shlex.quote(str(hostile)) in script
    assert str(hostile) not in script  # a value with a single quote is spelled differently once quoted
    bash_n(script)
    with pytest.raises(TemplateError, match="line break"):
        bad = tmp_path / "x\ny.ini"
        bad.write_text("[global]\ndatadir = /d\n")
        render_script(tmp_path, "none", {"config": str(bad)})


def test_options_declared() -> None:
    flags = {o.flag: o for o in Io500.start_options()}
    for flag in ("--nodes", "--tasks-per-node", "--config", "--stonewall", "--mode", "--datadir", "--mpi"):
        assert flag in flags, flag
    assert flags["--mode"].choices == ("standard", "extended")
    assert flags["--nodes"].convert("4") == 4
    assert len(flags) == len(Io500.start_options())  # no flag declared twice (base + service)


# ---- one real run of the job: local executor, runtime none, a stand-in io500 ---------------------

# The stand-in prints IO500's stdout for the invalid fixture run and writes its result files where the INI
# says (resultdir/<timestamp>), like the real program; everything else -- the INI written at submit, the
# batch script, the local executor, the markers, the result lookup and the parser -- is the real code.
STAND_IN_IO500 = f"""#!/bin/bash
set -e
ini="$1"
[ -f "$ini" ] || {{ echo "FATAL Cannot open config file $ini"; exit 1; }}
resultdir=$(sed -n 's/^resultdir = //p' "$ini")
datadir=$(sed -n 's/^datadir = //p' "$ini")
[ -d "$datadir" ] || {{ echo "FATAL datadir $datadir missing"; exit 1; }}
out="$resultdir/2025.01.11-09.00.02"
mkdir -p "$out"
echo "rank=${{SLURM_PROCID:-0}} node=${{SLURMD_NODENAME:-}} pmi=${{PMIX_RANK:-${{PMI_RANK:-none}}}}" >> "$out/ranks.txt"
[ "${{SLURM_PROCID:-0}}" = 0 ] || exit 0  # like IO500: rank 0 writes the results
sleep 0.5  # let the other ranks register first
cp {shlex.quote(str(DATA / "invalid-run"))}/result*.txt "$out/"
cp "$ini" "$out/config-orig.ini"
echo "args: $*" >&2
sed -n '/^IO500 version/,/^\\[SCOREX\\]/p' {shlex.quote(str(DATA / "slurm-3712345.out"))}
echo
echo "The result files are stored in the directory: $out"
"""
# The local executor has no srun: the script uses mpiexec; this one runs the program once.
STAND_IN_MPIEXEC = '#!/bin/bash\n[ "$1" = -n ] && shift 2\nexec "$@"\n'


@pytest.mark.skipif(BASH is None, reason="bash not installed")
def test_local_run_end_to_end(tmp_path: Path) -> None:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for name, text in (("io500", STAND_IN_IO500), ("mpiexec", STAND_IN_MPIEXEC)):
        (bin_dir / name).write_text(text)
        (bin_dir / name).chmod(0o755)
    service = make_service(tmp_path, "none", host_bin_dir=str(bin_dir))
    values = service.resolve({"datadir": str(tmp_path / "fs"), "stonewall": 1, "mode": "extended"})
    job = service.submit(values)
    run_dir = Path(job.run_dir)
    assert (run_dir / "config.ini").read_text() == service.render_ini(values, run_dir)  # written next to job.sh
    assert (run_dir / "job.sh").is_file()
    job = service.wait_ready(job, timeout=20)
    assert job.state is JobState.COMPLETED and job.ready
    markers = service.log_info(job).markers
    assert markers["DONE"] == "0" and markers["LAUNCH"] == "mpiexec -n 8"
    where = service.result_dir(job)
    assert where == run_dir / "results" / "2025.01.11-09.00.02" == Path(markers["RESULT_DIR"])
    assert (tmp_path / "fs").is_dir()  # the job created the data directory
    assert "args: " + str(run_dir / "config.ini") + " --mode=extended" in Path(job.err_path).read_text()
    res = service.load(job)
    assert res is not None and not res.valid and res.score is not None and res.score.total == 10.769375
    run = service.results(job)  # the same, as the RunResult every bench kind returns
    assert run is not None and run.kind == "io500" and run.metrics == res.to_dict() and run.errors == {"invalid": 1}
    assert (run_dir / "io500.out").read_text().rstrip().endswith(str(where))
    assert (where / "ranks.txt").read_text().startswith("rank=0 ")


def slurm_up() -> bool:
    return shutil.which("sinfo") is not None and subprocess.run(
        ["sinfo", "-h"], capture_output=True, timeout=10).returncode == 0


@pytest.mark.slurm
@pytest.mark.skipif(BASH is None, reason="bash not installed")
def test_two_nodes_on_real_slurm(tmp_path: Path) -> None:
    """The rendered script under the real local Slurm (scripts/local-slurm.sh): sbatch honours
    --ntasks-per-node, srun starts nodes x tasks ranks with a PMI rank each, and the result is found.

    --mpi pmi2: the local test cluster's Slurm has the pmix plugin but not the PMIx library ("can not load
    PMIx library"), so the MeluXina default (pmix) cannot run here."""
    if not slurm_up():
        if os.environ.get("BENCHCTL_REQUIRE_SLURM") == "1":
            pytest.fail("local Slurm is not running (scripts/local-slurm.sh start)")
        pytest.skip("local Slurm is not running (scripts/local-slurm.sh start)")
    from benchctl.executors.process import Runner
    from benchctl.executors.slurm import SlurmExecutor

    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "io500").write_text(STAND_IN_IO500)
    (bin_dir / "io500").chmod(0o755)
    settings = load_settings(executor="slurm", profile="local")
    ctx = ServiceContext(settings=settings, executor=SlurmExecutor(Runner()), jobs=JobTable(None),
                         renderer=Renderer(), images=IMAGES, host_bin_dir=str(bin_dir))
    service = Io500(ctx)
    values = service.resolve({"nodes": 2, "tasks_per_node": 2, "datadir": str(tmp_path / "fs"), "stonewall": 1,
                              "time": "5", "mpi": "pmi2"})
    assert values["runtime"] == "none"
    job = service.submit(values)
    try:
        job = service.wait_ready(job, timeout=90)
    finally:
        if not service.refresh(job).state.is_final:
            ctx.executor.cancel(job.id)
    assert service.log_info(job).markers["LAUNCH"] == "srun --mpi=pmi2 --nodes=2 --ntasks-per-node=2"
    where = service.result_dir(job)
    assert where is not None
    ranks = sorted((where / "ranks.txt").read_text().splitlines())
    assert [line.split()[0] for line in ranks] == ["rank=0", "rank=1", "rank=2", "rank=3"]
    assert len({line.split()[1] for line in ranks}) == 2  # two nodes
    assert [line.split()[2] for line in ranks] == ["pmi=0", "pmi=1", "pmi=2", "pmi=3"]  # from srun's PMI
    res = service.load(job)
    assert res is not None and res.score is not None and not res.valid


@pytest.mark.skipif(BASH is None, reason="bash not installed")
def test_local_run_without_io500_fails_with_reason(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "mpiexec").write_text(STAND_IN_MPIEXEC)
    (bin_dir / "mpiexec").chmod(0o755)
    monkeypatch.setenv("PATH", f"{bin_dir}:/usr/bin:/bin")  # no io500 anywhere
    if shutil.which("io500"):
        pytest.skip("a real io500 is on /usr/bin")
    service = make_service(tmp_path, "none", host_bin_dir=str(bin_dir))
    job = service.submit(service.resolve({"datadir": str(tmp_path / "fs")}))
    started = time.monotonic()
    with pytest.raises(ServiceError, match=r"ended FAILED \(exit code 127\)"):
        service.wait_ready(job, timeout=20)
    assert time.monotonic() - started < 15
    assert service.load(job) is None


def test_result_dir_from_log_and_fallback(tmp_path: Path) -> None:
    service = make_service(tmp_path, "none")
    run_dir = tmp_path / "run"
    out = run_dir / "slurm-1.out"
    run_dir.mkdir()
    # IO500's line only (no marker: an older script), relative to the run directory
    out.write_text("The result files are stored in the directory: ./results/2025.01.10-12.00.05\n")
    job = Job(id="1", service="io500", executor="local", out_path=str(out), run_dir=str(run_dir))
    assert service.result_dir(job) == run_dir / "results/2025.01.10-12.00.05"
    assert service.load(job) is None  # nothing there
    # killed before the end: no line, no marker -> the newest summary under results/
    out.write_text("BENCHCTL_STOPPED=143\n")
    shutil.copytree(DATA / "valid-run", run_dir / "results" / "2025.01.10-12.00.05")
    res = service.load(job)
    assert res is not None and res.valid and res.result_dir == str(run_dir / "results" / "2025.01.10-12.00.05")
    assert service.result_dir(Job(id="2", service="io500", executor="local")) is None


@pytest.mark.skipif(BASH is None, reason="bash not installed")
def test_bench_io500_command_submits_waits_and_stores_scores(tmp_path: Path, make_app) -> None:  # type: ignore[no-untyped-def]
    """`bench io500`: submit (local executor, runtime none, the stand-in io500), wait, parse, store, show."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for name, text in (("io500", STAND_IN_IO500), ("mpiexec", STAND_IN_MPIEXEC)):
        (bin_dir / name).write_text(text)
        (bin_dir / name).chmod(0o755)
    app = make_app(profile="local", executor="local")
    app.service_context().host_bin_dir = str(bin_dir)
    out_file = tmp_path / "io500-run.json"
    assert app.run_line(f"bench io500 --datadir {tmp_path / 'fs'} --stonewall 1 --timeout 60 --output {out_file}"), \
        app.out.getvalue()
    out = " ".join(app.out.getvalue().split())
    assert "submitted io500 as job local-1" in out and "io500:local-1 finished" in out
    assert "INVALID" in out  # the fixture run is invalid: flagged, not hidden
    run = json.loads(out_file.read_text())
    assert run["kind"] == "io500" and run["service"]["job_id"] == "local-1"
    assert run["metrics"]["valid"] is False and run["metrics"]["score"]["total"] == 10.769375
    assert run["error_counts"] == {"invalid": 1}
    # Collecting the same job again by id gives the same scores without a new submission.
    assert app.run_line(f"bench io500 --job local-1 --timeout 10 --output {tmp_path / 'again.json'}")
    assert json.loads((tmp_path / "again.json").read_text())["metrics"] == run["metrics"]
    assert [j.id for j in app.jobs.all()] == ["local-1"]
