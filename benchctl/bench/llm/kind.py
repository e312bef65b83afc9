"""The ``llm`` bench kind: streaming LLM load (closed loop ``--concurrency``, open loop ``--rate``) against an
LLM server's job or any URL (``bench llm --url``), with vLLM's metric names and definitions.

The options and their defaults, the config, the run (prompt sizing, the sweep, the server's ``/metrics``
before and after) and the summary table live here; the load generator itself is ``loadgen``, the live status
line and per-request records ``progress``, the server's timeline during the run ``bench.sampler``.
"""

from __future__ import annotations

import os
import re
from collections import Counter
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from benchctl.bench.kind import BenchError, BenchKind, BenchTarget, PartialRun, Progress, field_default
from benchctl.bench.llm.backends import BACKENDS
from benchctl.bench.llm.config import LlmConfig
from benchctl.bench.llm.progress import LiveProgress, RecordSink, StatusAdapter
from benchctl.bench.llm.workloads import WorkloadError, plan_for
from benchctl.bench.llm.workloads import configure as configure_workload
from benchctl.bench.llm.workloads.options import check_owners, workload_options
from benchctl.bench.timeline import interval_option, timeline_view
from benchctl.options import Complete, Option, OptionError, env_name, int_list, integer, number, number_list, path, url

if TYPE_CHECKING:
    from rich.console import RenderableType

    from benchctl.bench.llm.stream import RequestResult
    from benchctl.bench.results import RunResult, RunWriter
    from benchctl.bench.sampler import Sampler


def slo(raw: str) -> dict[str, float]:
    """``ttft:500,tpot:50`` (ms) -> {"ttft": 500.0, "tpot": 50.0}."""
    out = {}
    for part in raw.split(","):
        name, _, value = part.partition(":")
        if name not in ("ttft", "tpot", "e2el") or not re.fullmatch(r"\d+(\.\d+)?", value):
            raise OptionError(f"expects ttft:MS,tpot:MS,e2el:MS, got {part!r}")
        out[name] = float(value)
    return out


def _d(name: str) -> Any:
    return field_default(LlmConfig, name)


def auth_headers(env: str | None) -> dict[str, str]:
    """``Authorization: Bearer`` from the variable NAMED by --api-key-env (vLLM --api-key); the key itself
    never reaches the command line, history, transcript or results."""
    if not env:
        return {}
    key = os.environ.get(env, "")
    if not key:
        raise BenchError(f"bench: --api-key-env {env}: that environment variable is not set")
    return {"Authorization": f"Bearer {key}"}


def short_label(concurrency: int, rate: float | None) -> str:
    """A sweep point in the status line and the summary table: 'c=8' or 'rate 2/s'."""
    return f"rate {rate:g}/s" if rate is not None else f"c={concurrency}"


def top_error(results: list[RequestResult]) -> str:
    """The commonest failure of a point, for the one-line summary: '20x http_400: <message>'."""
    failed = [r for r in results if not r.ok]
    if not failed:
        return ""
    kind, n = Counter(r.error_type for r in failed).most_common(1)[0]
    message = next(r.error for r in failed if r.error_type == kind)
    return f"{n}x {kind}: {' '.join(message.split())[:160]}"


