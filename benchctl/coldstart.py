"""Cold-start figures of a job from its own log: how long it queued, pulled or checked its image, and took
from start to ready -- what a user waits for before the first request, and what a report compares.

The batch script prints ``BENCHCTL_T_STARTED``, ``BENCHCTL_T_IMAGE`` (after the image step, with
``BENCHCTL_PULLED`` when it pulled) and ``BENCHCTL_T_READY`` as epoch seconds on the node's clock; the
submission time is benchctl's. Both clocks are NTP-synchronised on a cluster; a negative queue time (a skewed
clock) is shown as unknown rather than as a negative wait.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass


def _t(markers: Mapping[str, str], key: str) -> float | None:
    try:
        return float(markers[key])
    except (KeyError, ValueError):
        return None


def seconds(value: float) -> str:
    """``8.2 s``, ``1m52s``, ``2h03m``: short, for one line at 80 columns."""
    if value < 60:
        return f"{value:.1f} s"
    minutes, secs = divmod(round(value), 60)
    if minutes < 60:
        return f"{minutes}m{secs:02d}s"
    return f"{minutes // 60}h{minutes % 60:02d}m"


@dataclass(frozen=True)
class ColdStart:
    """Durations in seconds (None: not known yet, or not measurable)."""

    queued: float | None  # submitted -> the batch script's first line
    image: float | None  # started -> the image pulled or found (None: no container)
    pulled: bool  # the image was pulled by this job (not found in the SIF cache)
    to_ready: float | None  # image ready (or started) -> the service answered
    total: float | None  # submitted -> ready

    def line(self) -> str:
        parts = []
        if self.queued is not None:
            parts.append(f"queued {seconds(self.queued)}")
        if self.image is not None:
            parts.append(f"image {seconds(self.image)} ({'pulled' if self.pulled else 'cached'})")
        if self.to_ready is not None:
            parts.append(f"start to ready {seconds(self.to_ready)}")
        if self.total is not None:
            parts.append(f"total {seconds(self.total)}")
        return " · ".join(parts)

    def to_dict(self) -> dict[str, float | bool | None]:
        return {"queued_s": self.queued, "image_s": self.image, "pulled": self.pulled,
                "start_to_ready_s": self.to_ready, "total_s": self.total}


def cold_start(submitted_at: float, markers: Mapping[str, str]) -> ColdStart | None:
    """The figures known so far (None before the job started)."""
    started = _t(markers, "T_STARTED")
    if started is None:
        return None
    image, ready = _t(markers, "T_IMAGE"), _t(markers, "T_READY")
    queued = started - submitted_at
    return ColdStart(
        queued=queued if queued >= 0 else None,
        image=image - started if image is not None else None,
        pulled="PULLED" in markers,
        to_ready=ready - (image if image is not None else started) if ready is not None else None,
        total=ready - submitted_at if ready is not None and ready >= submitted_at else None,
    )


__all__ = ["ColdStart", "cold_start", "seconds"]
