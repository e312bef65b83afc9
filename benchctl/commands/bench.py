"""``bench``: run a service's benchmark client against its ready job, or any endpoint with ``bench vector``."""

from __future__ import annotations

import os
import re
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from rich.table import Table

from benchctl.commands import ArgKind, Command, CommandError, OptSpec, ParsedArgs, Registry

if TYPE_CHECKING:
    from benchctl.app import App

VECTOR_OPTIONS: tuple[OptSpec, ...] = (
    OptSpec("--n", ArgKind.INT, "vectors to ingest (default 20000)", metavar="N"),
    OptSpec("--dim", ArgKind.INT, "vector dimension (default 128)", metavar="D"),
    OptSpec("--clusters", ArgKind.INT, "clusters in the synthetic data (default 16)", metavar="C"),
    OptSpec("--k", ArgKind.INT, "neighbours per query; recall@k (default 10)", metavar="K"),
    OptSpec("--queries", ArgKind.INT, "distinct queries (default 200)", metavar="Q"),
    OptSpec("--batch", ArgKind.INT, "vectors per insert request (default 500)", metavar="B"),
    OptSpec("--concurrency", ArgKind.TEXT, "sweep points, e.g. 1,4,16 (default 1,4)", metavar="LIST"),
    OptSpec("--duration", ArgKind.TEXT, "seconds per sweep point (default 10)", metavar="S"),
    OptSpec("--m", ArgKind.INT, "HNSW M (default 16)", metavar="M"),
    OptSpec("--ef-construct", ArgKind.INT, "HNSW ef_construct (default 100)", metavar="EF"),
    OptSpec("--ef-search", ArgKind.INT, "HNSW ef at search time (default 100)", metavar="EF"),
    OptSpec("--metric", ArgKind.CHOICE, "distance", ("l2", "cosine", "ip")),
    OptSpec("--seed", ArgKind.INT, "random seed of data and queries (default 42)", metavar="SEED"),
    OptSpec("--data", ArgKind.PATH, "vectors from a .npy/.fvecs/.hdf5 file instead of synthetic", metavar="FILE"),
    OptSpec("--collection", ArgKind.TEXT, "collection name (default benchctl_vectors)", metavar="NAME"),
    OptSpec("--keep", None, "keep the collection afterwards"),
    OptSpec("--output", ArgKind.PATH, "also write the run JSON to FILE", metavar="FILE"),
    OptSpec("--quiet", None, "print only the summary"),
)
ENDPOINT_OPTIONS: tuple[OptSpec, ...] = (
    OptSpec("--url", ArgKind.TEXT, "endpoint, e.g. http://127.0.0.1:8000", metavar="URL"),
    OptSpec("--store", ArgKind.CHOICE, "API of the endpoint", ("chroma", "qdrant")),
    OptSpec("--api-key-env", ArgKind.TEXT, "environment variable holding the API key", metavar="VAR"),
)


LLM_OPTIONS: tuple[OptSpec, ...] = (
    OptSpec("--backend", ArgKind.CHOICE, "API: openai (completions), openai-chat, ollama, ollama-chat",
            ("openai", "openai-chat", "ollama", "ollama-chat")),
    OptSpec("--model", ArgKind.TEXT, "model name sent in requests (default: the job's model)", metavar="M"),
    OptSpec("--concurrency", ArgKind.TEXT, "closed loop: users, or a sweep 1,8,64 (default 8)", metavar="LIST"),
    OptSpec("--rate", ArgKind.TEXT, "open loop: requests/s, or a sweep 1,2,4 (capped by --concurrency)",
            metavar="LIST"),
    OptSpec("--arrival", ArgKind.CHOICE, "open-loop arrivals", ("constant", "poisson", "gamma")),
    OptSpec("--burstiness", ArgKind.TEXT, "gamma shape (<1 burstier; default 1)", metavar="B"),
    OptSpec("--requests", ArgKind.INT, "requests per point (default: run for --duration)", metavar="N"),
    OptSpec("--duration", ArgKind.TEXT, "seconds per point (default 30)", metavar="S"),
    OptSpec("--warmup", ArgKind.INT, "first requests excluded from the metrics (default 0)", metavar="N"),
    OptSpec("--input-tokens", ArgKind.INT, "prompt tokens (sized with the server's tokenizer where it has "
            "/tokenize, else words; default 128)", metavar="N"),
    OptSpec("--prompts", ArgKind.PATH, "prompts from a JSONL or ShareGPT file instead of synthetic ones",
            metavar="FILE"),
    OptSpec("--output-tokens", ArgKind.INT, "tokens to generate (default 128)", metavar="N"),
    OptSpec("--seed", ArgKind.INT, "seed of the arrival schedule (default 42)", metavar="SEED"),
    OptSpec("--max-error-rate", ArgKind.TEXT, "stop a point when more than this fraction fails (default 1)",
            metavar="F"),
    OptSpec("--slo", ArgKind.TEXT, "goodput targets, e.g. ttft:500,tpot:50 (ms)", metavar="SPEC"),
    OptSpec("--api-key-env", ArgKind.TEXT, "environment variable holding the server's API key (sent as a "
            "Bearer token)", metavar="VAR"),
    OptSpec("--output", ArgKind.PATH, "also write the run JSON to FILE", metavar="FILE"),
    OptSpec("--quiet", None, "print only the summary"),
)


