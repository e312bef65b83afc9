"""IO500 results: parse ``result_summary.txt``, ``result.txt`` and the job's stdout into typed records.

The formats are fixed by IO500's ``src/main.c`` (unchanged since ``io500-sc22``):

* phase lines, ``"[RESULT]"`` for scored phases or ``"[      ]"`` for unscored ones (``timestamp``,
  ``ior-rnd4K-easy-read``), then ``" %20s %15s %s : time %.3f seconds%s"`` -- name, value, unit
  (``GiB/s`` when the name starts with ``i``, else ``kIOPS``), runtime and an optional ``" [INVALID]"``;
* score lines ``[SCORE ] Bandwidth %f GiB/s : IOPS %f kiops : TOTAL %f[ [INVALID]]`` and, in extended
  mode, the same with ``[SCOREX]``; old releases (README appendix B) print ``[SCORE INVALID] ... GB/s``;
* invalidity notes: ``ERROR INVALID (file:line) msg`` on stdout, ``; ERROR INVALID msg`` in result.txt;
* the last stdout line ``The result files are stored in the directory: <dir>``.

Lines are matched with anchored regexes, never ``line.split()`` tuple unpacking: the optional
``[INVALID]`` suffix breaks fixed-arity splitting (a bug seen in several public IO500 wrappers).
Invalid phases and scores are kept and flagged, never dropped: a benchmark report that hides an
invalid run is worse than no report.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace
from pathlib import PurePath
from typing import Any

from benchctl.executors.files import JobFiles, LocalFiles

SUMMARY_FILE = "result_summary.txt"
DETAIL_FILE = "result.txt"

# %f prints nan/inf for a broken phase; accept them so one bad phase does not hide the others.
_NUM = r"[-+]?(?:\d+(?:\.\d*)?|\.\d+|nan|inf)"

# Phase line. `\s+` around ":" because the README's older example prints "GiB/s  :" (two spaces).
_PHASE_RE = re.compile(
    r"^\[(?P<tag>RESULT| {6})\]\s+(?P<name>\S+)\s+(?P<value>" + _NUM + r")\s+(?P<unit>GiB/s|kIOPS|GB/s)"
    r"\s+:\s+time\s+(?P<secs>" + _NUM + r")\s+seconds(?P<invalid>\s+\[INVALID\])?\s*$",
    re.IGNORECASE,
)
# Score line: "[SCORE ]", "[SCOREX]", legacy "[SCORE INVALID]" (and "[SCORE]" without the pad).
_SCORE_RE = re.compile(
    r"^\[SCORE(?P<x>X| )?(?P<legacy_invalid>\s*INVALID)?\]\s+Bandwidth\s+(?P<bw>" + _NUM + r")\s+(?P<bw_unit>Gi?B/s)"
    r"\s+:\s+IOPS\s+(?P<iops>" + _NUM + r")\s+kiops\s+:\s+TOTAL\s+(?P<total>" + _NUM + r")"
    r"(?P<invalid>\s+\[INVALID\])?\s*$",
    re.IGNORECASE,
)
# "ERROR INVALID (src/main.c:123) msg" on stdout; "; ERROR INVALID msg" in result.txt (with or without
# the "(file:line)" part, depending on the release).
_NOTE_RE = re.compile(r"^(?:;\s*)?ERROR INVALID\s+(?:\((?P<source>[^()\s]+:\d+)\)\s*)?(?P<msg>.*?)\s*$")
_VERSION_RE = re.compile(r"^IO500 version (?P<version>\S+)(?:\s+\((?P<mode>[^)]*)\))?\s*$")
_RESULT_DIR_RE = re.compile(r"The result files are stored in the directory:\s*(?P<dir>\S.*?)\s*$")
# result.txt: "[section]" headers and "%-15s = value" pairs (the key may be longer than 15 characters,
# the value may itself contain "=": ior command lines carry "-O key=value").
_SECTION_RE = re.compile(r"^\[(?P<name>[^\]]+)\]\s*$")
_PAIR_RE = re.compile(r"^(?P<key>[^\s=;#\[][^=]*?)\s*=\s?(?P<value>.*?)\s*$")
_ANSI_RE = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")


# ---- records -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Phase:
    """One phase line: ``[RESULT]``/``[      ]`` name value unit ``: time`` secs ``seconds`` [``[INVALID]``]."""

    name: str
    value: float
    unit: str  # "GiB/s" (ior-*), "kIOPS" (mdtest-*, find, ...); "GB/s" only in pre-2020 output
    time_s: float
    scored: bool  # "[RESULT]" counts towards the score; "[      ]" (timestamp, extended extras) does not
    invalid: bool = False

    @property
    def kind(self) -> str:
        """``bandwidth`` or ``metadata``: IO500 derives the unit from the name the same way."""
        return "bandwidth" if self.unit.lower().endswith("b/s") else "metadata"

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "value": _json_float(self.value), "unit": self.unit,
                "time_s": _json_float(self.time_s), "scored": self.scored, "invalid": self.invalid,
                "kind": self.kind}


@dataclass(frozen=True)
class Score:
    """A ``[SCORE ]`` (standard) or ``[SCOREX]`` (extended) line."""

    extended: bool
    bandwidth: float  # geometric mean of the bandwidth phases
    iops: float  # geometric mean of the metadata phases, kIOPS
    total: float  # sqrt(bandwidth * iops)
    invalid: bool = False
    bandwidth_unit: str = "GiB/s"
    legacy: bool = False  # the pre-2020 "[SCORE INVALID] ... GB/s" form

    @property
    def label(self) -> str:
        return "SCOREX" if self.extended else "SCORE"

    def to_dict(self) -> dict[str, Any]:
        return {"bandwidth": _json_float(self.bandwidth), "bandwidth_unit": self.bandwidth_unit,
                "iops": _json_float(self.iops), "iops_unit": "kiops", "total": _json_float(self.total),
                "invalid": self.invalid, "extended": self.extended, "legacy": self.legacy}


@dataclass(frozen=True)
class InvalidNote:
    """An ``ERROR INVALID`` note: why IO500 declared a phase or the run invalid."""

    message: str
    source: str = ""  # "src/phase_ior.c:55" in the stdout form
    section: str = ""  # the result.txt section it was written in ("" for stdout / the preamble)

    def __str__(self) -> str:
        where = f"[{self.section}] " if self.section else ""
        return f"{where}{self.message}"


@dataclass(frozen=True)
class Io500Result:
    """Everything one IO500 run reported. Built by :func:`parse_summary` / :func:`load_result_dir`."""

    phases: tuple[Phase, ...] = ()
    score: Score | None = None
    score_extended: Score | None = None
    notes: tuple[InvalidNote, ...] = ()
    version: str = ""
    mode: str = ""
    result_dir: str = ""
    procs: int | None = None
    config_hash: str = ""
    # result.txt sections (phase name -> key -> value): exe, t_start, t_delta, t_end, ...
    details: Mapping[str, Mapping[str, str]] = field(default_factory=dict)

    def phase(self, name: str) -> Phase | None:
        return next((p for p in self.phases if p.name == name), None)

    @property
    def invalid_reasons(self) -> list[str]:
        """Every reason to distrust the run, in output order; empty means valid."""
        reasons: list[str] = []
        if self.score is None:
            reasons.append("no [SCORE ] line: the run did not finish")
        reasons += [f"phase {p.name} flagged [INVALID]" for p in self.phases if p.invalid]
        for score in (self.score, self.score_extended):
            if score is not None and score.invalid:
                reasons.append(f"[{score.label}] flagged INVALID")
        reasons += [f"ERROR INVALID: {note}" for note in self.notes]
        return list(dict.fromkeys(reasons))  # result.txt and stdout may repeat a note

    @property
    def valid(self) -> bool:
        """Stricter than IO500's own flag on purpose: any invalid phase or note (even of an optional,
        extended-only phase) makes the run invalid here; ``score.invalid`` keeps IO500's verdict."""
        return not self.invalid_reasons

    def to_dict(self) -> dict[str, Any]:
        """The common benchctl result format (JSON-safe: NaN/inf become None)."""
        return {
            "benchmark": "io500", "version": self.version, "mode": self.mode, "result_dir": self.result_dir,
            "procs": self.procs, "config_hash": self.config_hash,
            "phases": [p.to_dict() for p in self.phases],
            "score": self.score.to_dict() if self.score else {},
            "score_extended": self.score_extended.to_dict() if self.score_extended else {},
            "valid": self.valid, "invalid_reasons": self.invalid_reasons,
            "notes": [{"message": n.message, "source": n.source, "section": n.section} for n in self.notes],
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Io500Result:
        """Back from ``to_dict`` (a stored run.json): everything the table and the checks need."""
        def num(value: Any) -> float:
            return math.nan if value is None else float(value)

        def score(d: Any) -> Score | None:
            if not isinstance(d, Mapping) or not d:
                return None
            return Score(bool(d.get("extended")), num(d.get("bandwidth")), num(d.get("iops")), num(d.get("total")),
                         bool(d.get("invalid")), str(d.get("bandwidth_unit", "GiB/s")), bool(d.get("legacy")))

        phases = tuple(Phase(str(p.get("name", "")), num(p.get("value")), str(p.get("unit", "")),
                             num(p.get("time_s")), bool(p.get("scored")), bool(p.get("invalid")))
                       for p in data.get("phases") or [] if isinstance(p, Mapping))
        notes = tuple(InvalidNote(str(n.get("message", "")), str(n.get("source", "")), str(n.get("section", "")))
                      for n in data.get("notes") or [] if isinstance(n, Mapping))
        procs = data.get("procs")
        return cls(phases=phases, score=score(data.get("score")), score_extended=score(data.get("score_extended")),
                   notes=notes, version=str(data.get("version") or ""), mode=str(data.get("mode") or ""),
                   result_dir=str(data.get("result_dir") or ""), procs=procs if isinstance(procs, int) else None,
                   config_hash=str(data.get("config_hash") or ""))


# ---- line parsers ------------------------------------------------------------------------------


def _clean(line: str) -> str:
    return _ANSI_RE.sub("", line).rstrip("\r\n")


def _json_float(value: float) -> float | None:
    return value if math.isfinite(value) else None


def parse_phase_line(line: str) -> Phase | None:
    """A phase line, or None when ``line`` is not one."""
    m = _PHASE_RE.match(_clean(line).strip())
    if not m:
        return None
    unit = {"gib/s": "GiB/s", "kiops": "kIOPS", "gb/s": "GB/s"}[m["unit"].lower()]
    return Phase(name=m["name"], value=float(m["value"]), unit=unit, time_s=float(m["secs"]),
                 scored=m["tag"].upper() == "RESULT", invalid=m["invalid"] is not None)


def parse_score_line(line: str) -> Score | None:
    """A ``[SCORE ]``/``[SCOREX]``/``[SCORE INVALID]`` line, or None."""
    m = _SCORE_RE.match(_clean(line).strip())
    if not m:
        return None
    legacy = m["legacy_invalid"] is not None
    return Score(extended=(m["x"] or "").upper() == "X", bandwidth=float(m["bw"]), iops=float(m["iops"]),
                 total=float(m["total"]), invalid=legacy or m["invalid"] is not None,
                 bandwidth_unit=m["bw_unit"], legacy=legacy or m["bw_unit"] == "GB/s")


def parse_invalid_note(line: str, section: str = "") -> InvalidNote | None:
    """An ``ERROR INVALID`` line (stdout or result.txt form), or None."""
    m = _NOTE_RE.match(_clean(line).strip())
    if not m:
        return None
    return InvalidNote(message=m["msg"], source=m["source"] or "", section=section)


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

    result.txt does not say whether a phase is scored; phases with a ``score`` pair are taken as scored.
    Invalid = an ERROR INVALID note in that phase's section.
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
                            time_s=secs, scored=True, invalid=name in flagged))
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
