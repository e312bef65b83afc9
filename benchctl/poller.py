"""One background thread that keeps the job table fresh for the toolbar and completer.

One scheduler query per round for all active jobs. The interval adapts: short while jobs change (pending,
starting), long when everything is stable, and backs off when the scheduler does not answer. State changes
are announced as single lines (printed above the prompt thanks to ``patch_stdout``).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from typing import TYPE_CHECKING

from benchctl.executors.base import ExecutorError
from benchctl.jobs import Job
from benchctl.services.server import Server
from benchctl.slurm.states import JobState
from benchctl.tracking import refresh_jobs

if TYPE_CHECKING:
    from benchctl.app import App

log = logging.getLogger(__name__)

MAX_INTERVAL = 30.0
RECHECK_READY = 30.0  # seconds between re-checks of a job that is ready
MAX_BACKOFF = 120.0


class Poller:
    def __init__(self, app: App, interval: float, on_change: Callable[[], None] | None = None) -> None:
        self.app = app
        self.base = max(0.5, interval)
        self.on_change = on_change or (lambda: None)
        self.error = ""
        self.failures = 0
        self._checked: dict[str, float] = {}  # job id -> when its readiness was last checked
        self._stop = threading.Event()
        self._wake = threading.Event()
        self._thread = threading.Thread(target=self._run, name="benchctl-poller", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._wake.set()
        self._thread.join(timeout=5)

    def poke(self) -> None:
        """Poll now (after a command changed something)."""
        self._wake.set()

    def _run(self) -> None:
        while not self._stop.is_set():
            delay = self.poll_once()
            self._wake.wait(delay)
            self._wake.clear()

    def poll_once(self) -> float:
        """One round; returns the delay before the next."""
        if self.app.jobs.sync():
            self.on_change()
        jobs = [j for j in self.app.jobs.active() if self.app.owns(j)]
        if not jobs:
            return self.base * 2
        try:
            updated = refresh_jobs(self.app.executor, self.app.jobs, jobs)
        except ExecutorError as exc:
            self.failures += 1
            self.error = f"scheduler not answering ({self.failures}x)"
            log.info("poll failed: %s", exc)
            self.on_change()
            return float(min(self.base * 2.0 ** self.failures, MAX_BACKOFF))
        except Exception:  # never let a bug kill the thread silently
            log.exception("poller round failed")
            return MAX_INTERVAL
        if self.error:
            self.error, self.failures = "", 0
        changed = False
        now = time.monotonic()
        for old in jobs:
            new = updated.get(old.id, old)
            # Not ready yet: probe every round. Ready: re-check now and then (cheaply), since a service can
            # stop or stop answering while its job lives on.
            due = not new.ready or now - self._checked.get(new.id, 0.0) >= RECHECK_READY
            if new.state is JobState.RUNNING and new.port and due:
                try:
                    service = self.app.service(new.service)
                    if isinstance(service, Server):
                        new = service.check_health(new)
                        self._checked[new.id] = now
                except Exception:
                    log.exception("readiness probe failed")
            if (new.state, new.ready, new.health) != (old.state, old.ready, old.health):
                changed = True
                self.announce(old.state, new)
        if changed:
            self.on_change()
        settling = any(j.state is not JobState.RUNNING or not j.ready for j in self.app.jobs.active())
        return self.base if settling else MAX_INTERVAL

    def announce(self, before: JobState, job: Job) -> None:
        where = f" on {job.host or job.nodes}" if (job.host or job.nodes) else ""
        if job.health and before is job.state:
            text = f"[{job.service} job {job.id}] {job.health}{where}"
        elif job.ready and before is job.state:
            text = f"[{job.service} job {job.id}] ready{where}"
        else:
            text = f"[{job.service} job {job.id}] {before.value} → {job.state.value}{where}"
            if job.reason and job.state is JobState.PENDING:
                text += f" ({job.reason})"
            if job.ready:
                text += ", ready"
        self.app.ui.text(text, style="cyan")
