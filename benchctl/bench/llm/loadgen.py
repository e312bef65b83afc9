"""The LLM load generator: asyncio (+ httptools, see llm_http), closed loop (--concurrency) or open loop (--rate with a
precomputed, seeded arrival schedule), one shared connection pool, chunks timestamped on arrival.

Every request is timed from its *scheduled* time too, so a client that falls behind shows up as TTFT (no
coordinated omission), and the client's own health (dispatch lag, event-loop lag, CPU) is measured and
reported with the results.
"""

from __future__ import annotations

import asyncio
import gc
import itertools
import random
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import orjson

from benchctl.bench.llm import prompts as llm_prompts
from benchctl.bench.llm.backends import BACKENDS
from benchctl.bench.llm.config import LlmConfig
from benchctl.bench.llm.http import Connection, Pool, RequestFailed, Target
from benchctl.bench.llm.stream import RequestResult
from benchctl.bench.llm.workloads import Session, plan_for

MAX_WARM = 256  # connections opened before a point starts (an open loop's cap may be far higher)


def arrival_offsets(n: int, rate: float, arrival: str, burstiness: float, seed: int) -> list[float]:
    """Seconds after the start at which each of ``n`` requests is due (precomputed, reproducible)."""
    rng = random.Random(seed)
    t, out = 0.0, []
    for _ in range(n):
        out.append(t)
        if arrival == "constant":
            t += 1.0 / rate
        elif arrival == "poisson":
            t += rng.expovariate(rate)
        else:  # gamma: shape = burstiness (<1 burstier, >1 smoother), mean gap 1/rate
            t += rng.gammavariate(burstiness, 1.0 / (rate * burstiness))
    return out


def request_body(cfg: LlmConfig, index: int) -> dict[str, Any]:
    """Request ``index``: the next file prompt (cycled), or a synthetic one of the calibrated size."""
    if cfg.loaded_prompts:
        prompt = cfg.loaded_prompts[index % len(cfg.loaded_prompts)]
        # A file prompt's own output length is a target the model may end before (no forced length).
        return BACKENDS[cfg.backend].body(cfg.model, prompt.messages, prompt.output_tokens or cfg.output_tokens,
                                          prompt.output_tokens is None)
    text = llm_prompts.prompt_text(index, cfg.prompt_words or cfg.input_tokens, cfg.prompt_pad)
    return BACKENDS[cfg.backend].body(cfg.model, (("user", text),), cfg.output_tokens, True)


async def one_request(pool: Pool, cfg: LlmConfig, result: RequestResult, headers: dict[str, str] | None = None,
                      body: dict[str, Any] | None = None) -> None:
    backend = BACKENDS[cfg.backend]
    parser = backend.parser(result)
    # Encoded before the clock starts: building the request is the client's work, not the server's latency.
    payload = body if body is not None else request_body(cfg, result.index)  # a workload's, or the default
    raw = pool.target.request(backend.path, orjson.dumps(payload), headers)
    result.sent = time.perf_counter()  # a new connection's set-up (rare: the pool is warmed) counts, as for a user
    conn: Connection | None = None
    try:
        conn = await pool.acquire()
        result.http_status = status = await conn.send(raw, parser.feed, cfg.timeout)
        if status != 200:
            text = conn.error_body.decode("utf-8", "replace")
            result.error, result.error_type = f"HTTP {status}: {text}", f"http_{status}"
    except RequestFailed as exc:
        result.error, result.error_type = str(exc), exc.kind
    except asyncio.CancelledError:
        # Cut while waiting for a connection (the point ended): recorded, never lost.
        result.error, result.error_type = result.error or "cut before a connection was made", "deadline"
        result.end = time.perf_counter()
        result.finish()
        raise
    finally:
        result.end = result.end or time.perf_counter()
        if conn is not None:
            pool.release(conn)
    parser.parse()
    result.finish()


# Connection-level failures (nothing was answered) back off, so a dead server is not hammered.
BACKOFF_FIRST, BACKOFF_MAX = 0.05, 2.0
UNREACHABLE_KINDS = frozenset({"connection"})


@dataclass
class PointOutcome:
    results: list[RequestResult]
    duration: float
    loop_lag: list[float]
    cpu_seconds: float
    stopped_early: str = ""
    unreachable: bool = False  # the point ended because the server could not be reached
    interrupted: bool = False  # Ctrl-C / SIGTERM: the results are those measured until then
    # The point's start on its requests' clock: per-second figures are relative to it. None = it never started
    # (perf_counter); 0.0 is a real start -- merged client tasks' records are on a clock that starts at 0.
    t0: float | None = None


