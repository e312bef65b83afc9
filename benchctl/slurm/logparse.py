"""Read what a job printed: benchctl's ``BENCHCTL_*`` markers, Slurm's own kill lines, and the line that
explains a failure.

Templates print ``BENCHCTL_HOST=``, ``BENCHCTL_IP=``, ``BENCHCTL_PORT=`` and ``BENCHCTL_READY=`` lines on
stdout; slurmstepd writes its kill lines to stderr. Every form its ``_handle_signal_container`` prints is read
(``src/slurmd/slurmstepd/req.c``), for a ``JOB N`` (the batch step) or a ``STEP N.M``, with or without
``ON node`` (releases before 19.05 left it out) and ``AT time`` (MeluXina's wrapper prints
``error: *** job N CANCELLED DUE TO TIME LIMIT ***``):

    *** JOB 12 ON n1 CANCELLED AT 2025-01-02T03:04:05 DUE TO TIME LIMIT ***      (PREEMPTION, JOB REQUEUE,
        NODE FAILURE, SEE SLURMCTLD LOG FOR DETAILS; 25.05: TASK FAILURE, "DUE to SIGNAL Terminated")
    *** JOB 12 ON n1 CANCELLED AT 2025-01-02T03:04:05 ***                        (scancel)
    *** STEP 12.0 ON n1 FAILED (non-zero exit code or other failure mode) ***
    *** JOB 12 ON n1 UNCORRECTABLE MEMORY ERROR AT 2025-01-02T03:04:05 ***
    *** REASON: <text> ***                                                       (details, when given)

and the memory kills of both accounting plugins (cgroup's ``Detected N oom_kill event(s)``, jobacct_gather's
``Job N exceeded memory limit (A > B), being killed``).

Everything here takes lines of text, never paths: the executor's ``JobFiles`` reads the files (on this
machine, or on a login node over SSH) and ``tracking.read_log_info`` feeds the lines in.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

_MARKER_RE = re.compile(r"^BENCHCTL_([A-Z_]+)=(.*)$")
_ANSI_RE = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")
_KILL_RE = re.compile(
    r"\*\*\* (?P<what>JOB|STEP) (?P<id>[\w.+]+)(?: ON (?P<node>\S+))? "
    r"(?:(?P<cancelled>CANCELLED)(?: AT (?P<at>\S+))?(?: DUE TO (?P<why>.+?))?"
    r"|(?P<failed>FAILED) \((?P<failure>[^)]*)\)"
    r"|(?P<ume>UNCORRECTABLE MEMORY ERROR)(?: AT (?P<ume_at>\S+))?) \*\*\*",
    re.IGNORECASE,
)
_REASON_RE = re.compile(r"\*\*\* REASON: (?P<reason>.*?) \*\*\*")
_OOM_RE = re.compile(r"Detected \d+ oom[_-]kill event|oom-kill|Out Of Memory|exceeded (?:job |step )?memory limit",
                     re.IGNORECASE)


@dataclass
class LogInfo:
    """What the log files told us; empty fields mean "not printed (yet)"."""

    markers: dict[str, str] = field(default_factory=dict)
    time_limit_line: str = ""
    cancelled_line: str = ""  # any other slurmstepd kill line (the first one: it says why)
    cancel_reason: str = ""  # "node failure", "preemption", "signal Terminated", ... ("" for a plain scancel)
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


def _kill_reason(m: re.Match[str]) -> str:
    """What a kill line says happened, in a few words: "time limit", "node failure", "signal Terminated"..."""
    if m["failed"]:
        return f"failed ({m['failure']})"
    if m["ume"]:
        return "uncorrectable memory error"
    why = (m["why"] or "").strip()
    if why.upper().startswith("NODE FAILURE"):
        return "node failure"
    if why.upper().startswith("SIGNAL "):
        return "signal " + why[7:]  # the signal's name as Slurm printed it ("Terminated")
    return why.lower()


def parse_lines(lines: list[str], info: LogInfo | None = None) -> LogInfo:
    """Fold log lines into ``info``; later markers override earlier ones (a requeued job prints them again)."""
    info = info or LogInfo()
    for raw in lines:
        line = _ANSI_RE.sub("", raw).rstrip("\r\n")
        m = _MARKER_RE.match(line.strip())
        if m:
            info.markers[m.group(1)] = m.group(2).strip()
            continue
        if "***" in line:
            kill = _KILL_RE.search(line)
            if kill:
                reason = _kill_reason(kill)
                if reason == "time limit":
                    info.time_limit_line = line.strip()
                elif not info.cancelled_line:
                    info.cancelled_line, info.cancel_reason = line.strip(), reason
                continue
            detail = _REASON_RE.search(line)
            if detail and not info.cancel_reason:
                info.cancel_reason = detail["reason"].strip()
                continue
        if _OOM_RE.search(line):
            info.oom_line = line.strip()
    return info


# ---- the root cause of a failure ------------------------------------------------------------------------
# A log prefix some launchers add: "(APIServer pid=952263) ", "(EngineCore_DP0 pid=3110) ", "vllm1-1  | ",
# "[rank0]: ", "slurmstepd: error: ".
_PREFIX_RE = re.compile(r"^(?:\S+\s+\|\s+)?(?:\([\w.\-]+ pid=\d+\)\s*)?(?:\[rank\d+\]:\s*)?")
# A Python exception line: "ValueError: ...", "vllm.v1.engine.exceptions.EngineDeadError: ...", possibly after
# a logger's prefix ("ERROR 11-23 03:52:40 [core.py:1120] ValueError: ...").
_EXC_RE = re.compile(r"(?:^|\s)((?:[A-Za-z_][\w]*\.)*(?:[A-Z]\w*)?(?:Error|Exception|Exit|Interrupt|Failure): .*)$")
_WARNING_RE = re.compile(r"(?:^|\s)(?:[\w.]+\.)?\w*Warning: ")
# Exceptions that only point elsewhere ("See root cause above", vLLM's EngineDeadError "See stack trace (above)
# for the root cause"): the cause is the exception before them.
_POINTER_RE = re.compile(r"root cause above|see (?:the )?stack trace|see above|see the (?:error|log)s? above",
                         re.IGNORECASE)
# What a dying Python (and MPI, NCCL) prints after the cause: never the answer.
_NOISE_RE = re.compile(
    r"resource_tracker|leaked (?:semaphore|shared_memory)|warnings\.warn\(|destroy_process_group\(\)"
    r"|^\s*(?:\^|~)+\s*$|^Traceback \(most recent call last\)|^\s*File \"|^During handling of the above"
    r"|^The above exception was the direct cause|^BENCHCTL_|ERR99999 UNKNOWN", re.IGNORECASE)


def _clean(line: str) -> str:
    return _PREFIX_RE.sub("", _ANSI_RE.sub("", line).rstrip("\r\n")).strip()


def last_error(lines: list[str]) -> str:
    """The line that explains a failure, chosen by what it is, not by where it stands.

    Warnings and a dying Python's shutdown noise are never the answer. benchctl's own diagnostics
    (``benchctl: ...``) win when they come last. Otherwise the last exception of the log is the cause; one that
    only points "above" (vLLM: "See root cause above", EngineDeadError's "See stack trace (above)") is followed
    to the exception before it, which comes first. A log without exceptions: its last line.
    """
    cleaned = [c for line in lines if (c := _clean(line)) and not _NOISE_RE.search(c) and not _WARNING_RE.search(c)]
    if not cleaned:
        return ""
    last = cleaned[-1]
    if last.startswith("benchctl:") and not _POINTER_RE.search(last):
        return last
    errors = [m.group(1).strip() for line in cleaned if (m := _EXC_RE.search(line))]
    pointer = errors[-1] if errors and _POINTER_RE.search(errors[-1]) else (last if _POINTER_RE.search(last) else "")
    if pointer:
        causes = [e for e in errors if not _POINTER_RE.search(e)]
        if causes:
            return f"{causes[-1]} (then {pointer})"
    return errors[-1] if errors else last
