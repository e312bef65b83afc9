"""IO500 results of every era: parse ``result_summary.txt``, ``result.txt`` and the job's stdout into typed
records (``records.py``); which phase counts for which score, and the recomputed scores, are ``rules.py``.

The C application (``src/main.c``, io500-sc20 and later; fixed since io500-sc22):

* phase lines, ``"[RESULT]"`` for scored phases or ``"[      ]"`` for unscored ones (``timestamp``,
  ``ior-rnd4K-easy-read``), then ``" %20s %15s %s : time %.3f seconds%s"`` -- name, value, unit
  (``GiB/s`` when the name starts with ``i``, else ``kIOPS``), runtime and an optional ``" [INVALID]"``;
* score lines ``[SCORE ] Bandwidth %f GiB/s : IOPS %f kiops : TOTAL %f[ [INVALID]]`` and, in extended
  mode, the same with ``[SCOREX]``;
* invalidity notes: ``ERROR INVALID (file:line) msg`` on stdout, ``; ERROR INVALID msg`` in result.txt;
* the last stdout line ``The result files are stored in the directory: <dir>``.

Earlier forms, read the same way: ISC20's ``[RESULT-invalid]       ior-easy-write  0.015926 GiB/s : time ...``
and ``[SCORE] Bandwidth ... GB/s``; README appendix B's ``[SCORE INVALID]``; io500.sh (2017-2019)
``[RESULT] BW   phase 1            ior_easy_write                8.581 GB/s : time  58.27 seconds`` (``IOPS
phase N ... kiops``), ``[SCORE-valid]``/``[SCORE-invalid]`` and its note "One or more test phases invalid".

Lines are matched with anchored regexes, never ``line.split()`` tuple unpacking: the optional
``[INVALID]`` suffix breaks fixed-arity splitting (a bug seen in several public IO500 wrappers).
Invalid phases and scores are kept and flagged, never dropped: a benchmark report that hides an
invalid run is worse than no report.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, replace
from pathlib import PurePath

from benchctl.bench.io500 import rules
from benchctl.bench.io500.records import InvalidNote, Io500Result, Phase, Score
from benchctl.executors.files import JobFiles, LocalFiles

SUMMARY_FILE = "result_summary.txt"
DETAIL_FILE = "result.txt"

# %f prints nan/inf for a broken phase; accept them so one bad phase does not hide the others.
_NUM = r"[-+]?(?:\d+(?:\.\d*)?|\.\d+|nan|inf)"

# Phase line. `\s+` around ":" because the README's older example prints "GiB/s  :" (two spaces); io500.sh
# put "BW   phase 1" / "IOPS phase 3" before the name and tagged invalid phases "[RESULT-invalid]".
_PHASE_RE = re.compile(
    r"^\[(?P<tag>RESULT(?:-(?P<validity>valid|invalid))?| {6})\]\s+(?:(?P<group>BW|IOPS)\s+phase\s+\d+\s+)?"
    r"(?P<name>\S+)\s+(?P<value>" + _NUM + r")\s+(?P<unit>GiB/s|kIOPS|GB/s)"
    r"\s*:\s+time\s+(?P<secs>" + _NUM + r")\s+seconds(?P<invalid>\s+\[INVALID\])?\s*$",
    re.IGNORECASE,
)
# Score line: "[SCORE ]", "[SCOREX]", and the older "[SCORE]", "[SCORE INVALID]", "[SCORE-valid]", "[SCORE-invalid]".
_SCORE_RE = re.compile(
    r"^\[SCORE(?P<x>X| )?(?:(?P<legacy_invalid>\s*INVALID)|-(?P<validity>valid|invalid))?\]\s+Bandwidth\s+"
    r"(?P<bw>" + _NUM + r")\s+(?P<bw_unit>Gi?B/s)\s+:\s+IOPS\s+(?P<iops>" + _NUM + r")\s+kiops\s+:\s+TOTAL\s+"
    r"(?P<total>" + _NUM + r")(?P<invalid>\s+\[INVALID\])?\s*$",
    re.IGNORECASE,
)
# "ERROR INVALID (src/main.c:123) msg" on stdout; "; ERROR INVALID msg" in result.txt (with or without
# the "(file:line)" part, depending on the release).
_NOTE_RE = re.compile(r"^(?:;\s*)?ERROR INVALID\s+(?:\((?P<source>[^()\s]+:\d+)\)\s*)?(?P<msg>.*?)\s*$"
                      r"|^(?P<script>One or more test phases invalid\..*?)\s*$")
_VERSION_RE = re.compile(r"^IO500 version (?P<version>\S+)(?:\s+\((?P<mode>[^)]*)\))?\s*$")
_RESULT_DIR_RE = re.compile(r"The result files are stored in the directory:\s*(?P<dir>\S.*?)\s*$")
# result.txt: "[section]" headers and "%-15s = value" pairs (the key may be longer than 15 characters,
# the value may itself contain "=": ior command lines carry "-O key=value").
_SECTION_RE = re.compile(r"^\[(?P<name>[^\]]+)\]\s*$")
_PAIR_RE = re.compile(r"^(?P<key>[^\s=;#\[][^=]*?)\s*=\s?(?P<value>.*?)\s*$")
_ANSI_RE = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")


# ---- line parsers ------------------------------------------------------------------------------


def _clean(line: str) -> str:
    return _ANSI_RE.sub("", line).rstrip("\r\n")


def _decimals(number: str) -> int:
    return len(number.split(".", 1)[1]) if "." in number else 0


def parse_phase_line(line: str) -> Phase | None:
    """A phase line of any era, or None when ``line`` is not one."""
    m = _PHASE_RE.match(_clean(line).strip())
    if not m:
        return None
    unit = {"gib/s": "GiB/s", "kiops": "kIOPS", "gb/s": "GB/s"}[m["unit"].lower()]
    group = {"bw": rules.BANDWIDTH, "iops": rules.METADATA}.get((m["group"] or "").lower(), "")
    invalid = m["invalid"] is not None or (m["validity"] or "").lower() == "invalid"
    return Phase(name=m["name"], value=float(m["value"]), unit=unit, time_s=float(m["secs"]),
                 scored=m["tag"].upper().startswith("RESULT"), invalid=invalid, decimals=_decimals(m["value"]),
                 group_hint=group)


def parse_score_line(line: str) -> Score | None:
    """A score line of any era (``[SCORE ]``, ``[SCOREX]``, ``[SCORE]``, ``[SCORE INVALID]``, ``[SCORE-valid]``),
    or None."""
    m = _SCORE_RE.match(_clean(line).strip())
    if not m:
        return None
    validity = (m["validity"] or "").lower()
    legacy = m["legacy_invalid"] is not None or bool(validity) or m["x"] is None or m["bw_unit"] == "GB/s"
    invalid = m["legacy_invalid"] is not None or validity == "invalid" or m["invalid"] is not None
    return Score(extended=(m["x"] or "").upper() == "X", bandwidth=float(m["bw"]), iops=float(m["iops"]),
                 total=float(m["total"]), invalid=invalid, bandwidth_unit=m["bw_unit"], legacy=legacy,
                 decimals=(_decimals(m["bw"]), _decimals(m["iops"]), _decimals(m["total"])))


def parse_invalid_note(line: str, section: str = "") -> InvalidNote | None:
    """An ``ERROR INVALID`` line (stdout or result.txt form), or None."""
    m = _NOTE_RE.match(_clean(line).strip())
    if not m:
        return None
    return InvalidNote(message=m["script"] or m["msg"], source=m["source"] or "", section=section)


def find_result_dir(lines: str | Iterable[str]) -> str | None:
    """The directory from IO500's last stdout line ``The result files are stored in the directory: <dir>``.

    ``lines``: a job log's text or its lines. The last match wins (a requeued job runs IO500 again).
    Relative paths are returned as printed: they are relative to the job's working directory.
    """
    found = None
    for line in lines.splitlines() if isinstance(lines, str) else lines:
        m = _RESULT_DIR_RE.search(_clean(line))
        if m:
            found = m["dir"]
    return found


# ---- whole files -------------------------------------------------------------------------------


def parse_summary(text: str) -> Io500Result:
    """``result_summary.txt`` or a job's stdout (which also holds the notes and the result-dir line)."""
    phases: list[Phase] = []
    notes: list[InvalidNote] = []
    score = score_x = None
    version = mode = ""
    for raw in text.splitlines():
        line = _clean(raw).strip()
        if (phase := parse_phase_line(line)) is not None:
            phases.append(phase)
        elif (s := parse_score_line(line)) is not None:
            if s.extended:
                score_x = s
            else:
                score = s
        elif (note := parse_invalid_note(line)) is not None:
            notes.append(note)
        elif m := _VERSION_RE.match(line):
            version, mode = m["version"], m["mode"] or ""
    return Io500Result(phases=tuple(phases), score=score, score_extended=score_x, notes=tuple(notes),
                       version=version, mode=mode, result_dir=find_result_dir(text) or "")


