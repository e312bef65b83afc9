"""``bench vllm|ollama|llm-sim`` and ``bench llm --url``: the streaming LLM benchmark from the shell."""

from __future__ import annotations

import json
import os
import re
import statistics
import time
from collections import Counter, deque
from pathlib import Path
from typing import TYPE_CHECKING, Any

from rich.table import Table

from benchctl import aio
from benchctl.commands import CommandError, ParsedArgs

if TYPE_CHECKING:
    from benchctl.app import App
    from benchctl.bench.llm import LlmConfig

DEFAULT_BACKEND = {"vllm": "openai", "llm-sim": "openai", "ollama": "ollama"}
_NUMBER_LIST = re.compile(r"^\d+(\.\d+)?(,\d+(\.\d+)?)*$")
_METRIC_LINE = re.compile(r"^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{[^}]*\})?\s+([-+0-9.eE]+|NaN|[+-]Inf)$")


def _numbers(text: str, flag: str) -> list[float]:
    if not _NUMBER_LIST.match(text):
        raise CommandError(f"bench: {flag} expects numbers separated by commas, got {text!r}")
    values = [float(x) for x in text.split(",")]
    if any(v <= 0 for v in values):
        raise CommandError(f"bench: {flag} values must be positive")
    return values


def _slo(text: str) -> dict[str, float]:
    out = {}
    for part in text.split(","):
        name, _, value = part.partition(":")
        if name not in ("ttft", "tpot", "e2el") or not re.fullmatch(r"\d+(\.\d+)?", value):
            raise CommandError(f"bench: --slo expects ttft:MS,tpot:MS,e2el:MS, got {part!r}")
        out[name] = float(value)
    return out


def config_from_args(args: ParsedArgs, backend: str, model: str) -> LlmConfig:
    from benchctl.bench.llm import LlmConfig

    cfg = LlmConfig(backend=backend, model=model)
    if args.get("concurrency"):
        cfg.concurrency = [int(v) for v in _numbers(args.get("concurrency"), "--concurrency")]
    if args.get("rate"):
        cfg.rate = _numbers(args.get("rate"), "--rate")
        if not args.get("concurrency"):
            cfg.concurrency = [1024]  # open loop: the rate drives the load; a generous cap
    for name in ("duration", "burstiness", "max_error_rate"):
        if args.get(name) is not None:
            setattr(cfg, name, _numbers(args.get(name), "--" + name.replace("_", "-"))[0])
    for name in ("requests", "warmup", "input_tokens", "output_tokens", "seed"):
        if args.get(name) is not None:
            setattr(cfg, name, int(args.get(name)))
    if args.get("arrival"):
        cfg.arrival = args.get("arrival")
    if args.get("slo"):
        cfg.slo = _slo(args.get("slo"))
    if cfg.output_tokens < 1 or cfg.input_tokens < 1:
        raise CommandError("bench: --input-tokens and --output-tokens must be at least 1")
    if args.get("prompts"):
        from benchctl.bench.llm_prompts import PromptError, load_prompts

        path = Path(args.get("prompts")).expanduser()
        try:
            cfg.loaded_prompts = load_prompts(path)
        except PromptError as exc:
            raise CommandError(f"bench: {exc}") from None
        cfg.prompts = str(path)
    return cfg


def auth_headers(env_name: str | None) -> dict[str, str]:
    """``Authorization: Bearer`` from the variable NAMED by --api-key-env (vLLM --api-key); the key itself
    never reaches the command line, history, transcript or results."""
    if not env_name:
        return {}
    key = os.environ.get(env_name, "")
    if not key:
        raise CommandError(f"bench: --api-key-env {env_name}: that environment variable is not set")
    return {"Authorization": f"Bearer {key}"}