def bench_kind(target: str) -> str | None:
    if target == "vector":
        return "vector"
    if target == "llm":
        return "llm"
    from benchctl.services import SERVICES

    cls = SERVICES.get(target)
    return getattr(cls, "bench_kind", None) if cls else None


IO500_OPTIONS: tuple[OptSpec, ...] = (
    OptSpec("--job", ArgKind.JOB, "collect the results of this io500 job instead of submitting a new one",
            metavar="JOBID"),
    OptSpec("--timeout", ArgKind.INT, "seconds to wait for the run (default ui.wait_timeout x 8)", metavar="S"),
    OptSpec("--output", ArgKind.PATH, "also write the run JSON to FILE", metavar="FILE"),
)


def _options(app: App, positionals: Sequence[str]) -> tuple[OptSpec, ...]:
    if not positionals:
        return ()
    kind = bench_kind(positionals[0])
    if kind == "io500":
        from benchctl.commands.services import _start_options

        return IO500_OPTIONS + _start_options(app, positionals)
    if kind == "llm":
        return LLM_OPTIONS + (ENDPOINT_OPTIONS[:1] if positionals[0] == "llm" else ())
    if kind == "vector":
        return VECTOR_OPTIONS + (ENDPOINT_OPTIONS if positionals[0] == "vector" else ENDPOINT_OPTIONS[2:])
    return ()


def _int_list(text: str, flag: str) -> list[int]:
    if not re.fullmatch(r"\d+(,\d+)*", text):
        raise CommandError(f"bench: {flag} expects numbers separated by commas, got {text!r}")
    values = [int(x) for x in text.split(",")]
    if any(v < 1 for v in values):
        raise CommandError(f"bench: {flag} values must be at least 1")
    return values


