"""The server's timeline during ``bench``: its Prometheus ``/metrics`` scraped every ``--server-metrics-interval``
seconds into ``server_metrics.jsonl`` in the run folder, one JSON line per successful scrape::

    {"t": <Unix s>, "elapsed": <s since the sampler started>, "point": "<sweep point or ''>",
     "target": "server", "values": {"vllm:num_requests_running{model_name=\\"m\\"}": 4.0, ...}}

Only the series of the target's family are kept (``timeline.Family``: vLLM's ``vllm:*`` without histogram
buckets, Qdrant's own families, short allow-lists for node-exporter and DCGM when a caller adds them as
extra targets); the kind marks each sweep point's window (``point``) and gets its summary (``summary``).

Design, chosen so the sampler does not move the client's numbers: one daemon thread per target doing
blocking HTTP (``benchctl.http``: the socket wait releases the GIL) and picking the wanted lines with
``str`` methods before parsing them (``select``), so the thread holds the GIL for a fraction of a
millisecond per scrape while the asyncio load generator times chunks on the main thread.
``scripts/bench_sampler.py`` measures what it adds to TTFT (off / 1 s / 0.1 s). A subprocess would not
share the GIL at all, but costs a process start per run, a second interpreter on the client's cores and
signal plumbing, for a difference the measurement does not show.

Faults never reach the benchmark: a failed scrape (HTTP error, no connection, no answer within the
timeout, a page without the family's series) writes nothing and is counted per kind; ``stop`` does not
wait for a frozen server (the thread is a daemon and its late answer is dropped). Lines are appended and
flushed as they come, so Ctrl-C or SIGTERM keep everything sampled until then.
"""

from __future__ import annotations

import json
import math
import os
import re
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

from benchctl.bench.llm.server_metrics import RENAMED
from benchctl.bench.timeline import FAMILIES, TIMELINE_FILE, Family, pooled, summarize_window
from benchctl.http import http_get
from benchctl.redact import mask_learned

PAGE_LIMIT = 8 << 20  # a runaway page is cut here (vLLM's is ~100 KiB)
TIMEOUT = 2.0  # per scrape (at least the interval): a loaded server may answer /metrics late, not wrongly
JOIN_WAIT = 0.2  # how long stop() waits for a thread stuck on a frozen server before leaving it behind


@dataclass(frozen=True)
class ScrapeTarget:
    """One /metrics page: ``name`` in the timeline's lines, the full URL, what to keep from it."""

    name: str
    url: str
    family: Family
    headers: Mapping[str, str] = field(default_factory=dict, repr=False)  # credentials: never recorded


@dataclass
class Window:
    """A sweep point's stretch of the timeline, in seconds since the sampler started."""

    label: str
    start: float
    end: float | None = None


@dataclass
class _Tally:
    scrapes: int = 0
    failed: int = 0
    errors: Counter[str] = field(default_factory=Counter)
    cpu_s: float = 0.0
    waiting: bool = False  # a scrape is out (a frozen server holds it until the timeout)


# name, {labels} (a quoted value may hold braces: Qdrant's endpoint="/collections/{name}/points"), value
_SAMPLE = re.compile(r'([A-Za-z_:][A-Za-z0-9_:]*)(\{(?:[^"}]|"(?:[^"\\]|\\.)*")*\})?[ \t]+(\S+)')
_SKIPPED = ("_bucket", "_created")  # histogram buckets (most of vLLM's page) and prometheus_client's stamps


def select(text: str, prefixes: tuple[str, ...]) -> dict[str, float]:
    """The series of a page whose names start with ``prefixes``, without histogram buckets and ``_created``
    stamps, as ``{name{labels}: value}``; an older vLLM's names under today's (as
    ``server_metrics.parse_metrics`` reads them); non-finite values left out (they are not JSON).

    Lines are picked by their name's start and end with ``str`` methods before a regular expression parses
    the few kept ones: ~0.3 ms on a vLLM-sized page (75 KiB, 700 bucket lines), where one multi-line pattern
    took 1.1 ms and matching every line first 1.8 ms -- time this thread holds the GIL the event loop needs."""
    out: dict[str, float] = {}
    renamed: dict[str, float] = {}
    for line in text.split("\n"):
        if not line.startswith(prefixes):
            continue
        cut = line.find("{")
        if line[:cut if cut > 0 else line.find(" ")].endswith(_SKIPPED):  # the name's end, before any matching
            continue
        m = _SAMPLE.match(line)
        if m is None:
            continue
        name, labels, raw = m.group(1), m.group(2) or "", m.group(3)
        try:
            value = float(raw)
        except ValueError:
            continue
        if not math.isfinite(value):
            continue
        for old, new in RENAMED.items():
            if name == old or name.startswith(old + "_"):
                renamed[new + name[len(old):] + labels] = value
                break
        else:
            out[name + labels] = value
    for key, value in renamed.items():
        out.setdefault(key, value)  # today's name wins when a server exposes both
    return out