def size_prompts(app: App, url: str, cfg: LlmConfig, headers: dict[str, str]) -> None:
    """Synthetic prompts of --input-tokens tokens by the server's tokenizer; warn when they cannot fit."""
    from benchctl.bench.llm_prompts import calibrate

    if cfg.loaded_prompts:
        app.ui.info(f"prompts: {len(cfg.loaded_prompts)} from {cfg.prompts}")
        return
    cal = aio.run(calibrate(url, cfg.backend, cfg.model, cfg.input_tokens, headers))
    cfg.prompt_words, cfg.prompt_pad = cal.words, cal.pad
    app.ui.info(f"prompts: {cfg.input_tokens} tokens each ({cal.note})")
    if cal.max_model_len and (cal.tokens or cfg.input_tokens) + cfg.output_tokens > cal.max_model_len:
        app.ui.warn(f"--input-tokens {cfg.input_tokens} + --output-tokens {cfg.output_tokens} exceed the model's "
                    f"context ({cal.max_model_len} tokens): the server will refuse these requests")


def top_error(results: list[Any]) -> str:
    """The commonest failure of a point, for the one-line summary: '20x http_400: <message>'."""
    failed = [r for r in results if not r.ok]
    if not failed:
        return ""
    kind, n = Counter(r.error_type for r in failed).most_common(1)[0]
    message = next(r.error for r in failed if r.error_type == kind)
    return f"{n}x {kind}: {' '.join(message.split())[:160]}"


def scrape(url: str) -> dict[str, float]:
    """Prometheus text from URL/metrics as {name{labels}: value}; {} when the server has none."""
    from benchctl.services.base import http_get

    status, text = http_get(url + "/metrics", timeout=5, limit=None)  # vLLM's page is far over 64 KiB
    if status != 200:
        return {}
    out = {}
    for line in text.splitlines():
        m = _METRIC_LINE.match(line.strip())
        if m:
            try:
                out[m.group(1) + (m.group(2) or "")] = float(m.group(3))
            except ValueError:
                continue
    return out


# Options of a started LLM job that describe the server (the rest are Slurm's).
SERVER_ARGS = ("model", "nodes", "gpus_per_node", "tp", "pp", "max_model_len", "extra_args", "parallel",
               "max_loaded", "image", "runtime", "ttft_ms", "itl_ms", "output_tokens", "max_concurrency")


def server_info(url: str, record: dict[str, Any], target: str) -> dict[str, Any]:
    """What served the run: engine and its version (``/version``, Ollama ``/api/version``), the job's server
    arguments, Slurm job and nodes -- stored with the results, so a number never loses its context."""
    from benchctl.services.base import http_get

    version = ""
    for path in ("/version", "/api/version"):
        status, body = http_get(url + path)
        if status == 200:
            try:
                version = str(json.loads(body).get("version", ""))
            except (ValueError, AttributeError):
                version = ""
            if version:
                break
    options = record.get("options") or {}
    return {"engine": target if target != "llm" else "", "version": version, "endpoint": url,
            "args": {k: options[k] for k in SERVER_ARGS if options.get(k) not in (None, "")},
            "slurm_job_id": record.get("job_id", ""), "nodes": record.get("nodes", ""),
            "image": record.get("image", "")}


def served_model(url: str, wanted: str) -> str:
    """The model name to send: ``wanted`` if the server lists it, else the one it serves (a vLLM started with
    --served-model-name answers to that name only), else ``wanted``."""
    from benchctl.services.base import http_get
    from benchctl.services.vllm import served_models

    status, body = http_get(url + "/v1/models")
    ids = served_models(body) if status == 200 else []
    return wanted if (wanted in ids or not ids) else ids[0]


def server_means(deltas: dict[str, float]) -> dict[str, float]:
    """Mean of every latency histogram the server exposes over the run, in ms, from its ``_sum`` and
    ``_count`` deltas (vLLM: time_to_first_token, request_queue_time, request_prefill_time, ...): the server's
    side of the numbers the client measured. Label sets of one metric (several models/engines) are pooled."""
    sums: dict[str, float] = {}
    counts: dict[str, float] = {}
    for key, value in deltas.items():
        name = key.split("{", 1)[0]
        if name.endswith("_seconds_sum"):
            sums[name[:-12]] = sums.get(name[:-12], 0.0) + value
        elif name.endswith("_seconds_count"):
            counts[name[:-14]] = counts.get(name[:-14], 0.0) + value
    return {name.split(":")[-1]: 1000 * sums[name] / counts[name] for name in sorted(sums) if counts.get(name)}


