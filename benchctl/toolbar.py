"""Bottom toolbar: live state of tracked jobs, from the cached job table only (it runs on every redraw)."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

from prompt_toolkit.formatted_text import StyleAndTextTuples

from benchctl.slurm.states import JobState

if TYPE_CHECKING:
    from benchctl.app import App
    from benchctl.poller import Poller

_STYLE = {JobState.RUNNING: "class:toolbar.running", JobState.PENDING: "class:toolbar.pending"}
MAX_JOBS = 6


def make_toolbar(app: App, poller: Poller | None = None) -> Callable[[], StyleAndTextTuples]:
    def toolbar() -> StyleAndTextTuples:
        parts: StyleAndTextTuples = [("class:toolbar", f" {app.executor_name} ")]
        jobs = [j for j in app.jobs.active() if j.executor == app.executor_name]
        if not jobs:
            parts.append(("class:toolbar", "| no active jobs "))
        for job in jobs[-MAX_JOBS:]:
            state = "ready" if job.ready else (job.health or job.state.value)
            style = ("class:toolbar.ready" if job.ready else "class:toolbar.error" if job.health
                     else _STYLE.get(job.state, "class:toolbar.other"))
            where = f"@{job.host or job.nodes}" if (job.host or job.nodes) else ""
            parts.append(("class:toolbar", "| "))
            parts.append((style, f"{job.service}:{job.id} {state}{where} "))
        if len(jobs) > MAX_JOBS:
            parts.append(("class:toolbar", f"| +{len(jobs) - MAX_JOBS} more "))
        if poller is not None and poller.error:
            parts.append(("class:toolbar.error", f"| {poller.error} "))
        parts.append(("class:toolbar", "| Tab completes, Ctrl-D exits "))
        return parts

    return toolbar