@dataclass(frozen=True)
class ResultDetail:
    """``result.txt``: INI-like ``[section]`` / ``key = value`` pairs plus the ``; ERROR INVALID`` notes."""

    sections: Mapping[str, Mapping[str, str]]
    notes: tuple[InvalidNote, ...] = ()

    @property
    def run(self) -> Mapping[str, str]:
        return self.sections.get("run", {})

    def score(self, extended: bool = False) -> Score | None:
        """The ``[SCORE]``/``[SCOREX]`` section as a Score (``SCORE = 17.69 [INVALID]``)."""
        sec = self.sections.get("SCOREX" if extended else "SCORE")
        if not sec or "SCORE" not in sec:
            return None
        total_text = sec["SCORE"]
        try:
            return Score(extended=extended, bandwidth=float(sec.get("BW", "nan")), iops=float(sec.get("MD", "nan")),
                         total=float(total_text.split()[0]), invalid="[INVALID]" in total_text)
        except (ValueError, IndexError):
            return None


def parse_result_txt(text: str) -> ResultDetail:
    """Parse ``result.txt``. Pairs before any header (older releases) go to section ``run``."""
    sections: dict[str, dict[str, str]] = {}
    notes: list[InvalidNote] = []
    current = "run"
    for raw in text.splitlines():
        line = _clean(raw).strip()
        if not line:
            continue
        if m := _SECTION_RE.match(line):
            current = m["name"].strip()
            sections.setdefault(current, {})
        elif line.startswith(";"):
            note = parse_invalid_note(line, "" if current == "run" else current)
            if note is not None:
                notes.append(note)
        elif m := _PAIR_RE.match(line):
            sections.setdefault(current, {})[m["key"]] = m["value"]
    return ResultDetail(sections=sections, notes=tuple(notes))