@dataclass
class PointState:
    """What a running point has measured so far; the caller keeps it, so an interrupted point is not lost."""

    results: list[RequestResult] = field(default_factory=list)
    loop_lag: list[float] = field(default_factory=list)
    t0: float = 0.0
    cpu0: float = 0.0
    stop_reason: str = ""
    unreachable: bool = False

    def outcome(self, *, interrupted: bool = False) -> PointOutcome:
        end = max((r.end for r in self.results if r.end), default=self.t0)
        duration = (time.perf_counter() if interrupted else end) - self.t0 if self.t0 else 0.0
        return PointOutcome(self.results, max(duration, 0.0), self.loop_lag, time.process_time() - self.cpu0,
                            "interrupted" if interrupted else self.stop_reason, self.unreachable, interrupted,
                            self.t0 or None)


async def run_point(url: str, cfg: LlmConfig, concurrency: int, rate: float | None,
                    on_done: Callable[[RequestResult], None] | None = None,
                    on_tick: Callable[[], None] | None = None,
                    headers: dict[str, str] | None = None, state: PointState | None = None,
                    start_at: float | None = None) -> PointOutcome:
    """One sweep point: closed loop with ``concurrency`` users, or open loop at ``rate`` capped by it.

    The point ends at its duration (or request count); requests still in flight get ``cfg.grace`` more
    seconds, then are cut and recorded as ``deadline``. It ends early when the server answers nothing for
    ``cfg.grace`` seconds while requests wait (``stalled``), when it cannot be reached at all for that long
    (``unreachable``), or when failures pass ``--max-error-rate``. Raises RequestFailed when not one
    connection can be opened before the start. ``start_at`` (a perf_counter time): the point starts then, not
    at once -- client tasks of one run (``bench.client``) start together.
    """
    st = state if state is not None else PointState()
    limit = cfg.requests + cfg.warmup if cfg.requests else 0
    pool = Pool(Target.parse(url), connect_timeout=min(cfg.timeout, 30.0, cfg.grace))
    errors, finished = [0], [0]  # measured requests that failed / ended
    cut_now = asyncio.Event()
    unreachable_since = [0.0]  # first of an unbroken run of connection failures (0: none)

    def stop(reason: str, *, cut: bool = False, unreachable: bool = False) -> None:
        if not st.stop_reason:
            st.stop_reason = reason
        st.unreachable = st.unreachable or unreachable
        if cut:
            cut_now.set()

    async def monitor() -> None:
        for n in itertools.count(1):
            t = time.perf_counter()
            await asyncio.sleep(0.01)
            now = time.perf_counter()
            # uvloop's timers have 1 ms resolution and may fire a little early: clamp at 0.
            st.loop_lag.append(max(0.0, now - t - 0.01))
            if n % 25:
                continue
            if on_tick is not None:  # ~4 times a second, even while no request ends
                on_tick()
            busy = pool.busy
            if busy and all(now - c.last_activity > cfg.grace for c in busy):
                stop(f"stalled: the server answered nothing for {cfg.grace:g} s", cut=True)
            if unreachable_since[0] and now - unreachable_since[0] > cfg.grace:
                stop(f"unreachable: no connection to the server for {cfg.grace:g} s", cut=True, unreachable=True)

    workload = plan_for(cfg)
    failed = await pool.warm(min(concurrency, MAX_WARM))
    if failed is not None:
        pool.close()
        st.unreachable = True
        raise failed
    # The cyclic GC stops the loop for tens of ms once the heap holds many results: off while measuring.
    gc_was_enabled = gc.isenabled()
    gc.disable()
    tasks: list[asyncio.Task[None]] = []
    mon = asyncio.create_task(monitor())
    try:
        if start_at is not None and start_at > time.perf_counter():
            await asyncio.sleep(start_at - time.perf_counter())
        st.cpu0 = time.process_time()
        st.t0 = t0 = time.perf_counter()
        deadline = t0 + cfg.duration if not cfg.requests else float("inf")
        counter = [0]

        def next_index(due: float | None = None) -> int | None:
            # An open loop's arrival counts by when it was DUE: a dispatcher running late (a busy machine) must
            # still send an arrival scheduled before the end, or lateness would silently thin the schedule.
            when = time.perf_counter() if due is None else due
            if st.stop_reason or (limit and counter[0] >= limit) or when >= deadline:
                return None
            counter[0] += 1
            return counter[0] - 1

        async def run_one(index: int, scheduled: float, session: Session) -> RequestResult:
            r = RequestResult(index=index, scheduled=scheduled)
            st.results.append(r)
            await one_request(pool, cfg, r, headers, session.body(r))
            session.done(r)
            if r.error_type in UNREACHABLE_KINDS:
                unreachable_since[0] = unreachable_since[0] or r.sent
            elif r.http_status:
                unreachable_since[0] = 0.0
            if cfg.ordinal(index) >= cfg.warmup:
                finished[0] += 1
                if not r.ok:
                    errors[0] += 1
                    if finished[0] >= 10 and errors[0] / finished[0] > cfg.max_error_rate:
                        stop(f"error rate {errors[0] / finished[0]:.0%} > --max-error-rate")
            if on_done:
                on_done(r)
            return r

        # The workload's own schedule (a trace, a ramp) makes an open loop of a point without --rate.
        schedule = workload.offsets(rate)
        if rate is None and schedule is None:
            async def user() -> None:
                backoff, session = 0.0, workload.session()  # a user's own state: a chat's history
                while (k := next_index()) is not None:
                    r = await run_one(cfg.number(k), time.perf_counter(), session)
                    if pause := session.pause(r):  # a chat user's think time
                        await asyncio.sleep(pause)
                    if r.error_type in UNREACHABLE_KINDS:
                        # Bounded, jittered exponential back-off: users do not retry a dead server in lockstep.
                        backoff = min(BACKOFF_MAX, backoff * 2 or BACKOFF_FIRST)
                        await asyncio.sleep(backoff * random.uniform(0.5, 1.5))
                    else:
                        backoff = 0.0

            tasks = [asyncio.create_task(user()) for _ in range(concurrency)]
        else:
            if schedule is not None:
                offsets = schedule
            else:
                assert rate is not None
                n = limit or int(rate * cfg.duration * 1.5) + 10
                offsets = arrival_offsets(n, rate, cfg.arrival, cfg.burstiness, cfg.seed)
            shared = workload.session()
            # Every client task computes the whole schedule and takes every task_count-th arrival: the union
            # of the tasks' arrivals is the one-process schedule, and a request keeps its index in it.
            mine = range(cfg.task_index, len(offsets), cfg.task_count)
            sem = asyncio.Semaphore(concurrency)

            async def capped(index: int, scheduled: float) -> None:
                async with sem:
                    await run_one(index, scheduled, shared)

            async def dispatch() -> None:
                for k in mine:
                    due = t0 + offsets[k]
                    if due >= deadline:
                        break
                    delay = due - time.perf_counter()
                    if delay > 0:
                        await asyncio.sleep(delay)
                    if next_index(due) is None:
                        break
                    tasks.append(asyncio.create_task(capped(k, due)))

            await dispatch()
        await _finish_point(tasks, cut_now, deadline + cfg.grace, pool, cfg, st)
        mon.cancel()
    except asyncio.CancelledError:  # Ctrl-C / SIGTERM: what ran so far is recorded as interrupted
        pool.cut_busy("interrupted", "interrupted by the user")
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        raise
    finally:
        mon.cancel()
        pool.close()
        if gc_was_enabled:
            gc.enable()
    return st.outcome()