def metric_deltas(before: dict[str, float], after: dict[str, float]) -> dict[str, float]:
    """Counter deltas (``*_total``, ``*_count``, ``*_sum``) and final gauge values."""
    out = {}
    for key, value in after.items():
        name = key.split("{", 1)[0]
        if name.startswith(("python_gc_", "process_")):  # the exporter's own runtime, not the server's work
            continue
        if name.endswith(("_total", "_count", "_sum")):
            out[key] = value - before.get(key, 0.0)
        elif "_bucket" not in name:
            out[key] = value
    return out


def run_llm(app: App, args: ParsedArgs, target: str) -> None:
    """Benchmark an LLM endpoint: one point per --concurrency (closed loop) or --rate (open loop) value."""
    from benchctl.bench.llm import client_limited, point_metrics, run_point, vllm_top_level
    from benchctl.bench.results import RunWriter
    from benchctl.commands.bench import job_endpoint

    if target == "llm":
        url = args.get("url")
        if not url:
            raise CommandError("bench llm needs --url URL (and --backend, --model)")
        from benchctl.bench.llm_http import Target

        try:
            Target.parse(url)
        except ValueError as exc:
            raise CommandError(f"bench llm --url: {exc} (e.g. http://127.0.0.1:8000)") from None
        record: dict[str, Any] = {"name": "llm", "endpoint": url}
        backend = args.get("backend") or "openai"
        model = args.get("model") or ""
        if not model:
            raise CommandError("bench llm needs --model M")
    else:
        url, record = job_endpoint(app, target)
        backend = args.get("backend") or DEFAULT_BACKEND.get(target, "openai")
        model = args.get("model") or record.get("model") or "sim"
        if target == "vllm" and not args.get("model"):
            model = served_model(url, model)
    cfg = config_from_args(args, backend, model)
    headers = auth_headers(args.get("api_key_env"))
    writer = RunWriter(app.home, "llm", record["name"])
    size_prompts(app, url, cfg, headers)
    before = scrape(url)
    points: list[dict[str, Any]] = []
    sweep = [(c, r) for r in cfg.rate for c in cfg.concurrency[:1]] if cfg.rate else [
        (c, None) for c in cfg.concurrency]
    quiet = bool(args.get("quiet"))
    for concurrency, rate in sweep:
        label = f"rate {rate:g}/s" if rate is not None else f"concurrency {concurrency}"
        with app.ui.status(f"{label}: starting…") as status:
            progress = LiveProgress(status, short_label(concurrency, rate), cfg)
            outcome = aio.run(run_point(url, cfg, concurrency, rate, progress, progress.tick, headers))
        t0 = min((r.scheduled for r in outcome.results), default=0.0)
        for r in outcome.results:
            writer.request({"point": label, **r.to_record(t0)})
        metrics = point_metrics(cfg, outcome)
        metrics.update({"concurrency": concurrency, "rate": rate})
        points.append(metrics)
        if not quiet:
            app.ui.text(f"  {label}: {metrics['completed']} ok, {metrics['failed']} failed, "
                        f"{metrics['request_throughput']:.1f} req/s")
        if metrics["failed"]:
            app.ui.warn(f"{label}: {top_error(outcome.results)}")
        warning = client_limited(metrics)
        if warning:
            app.ui.warn(f"{label}: {warning}")
        if metrics["client_health"]["stopped_early"]:
            app.ui.warn(f"{label}: stopped early: {metrics['client_health']['stopped_early']}")
    server = metric_deltas(before, scrape(url)) if before else {}
    means = server_means(server)
    totals = {"errors": sum((sum(p["errors"].values()) for p in points), 0), "server_means_ms": means}
    extra = {**(vllm_top_level(cfg, points[-1]) if points else {}), "percentile_method": "linear (numpy default)",
             "token_count_source": dict(sum((Counter(p["token_source"]) for p in points), Counter())),
             "server": server_info(url, record, target)}
    envelope = writer.envelope(service=record, config=cfg.record(), metrics={"server_metrics": server, **totals},
                               points=points, client_health={"points": [p["client_health"] for p in points]},
                               errors={k: sum(p["errors"].get(k, 0) for p in points)
                                       for k in {k for p in points for k in p["errors"]}}, extra=extra)
    output = Path(args.get("output")).expanduser() if args.get("output") else None
    path = writer.finish(envelope, extra_output=output)
    show_llm_summary(app, points, bool(cfg.slo))
    if means:
        app.ui.info("server's view (/metrics, mean over the run): " + ", ".join(
            f"{name} {value:.1f} ms" for name, value in means.items()))
    timing = points[-1].get("server_timing_ms") if points else None
    if timing:
        app.ui.info("server's own timing (last point, p50): " + ", ".join(
            f"{key.removesuffix('_ms')} {value.get('p50', 0):.1f} ms" for key, value in timing.items()))
    app.ui.info(f"results: {path}" + (f" (and {output})" if output else ""))


