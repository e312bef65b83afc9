"""Read what a job printed: benchctl's ``BENCHCTL_*`` markers and Slurm's own kill lines.

Templates print ``BENCHCTL_HOST=``, ``BENCHCTL_IP=``, ``BENCHCTL_PORT=`` and ``BENCHCTL_READY=`` lines on
stdout; slurmstepd writes cancel/time-limit lines to stderr. MeluXina's form of the time-limit line is
``error: *** job N CANCELLED DUE TO TIME LIMIT ***``; upstream prints
``*** JOB N ON node CANCELLED AT time DUE TO TIME LIMIT ***`` -- both are recognised.

Everything here takes lines of text, never paths: the executor's ``JobFiles`` reads the files (on this
machine, or on a login node over SSH) and ``tracking.read_log_info`` feeds the lines in.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

_MARKER_RE = re.compile(r"^BENCHCTL_([A-Z_]+)=(.*)$")
_ANSI_RE = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")
_TIME_LIMIT_RE = re.compile(
    r"\*\*\* (?:JOB|job|STEP|step) (?P<id>[\d._+]+)(?: ON (?P<node>\S+))? CANCELLED"
    r"(?: AT (?P<at>\S+))? DUE TO TIME LIMIT \*\*\*"
)
_CANCELLED_RE = re.compile(
    r"\*\*\* (?:JOB|job) (?P<id>[\d_+]+)(?: ON (?P<node>\S+))? CANCELLED"
    r"(?: AT (?P<at>\S+))?(?: DUE TO (?P<why>[A-Z ]+))? \*\*\*"
)
_OOM_RE = re.compile(r"Detected \d+ oom[_-]kill event|oom-kill|Out Of Memory", re.IGNORECASE)


@dataclass
class LogInfo:
    """What the log files told us; empty fields mean "not printed (yet)"."""

    markers: dict[str, str] = field(default_factory=dict)
    time_limit_line: str = ""
    cancelled_line: str = ""
    oom_line: str = ""

    @property
    def host(self) -> str:
        return self.markers.get("HOST", "")

    @property
    def node(self) -> str:
        return self.markers.get("NODE", "") or self.host

    @property
    def ip(self) -> str:
        return self.markers.get("IP", "")

    @property
    def port(self) -> int | None:
        value = self.markers.get("PORT", "")
        return int(value) if value.isdigit() else None

    @property
    def ready(self) -> bool:
        return bool(self.markers.get("READY"))

    @property
    def hit_time_limit(self) -> bool:
        return bool(self.time_limit_line)


def parse_lines(lines: list[str], info: LogInfo | None = None) -> LogInfo:
    """Fold log lines into ``info``; later markers override earlier ones (a requeued job prints them again)."""
    info = info or LogInfo()
    for raw in lines:
        line = _ANSI_RE.sub("", raw).rstrip("\r\n")
        m = _MARKER_RE.match(line.strip())
        if m:
            info.markers[m.group(1)] = m.group(2).strip()
            continue
        if "CANCELLED" in line:
            if _TIME_LIMIT_RE.search(line):
                info.time_limit_line = line.strip()
            elif _CANCELLED_RE.search(line):
                info.cancelled_line = line.strip()
        elif _OOM_RE.search(line):
            info.oom_line = line.strip()
    return info


# A Python exception line ("ValueError: …", "vllm.x.EngineDeadError: …"), possibly behind a log prefix.
_EXC_RE = re.compile(r"(?:^|\s)((?:[A-Za-z_][\w.]*\.)?[A-Z]\w*(?:Error|Exception): .*)$")
# Wrapper exceptions that only point elsewhere: the cause is the exception before them.
_POINTER_RE = re.compile(r"root cause above|see above|see the (?:error|log)s? above", re.IGNORECASE)


def last_error(lines: list[str]) -> str:
    """The line that explains a failure: the last non-blank line, except when that is an exception that only
    points "above" (vLLM: "Engine core initialization failed. See root cause above"): then the exception
    before it is the cause, and comes first."""
    # benchctl's own markers (BENCHCTL_EXITED=1, ...) say what happened, not why.
    cleaned = [c for line in lines if not (c := _ANSI_RE.sub("", line).strip()).startswith("BENCHCTL_")]
    last = next((line for line in reversed(cleaned) if line), "")
    if _POINTER_RE.search(last) and _EXC_RE.search(last):
        errors = [m.group(1).strip() for line in cleaned[:-1] if (m := _EXC_RE.search(line))]
        causes = [e for e in errors if not _POINTER_RE.search(e)]
        if causes:
            return f"{causes[-1]} (then {last})"
    return last