class Sampler:
    """Scrapes ``targets`` every ``interval`` seconds from its own threads while a benchmark runs. With no
    targets (interval 0, a server without /metrics) it does nothing, writes nothing and records nothing, so
    the kinds use it unconditionally. The first target's family figures are kept for the point summaries."""

    def __init__(self, folder: Path, targets: Sequence[ScrapeTarget], interval: float) -> None:
        self.path = folder / TIMELINE_FILE
        self.interval = interval
        self.targets = list(targets) if interval > 0 else []
        self.timeout = max(TIMEOUT, interval)
        self.windows: list[Window] = []
        self.write_error = ""
        self._lock = threading.Lock()  # the file, the tallies, the samples, the current label
        self._stop = threading.Event()
        self._closed = False
        self._file: IO[str] | None = None
        self._label = ""
        self._tally = {t.name: _Tally() for t in self.targets}
        self._samples: list[tuple[float, dict[str, float]]] = []  # (elapsed, pooled figures) of targets[0]
        self._threads: list[threading.Thread] = []
        self._t0, self._t0_wall = time.monotonic(), time.time()

    @classmethod
    def for_server(cls, folder: Path, url: str, family: str, interval: float,
                   headers: Mapping[str, str] | None = None, extra: Sequence[ScrapeTarget] = ()) -> Sampler:
        """The sampler of a run against ``url`` whose /metrics is of ``family`` ('' or unknown: the server has
        none, so only ``extra`` targets -- node-exporter, DCGM exporter URLs a caller gives -- are sampled)."""
        kept = FAMILIES.get(family) if family else None
        server = [ScrapeTarget("server", url.rstrip("/") + "/metrics", kept, dict(headers or {}))] if kept and url \
            else []
        return cls(folder, [*server, *extra], interval)

    # ---- life ------------------------------------------------------------------------------------
    def start(self) -> Sampler:
        self._t0, self._t0_wall = time.monotonic(), time.time()
        for target in self.targets:
            thread = threading.Thread(target=self._loop, args=(target, target is self.targets[0]), daemon=True,
                                      name=f"bench-sampler-{target.name}")
            thread.start()
            self._threads.append(thread)
        return self

    def stop(self) -> None:
        """Stop the threads and close the file (idempotent). A thread waiting on a frozen server is not waited
        for: its late answer finds the file closed and is dropped."""
        self._stop.set()
        deadline = time.monotonic() + JOIN_WAIT
        for thread in self._threads:
            thread.join(max(0.0, deadline - time.monotonic()))
        with self._lock:
            if not self._closed:
                for tally in self._tally.values():
                    if tally.waiting:  # left behind on a frozen server: a failure, said like the others
                        tally.scrapes, tally.failed = tally.scrapes + 1, tally.failed + 1
                        tally.errors["no answer"] += 1
            self._closed = True
            if self._file is not None:
                try:
                    self._file.close()
                except OSError as exc:
                    self.write_error = self.write_error or str(exc)
                self._file = None

    def __enter__(self) -> Sampler:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # ---- the kinds' side -------------------------------------------------------------------------
    def elapsed(self) -> float:
        return time.monotonic() - self._t0

    @contextmanager
    def point(self, label: str) -> Iterator[Window]:
        """Scrapes during the block carry ``label``; the window is kept for ``summary``."""
        with self._lock:
            window = Window(label, self.elapsed())
            self.windows.append(window)
            self._label = label
        try:
            yield window
        finally:
            with self._lock:
                window.end = self.elapsed()
                self._label = ""

    def summary(self, window: Window) -> dict[str, Any] | None:
        """The server's side of one point (``timeline.summarize_window``); None without a summarised target."""
        if not self.targets or not self.targets[0].family.figures:
            return None
        with self._lock:
            samples = list(self._samples)
        end = window.end if window.end is not None else self.elapsed()
        return summarize_window(samples, window.start, end, self.targets[0].family.figures)

    def annotate(self, points: Sequence[dict[str, Any]], label_of: Callable[[Mapping[str, Any]], str]) -> None:
        """``point["server_timeline"]`` for each point, from the windows of its label in order."""
        used: set[int] = set()
        for point in points:
            for i, window in enumerate(self.windows):
                if i not in used and window.label == label_of(point):
                    used.add(i)
                    summary = self.summary(window)
                    if summary is not None:
                        point["server_timeline"] = summary
                    break

    def record(self) -> dict[str, Any]:
        """The run's top-level keys (the sampler is stopped first): ``server_timeline`` (family, interval,
        scrapes and failures by kind per target, the sampler's own CPU) and ``server_metrics_file`` when a
        line was written. {} when nothing was sampled, so a run without a timeline looks as before."""
        self.stop()
        if not self.targets:
            return {}
        written = self.path.exists()
        with self._lock:
            targets = {t.name: {"url": t.url, "family": t.family.name, "scrapes": self._tally[t.name].scrapes,
                                "failed": self._tally[t.name].failed, "errors": dict(self._tally[t.name].errors)}
                       for t in self.targets}
            cpu = sum(t.cpu_s for t in self._tally.values())
        status: dict[str, Any] = {"family": self.targets[0].family.name, "interval_s": self.interval,
                                  "file": TIMELINE_FILE if written else "", "started_at_unix": round(self._t0_wall, 3),
                                  "targets": targets, "sampler_cpu_s": round(cpu, 4)}
        if self.write_error:
            status["write_error"] = self.write_error
        return {"server_timeline": status, **({"server_metrics_file": TIMELINE_FILE} if written else {})}

    # ---- the threads -----------------------------------------------------------------------------
    def _loop(self, target: ScrapeTarget, summarised: bool) -> None:
        cpu0 = time.thread_time()
        due = time.monotonic()
        while not self._stop.is_set():
            self._scrape(target, summarised)
            self._tally[target.name].cpu_s = time.thread_time() - cpu0
            due += self.interval
            now = time.monotonic()
            if due < now:  # a slow answer: skip the ticks it overran instead of catching up in a burst
                due += math.ceil((now - due) / self.interval) * self.interval
            self._stop.wait(due - now)

    def _scrape(self, target: ScrapeTarget, summarised: bool) -> None:
        self._tally[target.name].waiting = True
        try:
            status, text = http_get(target.url, timeout=self.timeout, limit=PAGE_LIMIT, headers=dict(target.headers))
        except Exception:  # http.client's own errors (a malformed or cut answer) are not OSError: no answer
            status, text = 0, ""
        values = select(text, target.family.prefixes) if status == 200 else {}
        figures = pooled(values, target.family.figures) if summarised and values else {}
        with self._lock:
            if self._closed:
                return
            tally = self._tally[target.name]
            tally.waiting = False
            tally.scrapes += 1
            if not values:
                tally.failed += 1
                tally.errors[f"HTTP {status}" if status not in (0, 200) else "no answer" if not status
                             else f"no {target.family.name} series"] += 1
                return
            # Stamped, and labelled, when the answer is in: the label and the windows move under the same lock.
            elapsed = self.elapsed()
            if summarised:
                self._samples.append((elapsed, figures))
            line = json.dumps({"t": round(time.time(), 3), "elapsed": round(elapsed, 4), "point": self._label,
                               "target": target.name, "values": values}, separators=(",", ":"))
            self._write(mask_learned(line) + "\n")

    def _write(self, line: str) -> None:
        """Append and flush (under the lock): a killed run keeps every line. A full disk stops the writing,
        said in the record; it never stops the benchmark."""
        if self.write_error:
            return
        try:
            if self._file is None:
                fd = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
                self._file = os.fdopen(fd, "a")
            self._file.write(line)
            self._file.flush()
        except OSError as exc:
            self.write_error = f"{exc.strerror or exc}: {TIMELINE_FILE} is incomplete"


__all__ = ["Sampler", "ScrapeTarget", "Window", "select"]