async def _finish_point(tasks: list[asyncio.Task[None]], cut_now: asyncio.Event, hard_deadline: float, pool: Pool,
                        cfg: LlmConfig, st: PointState) -> None:
    """Wait for the point's requests until they end, the hard deadline passes or a stop asks for a cut; then
    cut what is still in flight (recorded as failures of that kind, never dropped)."""
    if not tasks:
        return
    everything = asyncio.gather(*tasks, return_exceptions=True)
    cut_wait = asyncio.create_task(cut_now.wait())
    timeout = None if hard_deadline == float("inf") else max(0.0, hard_deadline - time.perf_counter())
    waiters: set[asyncio.Future[Any]] = {everything, cut_wait}
    await asyncio.wait(waiters, timeout=timeout, return_when=asyncio.FIRST_COMPLETED)
    cut_wait.cancel()
    if everything.done():
        return
    if cut_now.is_set():
        kind, message = ("unreachable" if st.unreachable else "stalled"), f"cut: {st.stop_reason}"
    else:
        kind = "deadline"
        message = f"cut by the point's deadline ({cfg.duration:g} s + {cfg.grace:g} s grace)"
        st.stop_reason = st.stop_reason or f"requests still running {cfg.grace:g} s after the point's end were cut"
    pool.cut_busy(kind, message)
    await asyncio.wait({everything}, timeout=1.0)
    for task in tasks:  # waiting for a connection or in a back-off sleep
        task.cancel()
    await asyncio.gather(everything, return_exceptions=True)


# Moved to ``pointstats`` (imported last: it reads PointOutcome from here); re-exported for existing callers.
from benchctl.bench.llm.pointstats import client_limited as client_limited  # noqa: E402
from benchctl.bench.llm.pointstats import max_in_flight as max_in_flight  # noqa: E402
from benchctl.bench.llm.pointstats import point_metrics as point_metrics  # noqa: E402