def _positive_float(text: str, flag: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise CommandError(f"bench: {flag} expects seconds, got {text!r}") from None
    if value <= 0:
        raise CommandError(f"bench: {flag} must be positive")
    return value


def job_endpoint(app: App, target: str) -> tuple[str, dict[str, Any]]:
    """(url, service record) of the target service's active job, waiting until it is ready."""
    from benchctl.commands.services import refresh, resolve_jobs

    service = app.service(target)
    jobs = [j for j in refresh(app, resolve_jobs(app, target, manage=True)) if not j.state.is_final]
    if not jobs:
        raise CommandError(f"no active {target} job to benchmark (start one with 'start {target}')")
    job = jobs[-1]
    if not (job.ready and service.probe(job)):
        # Started a moment ago: wait for it like `check --wait` does (progress lines, clear failure).
        from benchctl.commands.services import wait_for

        job = wait_for(app, job, float(app.settings.get("ui.wait_timeout")))
    endpoint = service.endpoint(job)
    if endpoint is None:
        raise CommandError(f"{job.label} has no endpoint yet ('check {target}')")
    record = {"name": target, "job_id": job.id, "nodes": job.host or job.nodes, "endpoint": endpoint.url,
              "image": job.options.get("image", ""), "runtime": job.options.get("runtime", ""),
              "model": job.options.get("model", ""), "options": dict(job.options)}
    return endpoint.url, record


def _endpoint(app: App, target: str, args: ParsedArgs) -> tuple[str, str, dict[str, Any]]:
    """(url, store kind, service record for the result) of the benchmark target."""
    if target == "vector":
        url, store = args.get("url"), args.get("store")
        if not url or not store:
            raise CommandError("bench vector needs --url URL and --store chroma|qdrant")
        return url, store, {"name": store, "endpoint": url}
    url, record = job_endpoint(app, target)
    return url, target, record


def cmd_bench(app: App, args: ParsedArgs) -> None:
    """Benchmark a ready service with its client. Vector databases (chroma, qdrant): ingest rate, serial
    latency and recall@k, then a concurrency sweep (QPS, latency, recall). `bench vector --url URL --store
    chroma|qdrant` targets any endpoint. Results go to ~/benchctl/results/<run-id>/."""
    target = args.positionals[0]
    kind = bench_kind(target)
    if kind is None:
        if target != "vector":
            app.service(target)  # unknown service: its own clear error
        raise CommandError(f"{target} has no benchmark client yet")
    if kind == "io500":
        run_io500(app, args)
        return
    if kind == "llm":
        from benchctl.commands.bench_llm import run_llm

        run_llm(app, args, target)
        return
    url, store_kind, service_record = _endpoint(app, target, args)
    run_vector(app, args, url, store_kind, service_record)


def run_vector(app: App, args: ParsedArgs, url: str, store_kind: str, service_record: dict[str, Any]) -> None:
    from benchctl.bench.results import RunWriter
    from benchctl.bench.stores import STORES, StoreError
    from benchctl.bench.vector import VectorBench, VectorConfig
    from benchctl.bench.vector_data import DataError, exact_neighbors, load, synthetic

    cfg = VectorConfig()
    for opt in VECTOR_OPTIONS:
        value = args.get(opt.dest)
        if value is None or opt.dest in ("output", "quiet"):
            continue
        if opt.dest == "concurrency":
            value = _int_list(value, opt.flag)
        elif opt.dest == "duration":
            value = _positive_float(value, opt.flag)
        elif opt.value is ArgKind.INT and value < 1 and opt.dest != "seed":
            raise CommandError(f"bench: {opt.flag} must be at least 1")
        setattr(cfg, opt.dest, value)
    headers = {}
    if args.get("api_key_env"):
        var = args.get("api_key_env")
        if var not in os.environ:
            raise CommandError(f"bench: environment variable {var} is not set")
        headers["api-key"] = os.environ[var]
    store = STORES[store_kind](url, headers=headers)
    quiet = bool(args.get("quiet"))
    with app.ui.status("preparing data…") as status:
        try:
            if cfg.data:
                data = load(Path(cfg.data).expanduser(), cfg.queries, cfg.k, cfg.metric, cfg.seed, cfg.n)
            else:
                from benchctl.bench.vector_data import Dataset

                train, queries = synthetic(cfg.n, cfg.dim, cfg.clusters, cfg.queries, cfg.seed)
                data = Dataset(train, queries, exact_neighbors(train, queries, cfg.k, cfg.metric),
                               f"synthetic(n={cfg.n}, dim={cfg.dim}, clusters={cfg.clusters}, seed={cfg.seed})")
        except DataError as exc:
            raise CommandError(f"bench: {exc}") from None
        writer = RunWriter(app.home, "vector", service_record["name"])

        def progress(message: str) -> None:
            status.update(message)
            if not quiet and not message.startswith("ingesting "):
                app.ui.text(f"  {message}")

        bench = VectorBench(store, cfg, data, writer, progress)
        try:
            metrics, points, health = bench.run()
        except StoreError as exc:
            raise CommandError(f"bench {service_record['name']}: {exc} (partial log: {writer.dir})") from None
    envelope = writer.envelope(service=service_record, config=bench.config_dict(), metrics=metrics,
                               points=points, client_health=health, errors=dict(bench.errors))
    output = Path(args.get("output")).expanduser() if args.get("output") else None
    path = writer.finish(envelope, extra_output=output)
    show_vector_summary(app, metrics, points, cfg.k)
    app.ui.info(f"results: {path}" + (f" (and {output})" if output else ""))


def run_io500(app: App, args: ParsedArgs) -> None:
    """Submit an IO500 run with the given options (or take --job), wait for it, store and show its scores."""
    from benchctl.bench.io500 import result_table
    from benchctl.bench.results import RunWriter
    from benchctl.commands.services import _convert, resolve_jobs, wait_for
    from benchctl.templates import TemplateError

    service = app.service("io500")
    if args.get("job"):
        job = resolve_jobs(app, args.get("job"), manage=True)[0]
        if job.service != "io500":
            raise CommandError(f"job {job.id} is a {job.service} job, not io500")
    else:
        options = {o.dest: _convert(o, args.get(o.dest), "bench") for o in service.start_options()
                   if args.get(o.dest) is not None}
        try:
            job = service.submit(service.resolve(options))
        except TemplateError as exc:
            raise CommandError(f"bench io500: {exc}") from None
        app.ui.success(f"submitted io500 as job {job.id} (run dir {job.run_dir})")
    timeout = float(args.get("timeout") or float(app.settings.get("ui.wait_timeout")) * 8)
    job = wait_for(app, job, timeout)
    result = service.results(job)  # type: ignore[attr-defined]
    if result is None:
        raise CommandError(f"{job.label}: no IO500 results found ('logs {job.id}')")
    writer = RunWriter(app.home, "io500", "io500")
    metrics = result.to_dict()
    envelope = writer.envelope(service={"name": "io500", "job_id": job.id, "nodes": job.host or job.nodes},
                               config=dict(job.options), metrics=metrics, points=[], client_health={},
                               errors={} if metrics.get("valid") else {"invalid": 1})
    output = Path(args.get("output")).expanduser() if args.get("output") else None
    path = writer.finish(envelope, extra_output=output)
    app.ui.renderable(result_table(result, title=f"IO500 job {job.id}"))
    if not metrics.get("valid"):
        app.ui.warn("this run is INVALID for IO500 (see the flagged rows)")
    app.ui.info(f"results: {path}")


def show_vector_summary(app: App, metrics: dict[str, Any], points: list[dict[str, Any]], k: int) -> None:
    ing = metrics["ingest"]
    app.ui.info(f"ingest: {ing['vectors']} vectors in {ing['insert_s']:.2f} s = {ing['vectors_per_s']:.0f} vectors/s "
                f"(batch p50 {ing['batch_latency_ms'].get('p50', 0):.1f} ms, p99 "
                f"{ing['batch_latency_ms'].get('p99', 0):.1f} ms); all counted {ing['index_wait_s']:.2f} s later")
    table = Table(show_edge=False, header_style="bold")
    for col in ("POINT", "REQUESTS", "QPS", "p50 ms", "p95 ms", "p99 ms", f"recall@{k}", "ERRORS"):
        table.add_column(col, justify="left" if col == "POINT" else "right")
    serial = metrics["serial"]
    lat = serial["latency_ms"]
    table.add_row("serial", str(serial["queries"]), "", f"{lat.get('p50', 0):.2f}", f"{lat.get('p95', 0):.2f}",
                  f"{lat.get('p99', 0):.2f}", f"{serial[f'recall@{k}']:.3f}", "")
    for p in points:
        lat = p["latency_ms"]
        table.add_row(f"concurrency {p['concurrency']}", str(p["requests"]), f"{p['qps']:.0f}",
                      f"{lat.get('p50', 0):.2f}", f"{lat.get('p95', 0):.2f}", f"{lat.get('p99', 0):.2f}",
                      f"{p[f'recall@{k}']:.3f}", str(p["errors"]))
    app.ui.renderable(table)


def register(registry: Registry) -> None:
    registry.add(Command("bench", cmd_bench, "bench SERVICE [options] | bench vector --url URL --store S",
                         "benchmark a ready service", (ArgKind.SERVICE,), min_args=1, options_for=_options))