def _phases_from_detail(detail: ResultDetail) -> tuple[Phase, ...]:
    """Phases rebuilt from result.txt when result_summary.txt is missing (a run killed mid-way).

    result.txt writes a ``score`` pair for every phase but the dummy ones, scored or not: whether a phase is
    scored comes from IO500's rule (``rules.py``), as on the summary path. Invalid = an ERROR INVALID note in
    that phase's section.
    """
    flagged = {n.section for n in detail.notes}
    phases = []
    for name, pairs in detail.sections.items():
        if name in ("run", "SCORE", "SCOREX") or "score" not in pairs:
            continue
        try:
            value = float(pairs["score"])
            secs = float(pairs.get("t_delta", "nan"))
        except ValueError:
            continue
        phases.append(Phase(name=name, value=value, unit="GiB/s" if name.startswith("i") else "kIOPS",
                            time_s=secs, scored=rules.rule_for(name).in_scorex, invalid=name in flagged,
                            decimals=_decimals(pairs["score"])))
    return tuple(phases)


def load_result_dir(path: str | PurePath, files: JobFiles | None = None) -> Io500Result:
    """A complete result directory: result_summary.txt for phases and scores, result.txt for the run
    metadata and the ERROR INVALID notes. Either file alone is enough; neither is FileNotFoundError.

    ``files`` reads them where the job wrote them (the executor's ``JobFiles``; this machine by default)."""
    files = files or LocalFiles()
    root = PurePath(path)
    summary_path, detail_path = root / SUMMARY_FILE, root / DETAIL_FILE
    has_summary, has_detail = files.is_file(summary_path), files.is_file(detail_path)
    if not has_summary and not has_detail:
        raise FileNotFoundError(f"no {SUMMARY_FILE} or {DETAIL_FILE} in {root}")
    summary = parse_summary(files.read_text(summary_path)) if has_summary else Io500Result()
    detail = parse_result_txt(files.read_text(detail_path)) if has_detail else None
    if detail is None:
        return replace(summary, result_dir=str(root))
    run = detail.run
    procs = run.get("procs", "")
    return Io500Result(
        phases=summary.phases or _phases_from_detail(detail),
        score=summary.score or detail.score(False),
        score_extended=summary.score_extended or detail.score(True),
        notes=tuple(dict.fromkeys(summary.notes + detail.notes)),
        version=summary.version or run.get("version", ""),
        mode=summary.mode or run.get("mode", ""),
        result_dir=str(root),
        procs=int(procs) if procs.isdigit() else None,
        config_hash=run.get("config-hash", ""),
        details={k: dict(v) for k, v in detail.sections.items()},
    )


__all__ = ["DETAIL_FILE", "SUMMARY_FILE", "InvalidNote", "Io500Result", "Phase", "ResultDetail", "Score",
           "find_result_dir", "load_result_dir", "parse_invalid_note", "parse_phase_line", "parse_result_txt",
           "parse_score_line", "parse_summary"]