def short_label(concurrency: int, rate: float | None) -> str:
    """A sweep point in the status line and the summary table: 'c=8' or 'rate 2/s'."""
    return f"rate {rate:g}/s" if rate is not None else f"c={concurrency}"


class LiveProgress:
    """The live status line of a running point: requests done and failed, request rate, running medians of
    TTFT and TPOT over the last 256 requests, and time or requests so far. Called per finished request and
    by the load generator's monitor (~4/s, so the clock moves while long requests run), on the event loop;
    redraws at most 5 times a second, so it costs the measurement nothing."""

    def __init__(self, status: Any, label: str, cfg: LlmConfig) -> None:
        self.status, self.label, self.cfg = status, label, cfg
        self.t0 = time.perf_counter()
        self.last = 0.0
        self.ok = self.failed = 0
        self.ttft: deque[float] = deque(maxlen=256)
        self.tpot: deque[float] = deque(maxlen=256)

    def __call__(self, r: Any) -> None:
        if r.ok:
            self.ok += 1
            if r.ttft is not None:
                self.ttft.append(r.ttft)
            if r.tpot is not None:
                self.tpot.append(r.tpot)
        else:
            self.failed += 1
        self.tick()

    def tick(self) -> None:
        now = time.perf_counter()
        if now - self.last >= 0.2:
            self.last = now
            self.status.update(self.text(now))

    def text(self, now: float) -> str:
        elapsed = now - self.t0
        parts = [f"{self.label}: {self.ok} ok" + (f", {self.failed} failed" if self.failed else ""),
                 f"{self.ok / elapsed if elapsed > 0 else 0.0:.1f} req/s"]
        if self.ttft:
            parts.append(f"TTFT {1000 * statistics.median(self.ttft):.1f} ms")
        if self.tpot:
            parts.append(f"TPOT {1000 * statistics.median(self.tpot):.2f} ms")
        total = self.cfg.requests + self.cfg.warmup
        parts.append(f"{self.ok + self.failed}/{total} requests" if self.cfg.requests else
                     f"{min(elapsed, self.cfg.duration):.0f}/{self.cfg.duration:.0f} s")
        return " · ".join(parts)


def show_llm_summary(app: App, points: list[dict[str, Any]], goodput: bool) -> None:
    table = Table(show_edge=False, header_style="bold")
    cols = ["POINT", "OK", "FAIL", "req/s", "out tok/s", "TTFT p50", "TTFT p99", "TPOT p50", "TPOT p99",
            "ITL p50", "E2EL p50"] + (["goodput"] if goodput else [])
    for col in cols:
        table.add_column(col, justify="left" if col == "POINT" else "right")
    for p in points:
        label = short_label(p["concurrency"], p["rate"])

        def ms(key: str, p: dict[str, Any] = p) -> str:
            value = p.get(key)
            return f"{value:.1f}" if isinstance(value, float) else "-"

        row = [label, str(p["completed"]), str(p["failed"]), f"{p['request_throughput']:.1f}",
               f"{p['output_throughput']:.0f}", ms("median_ttft_ms"), ms("p99_ttft_ms"), ms("median_tpot_ms"),
               ms("p99_tpot_ms"), ms("median_itl_ms"), ms("median_e2el_ms")]
        if goodput:
            row.append(f"{p.get('request_goodput', 0.0):.1f}")
        table.add_row(*row)
    app.ui.renderable(table)
    app.ui.info("(times in ms; TTFT to the first token-carrying chunk, TPOT = (last - first) / (n - 1), "
                "ITL = gaps between chunks)")