class LlmKind(BenchKind):
    name = "llm"
    summary = "streaming LLM load: TTFT, TPOT, ITL, E2EL, throughput (vLLM's definitions)"
    direct = True

    @property
    def options(self) -> tuple[Option, ...]:
        return (
            Option("--backend", "API: " + ", ".join(f"{b.name} ({b.summary})" for b in BACKENDS) +
                   " (default: the service's)", choices=tuple(BACKENDS.names())),
            Option("--model", "model name sent in requests (default: the job's model)", metavar="M"),
            Option("--concurrency", "closed loop: users, or a sweep 1,8,64", int_list, default=_d("concurrency"),
                   metavar="LIST"),
            Option("--rate", "open loop: requests/s, or a sweep 1,2,4 (capped by --concurrency)", number_list,
                   metavar="LIST"),
            Option("--arrival", "open-loop arrivals", default=_d("arrival"), choices=("constant", "poisson", "gamma")),
            Option("--burstiness", "gamma shape (<1 burstier)", number(positive=True), default=_d("burstiness"),
                   metavar="B"),
            Option("--requests", "requests per point (default: run for --duration)", integer(0), metavar="N"),
            Option("--duration", "seconds per point", number(positive=True), default=_d("duration"), metavar="S"),
            Option("--warmup", "first requests excluded from the metrics", integer(0), default=_d("warmup"),
                   metavar="N"),
            Option("--input-tokens", "prompt tokens (sized with the server's tokenizer where it has /tokenize, "
                   "else words)", integer(1), default=_d("input_tokens"), metavar="N"),
            Option("--prompts", "prompts from a JSONL or ShareGPT file instead of synthetic ones", path,
                   metavar="FILE", complete=Complete.PATH),
            Option("--output-tokens", "tokens to generate", integer(1), default=_d("output_tokens"), metavar="N"),
            Option("--seed", "seed of the arrival schedule", integer(0), default=_d("seed"), metavar="SEED"),
            Option("--grace", "seconds requests still running at a point's end may finish; a server that answers "
                   "nothing (or cannot be reached) for this long ends the point", number(positive=True),
                   default=_d("grace"), metavar="S"),
            Option("--max-error-rate", "stop a point when more than this fraction fails",
                   number(positive=True), default=_d("max_error_rate"), metavar="F"),
            Option("--slo", "goodput targets, e.g. ttft:500,tpot:50 (ms)", slo, metavar="SPEC"),
            Option("--api-key-env", "environment variable holding the server's API key (sent as a Bearer token)",
                   env_name, metavar="VAR"),
            interval_option(_d("server_metrics_interval")),
            *workload_options(_d),
        )

    @property
    def direct_options(self) -> tuple[Option, ...]:
        return (Option("--url", "endpoint, e.g. http://127.0.0.1:8000", url, metavar="URL"),)

    def config(self, values: Mapping[str, Any]) -> LlmConfig:
        cfg = LlmConfig(backend=values.get("backend") or "", model=values.get("model") or "")
        for name in ("concurrency", "rate", "arrival", "burstiness", "requests", "duration", "grace", "warmup",
                     "input_tokens", "output_tokens", "seed", "max_error_rate", "slo", "server_metrics_interval"):
            if values.get(name) is not None:
                setattr(cfg, name, values[name])
        if cfg.rate and values.get("concurrency") is None:
            cfg.concurrency = [1024]  # open loop: the rate drives the load; a generous cap
            cfg.concurrency_capped = False
        if values.get("prompts"):
            from pathlib import Path

            from benchctl.bench.llm.prompts import PromptError, load_prompts

            prompts = Path(values["prompts"]).expanduser()
            try:
                cfg.loaded_prompts = load_prompts(prompts)
            except PromptError as exc:
                raise BenchError(f"bench: {exc}") from None
            cfg.prompts = str(prompts)
        try:  # the workload's options and files are checked now, before anything waits
            configure_workload(cfg, values)
            check_owners(values, cfg.workload, bool(cfg.ramp))
        except WorkloadError as exc:
            raise BenchError(f"bench: {exc}") from None
        cfg.api_key_env = values.get("api_key_env") or ""
        auth_headers(cfg.api_key_env)  # an unset variable is refused now, before anything waits
        cfg.url = values.get("url") or ""
        return cfg

    def direct_target(self, config: LlmConfig) -> BenchTarget:
        if not config.url:
            raise BenchError("bench llm needs --url URL (and --backend, --model)")
        if not config.model:
            raise BenchError("bench llm needs --model M")
        config.backend = config.backend or ("openai-chat" if plan_for(config).needs_chat else "openai")
        return BenchTarget(name="llm", url=config.url, record={"name": "llm", "endpoint": config.url})

    def _settle(self, target: BenchTarget, cfg: LlmConfig) -> None:
        """Backend and model from the target where the options left them open."""
        from benchctl.services.server import LlmServer

        server = target.service if isinstance(target.service, LlmServer) else None
        if not cfg.backend:
            cfg.backend = server.default_backend if server else "openai"
            chat = f"{cfg.backend}-chat"  # conversations want a chat API: the default's chat twin
            if plan_for(cfg).needs_chat and not BACKENDS[cfg.backend].chat and BACKENDS.get(chat) is not None:
                cfg.backend = chat
        if not cfg.model:
            wanted = target.record.get("model") or (server.default_model if server else "") or "sim"
            cfg.model = server.served_model(target.url, wanted, target.headers) if server else wanted

    def run(self, target: BenchTarget, config: LlmConfig, writer: RunWriter, progress: Progress) -> RunResult:
        """One point per --concurrency (closed loop) or --rate (open loop) value. Interrupted (Ctrl-C, SIGTERM):
        the points measured so far and the interrupted one are returned inside ``PartialRun``. The server's
        /metrics is sampled meanwhile (``bench.sampler``) into the run folder's timeline."""
        from benchctl.bench.sampler import Sampler

        self._settle(target, config)
        headers = auth_headers(config.api_key_env) or dict(target.headers)  # the job's own key by default
        with Sampler.for_server(writer.dir, target.url, BACKENDS[config.backend].metrics,
                                config.server_metrics_interval, headers, target.sidecars) as timeline:
            return self._sweep(target, config, writer, progress, headers, timeline)

    def _sweep(self, target: BenchTarget, cfg: LlmConfig, writer: RunWriter, progress: Progress,
               headers: dict[str, str], timeline: Sampler) -> RunResult:
        from benchctl import aio
        from benchctl.bench.llm import server_metrics as sm
        from benchctl.bench.llm.http import RequestFailed
        from benchctl.bench.llm.loadgen import PointState, client_limited, point_metrics, run_point
        from benchctl.bench.llm.workloads.prefix import prefix_cache_stats as sm_prefix

        url = target.url
        self._size_prompts(url, cfg, headers, progress)
        workload = plan_for(cfg)
        try:
            for note in aio.run(workload.prepare(url, headers)):
                progress.info(note)
        except WorkloadError as exc:
            raise BenchError(f"bench {target.name}: {exc}") from None
        said: set[str] = set()  # a workload's warning is said once per run
        before = sm.scrape(url, headers)
        points: list[dict[str, Any]] = []
        sweep = [(c, r) for r in cfg.rate for c in cfg.concurrency[:1]] if cfg.rate else [
            (c, None) for c in cfg.concurrency]
        interrupted: BaseException | None = None
        for n, (concurrency, rate) in enumerate(sweep):
            named = workload.label(concurrency, rate)
            label = named or (f"rate {rate:g}/s" if rate is not None else f"concurrency {concurrency}")
            progress.status(f"{label}: starting…")
            live = LiveProgress(StatusAdapter(progress), named or short_label(concurrency, rate), cfg)
            point_before = sm.scrape(url, headers) if workload.scrape_per_point else {}
            state = PointState()
            records = RecordSink(writer, label, state)

            def done(r: RequestResult, live: LiveProgress = live, records: RecordSink = records) -> None:
                records(r)
                live(r)

            def tick(live: LiveProgress = live) -> None:
                live.tick()
                writer.flush_if_due()

            with timeline.point(label) as window:
                try:
                    outcome = aio.run(run_point(url, cfg, concurrency, rate, done, tick, headers, state))
                except RequestFailed as exc:  # not one connection before the point started
                    if not points:
                        raise BenchError(f"bench {target.name}: cannot reach {url}: {exc}") from None
                    progress.warn(f"{label}: the server cannot be reached ({exc}); {len(sweep) - n} point(s) "
                                  "skipped")
                    break
                except (KeyboardInterrupt, SystemExit) as exc:
                    outcome, interrupted = state.outcome(interrupted=True), exc
            records.finish(outcome.results)
            metrics = point_metrics(cfg, outcome, concurrency, rate)
            if named:
                metrics["workload_label"] = named
            if workload.scrape_per_point and not outcome.interrupted:
                metrics["prefix_cache"] = sm_prefix(point_before, sm.scrape(url, headers))
            if (server_side := timeline.summary(window)) is not None:
                metrics["server_timeline"] = server_side
            if outcome.interrupted:
                metrics["interrupted"] = True
            points.append(metrics)
            if interrupted is not None:
                break
            progress.note(f"  {label}: {metrics['completed']} ok, {metrics['failed']} failed, "
                          f"{metrics['request_throughput']:.1f} req/s")
            if metrics["failed"]:
                progress.warn(f"{label}: {top_error(outcome.results)}")
            warning = client_limited(metrics)
            if warning:
                progress.warn(f"{label}: {warning}")
            if outcome.stopped_early:
                progress.warn(f"{label}: stopped early: {outcome.stopped_early}")
            for warning in workload.new_warnings(metrics, said):
                progress.warn(f"{label}: {warning}")
            if outcome.unreachable and n + 1 < len(sweep):
                progress.warn(f"the server cannot be reached: {len(sweep) - n - 1} point(s) skipped")
                break
        gone = any(p["client_health"]["unreachable"] or "stalled" in p["client_health"]["stopped_early"]
                   for p in points)
        result = self._result(target, cfg, url, headers, before, points, writer, timeline, interrupted is not None,
                              gone)
        if interrupted is not None:
            raise PartialRun(result, interrupted)
        return result

    def _result(self, target: BenchTarget, cfg: LlmConfig, url: str, headers: dict[str, str],
                before: dict[str, float], points: list[dict[str, Any]], writer: RunWriter, timeline: Sampler,
                interrupted: bool, server_gone: bool = False) -> RunResult:
        from benchctl.bench.llm import server_metrics as sm
        from benchctl.bench.llm import vllm_format
        from benchctl.services.server import LlmServer

        # After an interrupt, or when the server stopped answering, do not wait on it for its facts.
        ask = not (interrupted or server_gone)
        server = sm.metric_deltas(before, sm.scrape(url, headers)) if before and ask else {}
        totals = {"failed_requests": sum((sum(p["error_counts"].values()) for p in points), 0),
                  "server_means_ms": sm.server_means(server)}
        llm_server = target.service if isinstance(target.service, LlmServer) else None
        info = {} if not ask else sm.server_info(url, target.record, target.name if llm_server else "",
                                                     llm_server.server_args if llm_server else (), headers)
        extra = {**vllm_format.top_level(points), "percentile_method": "linear (numpy default)",
                 "token_count_source_all_points": dict(sum((Counter(p["token_source"]) for p in points),
                                                           Counter())),
                 "server": info, **timeline.record()}
        result = writer.envelope(service=target.record, config=cfg.record(),
                                 metrics={"server_metrics": server, **totals}, points=points,
                                 client_health={"points": [p["client_health"] for p in points]},
                                 errors={k: sum(p["error_counts"].get(k, 0) for p in points)
                                         for k in {k for p in points for k in p["error_counts"]}}, extra=extra)
        result.status = "interrupted" if interrupted else "complete"
        return result

    def problems(self, result: RunResult) -> list[str]:
        out = []
        for point in result.points:
            p = point.values
            label = p.get("workload_label") or short_label(p.get("concurrency", 0), p.get("rate"))
            if p.get("interrupted"):
                continue
            if p.get("failed") and not p.get("completed"):
                out.append(f"{label}: every request failed")
            elif "--max-error-rate" in str(p.get("client_health", {}).get("stopped_early", "")):
                out.append(f"{label}: more failures than --max-error-rate")
            elif p.get("client_health", {}).get("unreachable"):
                out.append(f"{label}: the server could not be reached")
            elif "stalled" in str(p.get("client_health", {}).get("stopped_early", "")):
                out.append(f"{label}: the server stopped answering")
        return out

    @staticmethod
    def _size_prompts(url: str, cfg: LlmConfig, headers: dict[str, str], progress: Progress) -> None:
        """Synthetic prompts of --input-tokens tokens by the server's tokenizer; warn when they cannot fit."""
        from benchctl import aio
        from benchctl.bench.llm.prompts import calibrate

        if cfg.loaded_prompts:
            progress.info(f"prompts: {len(cfg.loaded_prompts)} from {cfg.prompts}")
            return
        cal = aio.run(calibrate(url, cfg.backend, cfg.model, cfg.input_tokens, headers))
        cfg.prompt_words, cfg.prompt_pad = cal.words, cal.pad
        progress.info(f"prompts: {cfg.input_tokens} tokens each ({cal.note})")
        if cal.max_model_len and (cal.tokens or cfg.input_tokens) + cfg.output_tokens > cal.max_model_len:
            progress.warn(f"--input-tokens {cfg.input_tokens} + --output-tokens {cfg.output_tokens} exceed the "
                          f"model's context ({cal.max_model_len} tokens): the server will refuse these requests")

    def summary_view(self, result: RunResult) -> RenderableType:
        from rich.console import Group
        from rich.text import Text

        from benchctl.bench.llm.workloads.summary import extra_columns, extra_lines
        from benchctl.tables import Col, FitTable

        goodput = bool(result.config.get("slo"))
        # At 80 columns the least telling columns give way first; numbers are never cut.
        cols = [Col("POINT", justify="left"), Col("OK"), Col("FAIL"), Col("req/s"), Col("out tok/s", 3),
                Col("TTFT p50"), Col("TTFT p99", 2), Col("TPOT p50"), Col("TPOT p99", 2), Col("ITL p50", 4),
                Col("E2EL p50", 1)] + ([Col("goodput", 1)] if goodput else [])
        extra = extra_columns([p.values for p in result.points])  # validity rate, prefix-cache hit rate
        table = FitTable(cols + [col for col, _ in extra])
        for point in result.points:
            p = point.values

            def ms(key: str, p: dict[str, Any] = p) -> str:
                value = p.get(key)
                return f"{value:.1f}" if isinstance(value, float) else "-"

            health = p.get("client_health") or {}
            mark = " (interrupted)" if p.get("interrupted") else " (cut)" if health.get("stopped_early") else ""
            name = p.get("workload_label") or short_label(p["concurrency"], p["rate"])
            row = [name + mark, str(p["completed"]), str(p["failed"]),
                   f"{p['request_throughput']:.1f}", f"{p['output_throughput']:.0f}", ms("median_ttft_ms"),
                   ms("p99_ttft_ms"), ms("median_tpot_ms"), ms("p99_tpot_ms"), ms("median_itl_ms"),
                   ms("median_e2el_ms")]
            if goodput:
                row.append(f"{p.get('request_goodput', 0.0):.1f}")
            table.add_row(*row, *(cell(p) for _, cell in extra))
        parts: list[Any] = [table, Text("(times in ms; TTFT to the first token-carrying chunk, TPOT = (last - first) "
                                        "/ (n - 1), ITL = gaps between chunks)")]
        parts += [Text(line) for line in extra_lines(
            [(p.get("workload_label") or short_label(p["concurrency"], p["rate"]), p.values) for p in result.points])]
        means = result.metrics.get("server_means_ms") or {}
        if means:
            parts.append(Text("server's view (/metrics, mean over the run): " + ", ".join(
                f"{name} {value:.1f} ms" for name, value in means.items())))
        timing = result.points[-1].get("server_timing_ms") if result.points else None
        if timing:
            parts.append(Text("server's own timing (last point, p50): " + ", ".join(
                f"{key.removesuffix('_ms')} {value.get('p50', 0):.1f} ms" for key, value in timing.items())))
        parts += timeline_view(result.extra.get("server_timeline"), [
            (p.get("workload_label") or short_label(p.get("concurrency", 0), p.get("rate")), p.get("server_timeline"))
            for p in result.points])
        return Group(*parts)


__all__ = ["LiveProgress", "LlmKind", "auth_headers", "short_label", "slo", "top_error"]
