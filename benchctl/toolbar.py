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


def _width() -> int:
    try:
        from prompt_toolkit.application import get_app

        return int(get_app().output.get_size().columns)
    except Exception:  # no running application (tests): a generous width
        return 200


def make_toolbar(app: App, poller: Poller | None = None,
                 width: Callable[[], int] = _width) -> Callable[[], StyleAndTextTuples]:
    """The toolbar fits the terminal: whole job entries only (never cut mid-word), then "+N more"; the key
    hint goes first when space is short."""

    def toolbar() -> StyleAndTextTuples:
        room = width() - 1
        head = ("class:toolbar", f" {app.executor_name} ")
        tail: list[tuple[str, str]] = []
        if poller is not None and poller.error:
            tail.append(("class:toolbar.error", f"| {poller.error} "))
        hint = ("class:toolbar", "| Tab completes, Ctrl-D exits ")
        jobs = [j for j in app.jobs.active() if app.owns(j, connect=False)]
        entries: list[tuple[str, str]] = []
        for job in jobs[-MAX_JOBS:]:
            state = "ready" if job.ready else (job.health or job.state.value)
            style = ("class:toolbar.ready" if job.ready else "class:toolbar.error" if job.health
                     else _STYLE.get(job.state, "class:toolbar.other"))
            where = f"@{job.host or job.nodes}" if (job.host or job.nodes) else ""
            entries.append((style, f"| {job.service}:{job.id} {state}{where} "))
        if not jobs:
            entries.append(("class:toolbar", "| no active jobs "))

        def size(parts: list[tuple[str, str]]) -> int:
            return sum(len(text) for _, text in parts)

        shown: list[tuple[str, str]] = [head]
        for n, entry in enumerate(entries):
            left = len(jobs) - n - 1 if jobs else 0
            more = [("class:toolbar", f"| +{left} more ")] if left else []
            if size(shown) + len(entry[1]) + size(more) + size(tail) > room:
                hidden = len(entries) - n + max(0, len(jobs) - MAX_JOBS)
                shown.append(("class:toolbar", f"| +{hidden} more "))
                break
            shown.append(entry)
        else:
            if len(jobs) > MAX_JOBS:
                shown.append(("class:toolbar", f"| +{len(jobs) - MAX_JOBS} more "))
        shown += tail
        if size(shown) + len(hint[1]) <= room:
            shown.append(hint)
        if size(shown) > room:  # even the essentials do not fit: cut the end, visibly
            text = "".join(t for _, t in shown)[: max(1, room - 1)] + "…"
            return [("class:toolbar", text)]
        # prompt_toolkit styles the spans; entries carry their own separators (styled like the entry)
        return [(style, text) for style, text in shown]

    return toolbar
