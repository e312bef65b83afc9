"""IO500 result records: phases, printed scores, invalidity notes, and a whole run (with the scores
recomputed by IO500's rule next to the printed ones). JSON-safe ``to_dict``/``from_dict`` for run.json."""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from benchctl.bench.io500 import rules


def json_float(value: float) -> float | None:
    return value if math.isfinite(value) else None


@dataclass(frozen=True)
class Phase:
    """One phase line: ``[RESULT]``/``[      ]`` name value unit ``: time`` secs ``seconds`` [``[INVALID]``]."""

    name: str
    value: float
    unit: str  # "GiB/s" (ior-*), "kIOPS" (mdtest-*, find, ...); "GB/s" in io500.sh output (2017-2019)
    time_s: float
    scored: bool  # printed "[RESULT]": counts towards [SCORE ] or only [SCOREX] -- see in_score / in_scorex
    invalid: bool = False
    decimals: int = 6  # digits after the point as printed (bounds the rounding when recomputing scores)
    group_hint: str = ""  # io500.sh's own "BW"/"IOPS" word, as "bandwidth"/"metadata"

    @property
    def rule(self) -> rules.PhaseRule:
        return rules.rule_for(self.name, tagged=self.scored, group=self.group_hint)

    @property
    def group(self) -> str:
        """``bandwidth``, ``metadata`` or "" (never scored), by IO500's rule for the phase."""
        return self.rule.group

    @property
    def in_score(self) -> bool:
        """Counts towards ``[SCORE ]`` (IO500's rule, not the line's tag)."""
        return self.rule.in_score

    @property
    def in_scorex(self) -> bool:
        """Counts towards ``[SCOREX]`` (extended mode: every scored phase, optional ones included)."""
        return self.rule.in_scorex

    @property
    def kind(self) -> str:
        """``bandwidth`` or ``metadata``: IO500 derives the unit from the name the same way."""
        return "bandwidth" if self.unit.lower().endswith("b/s") else "metadata"

    @property
    def gib_per_s(self) -> float | None:
        """A bandwidth in GiB/s whatever the unit printed (GB/s = 10^9 bytes/s); None for metadata phases."""
        if self.unit == "GiB/s":
            return self.value
        return self.value * 1e9 / 2**30 if self.unit == "GB/s" else None

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "value": json_float(self.value), "unit": self.unit,
                "time_s": json_float(self.time_s), "scored": self.scored, "invalid": self.invalid,
                "kind": self.kind, "in_score": self.in_score, "in_scorex": self.in_scorex,
                "decimals": self.decimals}


@dataclass(frozen=True)
class Score:
    """A ``[SCORE ]`` (standard) or ``[SCOREX]`` (extended) line."""

    extended: bool
    bandwidth: float  # geometric mean of the bandwidth phases
    iops: float  # geometric mean of the metadata phases, kIOPS
    total: float  # sqrt(bandwidth * iops)
    invalid: bool = False
    bandwidth_unit: str = "GiB/s"
    legacy: bool = False  # a pre-io500-sc20 form: "[SCORE INVALID]", "[SCORE-valid]", "[SCORE]", "GB/s"
    decimals: tuple[int, int, int] = (6, 6, 6)  # as printed: bandwidth, IOPS, TOTAL

    @property
    def label(self) -> str:
        return "SCOREX" if self.extended else "SCORE"

    def to_dict(self) -> dict[str, Any]:
        return {"bandwidth": json_float(self.bandwidth), "bandwidth_unit": self.bandwidth_unit,
                "iops": json_float(self.iops), "iops_unit": "kiops", "total": json_float(self.total),
                "invalid": self.invalid, "extended": self.extended, "legacy": self.legacy,
                "decimals": list(self.decimals)}


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
    """Everything one IO500 run reported. Built by ``parse.parse_summary`` / ``parse.load_result_dir``."""

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
    def recomputed(self) -> list[rules.Recomputed]:
        """Each printed score recomputed from the phases with IO500's formula (none without phases)."""
        out = []
        for score in (self.score, self.score_extended):
            if score is not None and (again := rules.recompute(self.phases, score)) is not None:
                out.append(again)
        return out

    @property
    def mismatches(self) -> list[str]:
        """Every printed score figure the phases do not add up to; empty when they all do."""
        return [m for again in self.recomputed for m in again.mismatches]

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
            "recomputed": {again.label: again.to_dict() for again in self.recomputed},
            "adds_up": not self.mismatches,
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
            decimals = d.get("decimals")
            digits = tuple(int(x) for x in decimals) if isinstance(decimals, list) and len(decimals) == 3 else (6,) * 3
            return Score(bool(d.get("extended")), num(d.get("bandwidth")), num(d.get("iops")), num(d.get("total")),
                         bool(d.get("invalid")), str(d.get("bandwidth_unit", "GiB/s")), bool(d.get("legacy")),
                         digits)  # type: ignore[arg-type]

        phases = tuple(Phase(str(p.get("name", "")), num(p.get("value")), str(p.get("unit", "")),
                             num(p.get("time_s")), bool(p.get("scored")), bool(p.get("invalid")),
                             int(p.get("decimals", 6)))
                       for p in data.get("phases") or [] if isinstance(p, Mapping))
        notes = tuple(InvalidNote(str(n.get("message", "")), str(n.get("source", "")), str(n.get("section", "")))
                      for n in data.get("notes") or [] if isinstance(n, Mapping))
        procs = data.get("procs")
        return cls(phases=phases, score=score(data.get("score")), score_extended=score(data.get("score_extended")),
                   notes=notes, version=str(data.get("version") or ""), mode=str(data.get("mode") or ""),
                   result_dir=str(data.get("result_dir") or ""), procs=procs if isinstance(procs, int) else None,
                   config_hash=str(data.get("config_hash") or ""))
