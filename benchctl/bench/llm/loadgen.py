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
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import orjson

from benchctl.bench.llm import prompts as llm_prompts
from benchctl.bench.llm import vllm_format
from benchctl.bench.llm.backends import BACKENDS
from benchctl.bench.llm.config import LlmConfig
from benchctl.bench.llm.http import Connection, Pool, RequestFailed, Target
from benchctl.bench.llm.stream import RequestResult
from benchctl.bench.stats import summarize

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
                      ) -> None:
    backend = BACKENDS[cfg.backend]
    parser = backend.parser(result)
    # Encoded before the clock starts: building the request is the client's work, not the server's latency.
    raw = pool.target.request(backend.path, orjson.dumps(request_body(cfg, result.index)), headers)
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
                            "interrupted" if interrupted else self.stop_reason, self.unreachable, interrupted)


async def run_point(url: str, cfg: LlmConfig, concurrency: int, rate: float | None,
                    on_done: Callable[[RequestResult], None] | None = None,
                    on_tick: Callable[[], None] | None = None,
                    headers: dict[str, str] | None = None, state: PointState | None = None) -> PointOutcome:
    """One sweep point: closed loop with ``concurrency`` users, or open loop at ``rate`` capped by it.

    The point ends at its duration (or request count); requests still in flight get ``cfg.grace`` more
    seconds, then are cut and recorded as ``deadline``. It ends early when the server answers nothing for
    ``cfg.grace`` seconds while requests wait (``stalled``), when it cannot be reached at all for that long
    (``unreachable``), or when failures pass ``--max-error-rate``. Raises RequestFailed when not one
    connection can be opened before the start.
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
        st.cpu0 = time.process_time()
        st.t0 = t0 = time.perf_counter()
        deadline = t0 + cfg.duration if not cfg.requests else float("inf")
        counter = [0]

        def next_index() -> int | None:
            if st.stop_reason or (limit and counter[0] >= limit) or time.perf_counter() >= deadline:
                return None
            counter[0] += 1
            return counter[0] - 1

        async def run_one(index: int, scheduled: float) -> RequestResult:
            r = RequestResult(index=index, scheduled=scheduled)
            st.results.append(r)
            await one_request(pool, cfg, r, headers)
            if r.error_type in UNREACHABLE_KINDS:
                unreachable_since[0] = unreachable_since[0] or r.sent
            elif r.http_status:
                unreachable_since[0] = 0.0
            if index >= cfg.warmup:
                finished[0] += 1
                if not r.ok:
                    errors[0] += 1
                    if finished[0] >= 10 and errors[0] / finished[0] > cfg.max_error_rate:
                        stop(f"error rate {errors[0] / finished[0]:.0%} > --max-error-rate")
            if on_done:
                on_done(r)
            return r

        if rate is None:
            async def user() -> None:
                backoff = 0.0
                while (index := next_index()) is not None:
                    r = await run_one(index, time.perf_counter())
                    if r.error_type in UNREACHABLE_KINDS:
                        # Bounded, jittered exponential back-off: users do not retry a dead server in lockstep.
                        backoff = min(BACKOFF_MAX, backoff * 2 or BACKOFF_FIRST)
                        await asyncio.sleep(backoff * random.uniform(0.5, 1.5))
                    else:
                        backoff = 0.0

            tasks = [asyncio.create_task(user()) for _ in range(concurrency)]
        else:
            n = limit or int(rate * cfg.duration * 1.5) + 10
            offsets = arrival_offsets(n, rate, cfg.arrival, cfg.burstiness, cfg.seed)
            sem = asyncio.Semaphore(concurrency)

            async def capped(index: int, scheduled: float) -> None:
                async with sem:
                    await run_one(index, scheduled)

            async def dispatch() -> None:
                for offset in offsets:
                    due = t0 + offset
                    if due >= deadline:
                        break
                    delay = due - time.perf_counter()
                    if delay > 0:
                        await asyncio.sleep(delay)
                    index = next_index()
                    if index is None:
                        break
                    tasks.append(asyncio.create_task(capped(index, due)))

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


def _ms(values: list[float]) -> dict[str, float]:
    return {k: (v * 1000 if k != "count" else v) for k, v in summarize(values).items()}


def point_metrics(cfg: LlmConfig, outcome: PointOutcome, concurrency: int, rate: float | None) -> dict[str, Any]:
    """One point (warm-up requests excluded): vLLM's whole result record (``vllm_format``) and benchctl's own
    keys beside it -- the concurrency/rate, errors by type, token-count source, the client's health."""
    measured = [r for r in outcome.results if r.index >= cfg.warmup]
    ok = [r for r in measured if r.ok]
    dur = outcome.duration
    out_tokens = sum(r.tokens for r in ok)
    in_tokens = sum(r.prompt_tokens or 0 for r in ok)
    metrics: dict[str, Any] = {
        "completed": len(ok), "failed": len(measured) - len(ok), "duration": dur,
        "request_throughput": len(ok) / dur if dur else 0.0, "output_throughput": out_tokens / dur if dur else 0.0,
        "total_token_throughput": (out_tokens + in_tokens) / dur if dur else 0.0,
        "total_input_tokens": in_tokens, "total_output_tokens": out_tokens,
        "token_source": dict(Counter(r.token_source for r in ok)),
    }
    series = {"ttft": [r.ttft for r in ok if r.ttft is not None],
              "ttft_from_schedule": [r.ttft_scheduled for r in ok if r.ttft_scheduled is not None],
              "tpot": [r.tpot for r in ok if r.tpot is not None],
              "itl": [g for r in ok for g in r.itl],
              "e2el": [r.e2el for r in ok if r.e2el is not None]}
    for name, values in series.items():
        stats = _ms(values)
        for key, value in stats.items():
            if key == "count":
                continue
            label = {"p50": "median"}.get(key, key)
            metrics[f"{label}_{name}_ms"] = value
            if key == "p50":
                metrics[f"p50_{name}_ms"] = value
    if cfg.slo:
        good = [r for r in ok if all(
            (getattr(r, key) or 0.0) * 1000 <= limit for key, limit in cfg.slo.items())]
        metrics["request_goodput"] = len(good) / dur if dur else 0.0
    metrics["error_counts"] = dict(Counter(r.error_type for r in measured if not r.ok))
    timed = [r.server_timing for r in ok if r.server_timing]
    if timed:  # Ollama's own view of each request: TTFT minus its prefill is queueing, loading and network
        metrics["server_timing_ms"] = {key: summarize([t[key] for t in timed if key in t])
                                       for key in sorted({k for t in timed for k in t})}
    metrics["peak_in_flight"] = max_in_flight(measured)
    metrics["warmup_excluded"] = len(outcome.results) - len(measured)
    metrics.update({"concurrency": concurrency, "rate": rate})
    metrics.update(vllm_format.point_record(cfg, metrics, measured, concurrency, rate))
    dispatch = [max(0.0, r.sent - r.scheduled) for r in measured if r.sent]
    metrics["client_health"] = {
        "dispatch_lag_ms": _ms(dispatch), "event_loop_lag_ms": _ms(outcome.loop_lag),
        "client_cpu_percent": 100.0 * outcome.cpu_seconds / dur if dur else 0.0,
        "stopped_early": outcome.stopped_early,
        "unreachable": outcome.unreachable,
    }
    return metrics


def max_in_flight(results: list[RequestResult]) -> int:
    """The most requests in flight at once (sent, not yet ended), failed ones included: benchctl's
    ``peak_in_flight`` (vLLM's ``max_concurrent_requests`` counts successful requests per 1-s bucket)."""
    events = sorted([(r.sent, 1) for r in results if r.sent] + [(r.end, -1) for r in results if r.sent and r.end])
    level = peak = 0
    for _, step in events:
        level += step
        peak = max(peak, level)
    return peak


def client_limited(metrics: dict[str, Any]) -> str:
    """A warning when the client, not the server, may have limited the run."""
    health = metrics["client_health"]
    lag = health["dispatch_lag_ms"].get("p99", 0.0)
    # A run of a few requests is mostly start-up (imports, the first connection): its CPU share says nothing.
    if metrics.get("duration", 0.0) < 2.0 or metrics.get("completed", 0) + metrics.get("failed", 0) < 20:
        return ""
    if health["client_cpu_percent"] > 85:
        return f"the client used {health['client_cpu_percent']:.0f}% of a core: it may limit this run"
    if lag > 20:
        return f"requests left the client up to {lag:.0f} ms late (p99): it may limit this run"
    return ""
