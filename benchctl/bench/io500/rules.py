"""IO500's own rules: which phase counts towards which score, and the score formula, to recompute what a
result directory printed and say when it does not add up.

From IO500's ``src/main.c`` and ``src/phase_*.c`` (io500-sc22 and later): every phase has a group (``BW``,
``MD`` or ``NO SCORE``) and may be flagged optional (run in extended mode only). ``calc_score`` takes, per
group, the geometric mean of the phases whose score is > 0 (``[SCORE ]``: the non-optional ones; ``[SCOREX]``:
all of them), and TOTAL = sqrt(BW * MD). A phase is printed ``[RESULT]`` iff its group is not ``NO SCORE`` --
so an optional ``[RESULT]`` phase counts for ``[SCOREX]`` only.

The io500.sh releases of 2017-2019 and the first C release (ISC20) printed the twelve standard phases
(``ior_easy_write``, ``mdtest_hard_stat``, ... with underscores) and took the geometric mean of all of them,
zeros included (a phase scoring 0 makes the group 0, as IO500's ISC20 S3 example shows).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from benchctl.bench.io500.records import Phase, Score

BANDWIDTH, METADATA = "bandwidth", "metadata"


@dataclass(frozen=True)
class PhaseRule:
    """How IO500 scores one phase. ``group`` "" = never scored (IO500's ``NO SCORE``)."""

    group: str
    optional: bool = False  # extended mode only: counts for [SCOREX], not for [SCORE ]
    known: bool = True  # False: a phase this table does not list (a newer IO500); its tag decided

    @property
    def in_score(self) -> bool:
        return bool(self.group) and not self.optional

    @property
    def in_scorex(self) -> bool:
        return bool(self.group)


_BW, _MD = PhaseRule(BANDWIDTH), PhaseRule(METADATA)
RULES: dict[str, PhaseRule] = {
    "ior-easy-write": _BW, "ior-hard-write": _BW, "ior-easy-read": _BW, "ior-hard-read": _BW,
    "mdtest-easy-write": _MD, "mdtest-hard-write": _MD, "find": _MD, "mdtest-easy-stat": _MD,
    "mdtest-hard-stat": _MD, "mdtest-easy-delete": _MD, "mdtest-hard-read": _MD, "mdtest-hard-delete": _MD,
    # extended mode: scored for [SCOREX] only
    "find-easy": PhaseRule(METADATA, optional=True), "find-hard": PhaseRule(METADATA, optional=True),
    "mdworkbench-bench": PhaseRule(METADATA, optional=True),
    # printed "[      ]": measured, never scored
    "timestamp": PhaseRule(""), "ior-rnd4K-easy-read": PhaseRule(""), "mdworkbench-create": PhaseRule(""),
    "mdworkbench-delete": PhaseRule(""),
}


def canonical(name: str) -> str:
    """io500.sh's ``ior_easy_write`` is today's ``ior-easy-write``."""
    return name.replace("_", "-")


def rule_for(name: str, *, tagged: bool = False, group: str = "") -> PhaseRule:
    """IO500's rule for ``name``. A phase missing from the table (a newer release) is scored as its line was
    tagged (``[RESULT]``), in the group its line gave (io500.sh's ``BW``/``IOPS``) or its unit implies."""
    rule = RULES.get(canonical(name))
    if rule is not None:
        return rule
    if not tagged:
        return PhaseRule("", known=False)
    return PhaseRule(group or (BANDWIDTH if name.startswith("i") else METADATA), known=False)


@dataclass(frozen=True)
class Recomputed:
    """One printed score line next to the score recomputed from the parsed phases."""

    label: str  # "SCORE" | "SCOREX"
    bandwidth: float
    iops: float
    total: float
    printed: Score
    tolerance: tuple[float, float, float]  # what the printed digits allow, per figure

    @property
    def mismatches(self) -> list[str]:
        """``"SCORE bandwidth 4.761314 printed, 1.313245 recomputed"``, one per figure that does not add up."""
        out = []
        for what, mine, theirs, tol, digits in zip(
                ("bandwidth", "IOPS", "TOTAL"), (self.bandwidth, self.iops, self.total),
                (self.printed.bandwidth, self.printed.iops, self.printed.total), self.tolerance, self.printed.decimals,
                strict=True):
            if not (math.isfinite(mine) and math.isfinite(theirs)) or abs(mine - theirs) > tol:
                out.append(f"{self.label} {what} {theirs:.{digits}f} printed, {mine:.{digits}f} recomputed")
        return out

    @property
    def matches(self) -> bool:
        return not self.mismatches

    def to_dict(self) -> dict[str, object]:
        def num(v: float) -> float | None:
            return v if math.isfinite(v) else None
        return {"bandwidth": num(self.bandwidth), "iops": num(self.iops), "total": num(self.total),
                "matches": self.matches, "mismatches": self.mismatches}


def _half_ulp(value: float, decimals: int) -> float:
    """Relative error of a value printed with ``decimals`` decimals."""
    return (0.5 * 10.0 ** -decimals) / abs(value) if value else math.inf


def _geomean(phases: Sequence[Phase], *, skip_nonpositive: bool) -> tuple[float, float]:
    """(geometric mean, its relative uncertainty from the printed digits); (0, 0) for no phases."""
    values = [p for p in phases if p.value > 0] if skip_nonpositive else list(phases)
    if not values:
        return 0.0, 0.0
    if any(not math.isfinite(p.value) for p in values):
        return math.nan, 0.0
    if any(p.value <= 0 for p in values):
        return 0.0, 0.0
    log_sum = sum(math.log(p.value) for p in values)
    rel = sum(_half_ulp(p.value, p.decimals) for p in values) / len(values)
    return math.exp(log_sum / len(values)), rel


def recompute(phases: Iterable[Phase], printed: Score) -> Recomputed | None:
    """Recompute ``printed`` from ``phases`` with the rule of the release that printed it; None without any
    scored phase (nothing to recompute from)."""
    members = [p for p in phases if (p.in_scorex if printed.extended else p.in_score)]
    if not members:
        return None
    skip = not printed.legacy  # io500-sc20 and later skip phases scoring <= 0; older releases did not
    bw, bw_rel = _geomean([p for p in members if p.group == BANDWIDTH], skip_nonpositive=skip)
    md, md_rel = _geomean([p for p in members if p.group == METADATA], skip_nonpositive=skip)
    total = math.sqrt(bw * md) if bw >= 0 and md >= 0 else math.nan
    slack = 1.01  # the error bound is first-order; keep a hair of room
    half = [0.5 * 10.0 ** -d for d in printed.decimals]
    tolerance = (bw * bw_rel * slack + half[0], md * md_rel * slack + half[1],
                 total * (bw_rel + md_rel) / 2 * slack + half[2])
    return Recomputed("SCOREX" if printed.extended else "SCORE", bw, md, total, printed, tolerance)
