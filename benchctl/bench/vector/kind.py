"""The ``vector`` bench kind: ingest rate, serial latency and recall@k, then a concurrency sweep (QPS,
latency, recall), against a vector database's job (``bench chroma|qdrant``) or any endpoint (``bench vector
--url URL --store chroma|qdrant``)."""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from benchctl.bench.kind import BenchError, BenchKind, BenchTarget, PartialRun, Progress, field_default
from benchctl.bench.timeline import interval_option, timeline_view
from benchctl.bench.vector.config import VectorConfig
from benchctl.options import Complete, Option, env_name, int_list, integer, number, path, url

if TYPE_CHECKING:
    from rich.console import RenderableType

    from benchctl.bench.results import RunResult, RunWriter
    from benchctl.bench.sampler import Sampler


_AT_LEAST_1 = integer(1)


def _d(name: str) -> Any:
    return field_default(VectorConfig, name)


def _store_names() -> tuple[str, ...]:
    from benchctl.bench.vector.stores import STORES

    return tuple(STORES.names())


def api_key_headers(env: str) -> dict[str, str]:
    """The ``api-key`` header from the variable NAMED by --api-key-env (never the key on the command line)."""
    if not env:
        return {}
    if env not in os.environ:
        raise BenchError(f"bench: environment variable {env} is not set")
    return {"api-key": os.environ[env]}


class VectorKind(BenchKind):
    name = "vector"
    summary = "vector database: ingest rate, latency, recall@k, QPS sweep"
    direct = True

    @property
    def options(self) -> tuple[Option, ...]:
        one = _AT_LEAST_1
        return (
            Option("--n", "vectors to ingest", one, default=_d("n"), metavar="N"),
            Option("--dim", "vector dimension", one, default=_d("dim"), metavar="D"),
            Option("--clusters", "clusters in the synthetic data", one, default=_d("clusters"), metavar="C"),
            Option("--k", "neighbours per query; recall@k", one, default=_d("k"), metavar="K"),
            Option("--queries", "distinct queries", one, default=_d("queries"), metavar="Q"),
            Option("--batch", "vectors per insert request", one, default=_d("batch"), metavar="B"),
            Option("--concurrency", "sweep points, e.g. 1,4,16", int_list, default=_d("concurrency"), metavar="LIST"),
            Option("--duration", "seconds per sweep point", number(positive=True), default=_d("duration"),
                   metavar="S"),
            Option("--grace", "each request's timeout; a server that fails every request this long ends the "
                   "phase or point", number(positive=True), default=_d("grace"), metavar="S"),
            Option("--m", "HNSW M", one, default=_d("m"), metavar="M"),
            Option("--ef-construct", "HNSW ef_construct", one, default=_d("ef_construct"), metavar="EF"),
            Option("--ef-search", "HNSW ef at search time", one, default=_d("ef_search"), metavar="EF"),
            Option("--metric", "distance", default=_d("metric"), choices=("l2", "cosine", "ip")),
            Option("--seed", "random seed of data and queries", integer(0), default=_d("seed"), metavar="SEED"),
            Option("--data", "vectors from a .npy/.fvecs/.hdf5 file instead of synthetic", path, metavar="FILE",
                   complete=Complete.PATH),
            Option("--collection", "collection name", default=_d("collection"), metavar="NAME"),
            Option("--keep", "keep the collection afterwards", None),
            interval_option(_d("server_metrics_interval")),
        )

    @property
    def service_options(self) -> tuple[Option, ...]:
        return (Option("--api-key-env", "environment variable holding the API key", env_name, metavar="VAR"),)

    @property
    def direct_options(self) -> tuple[Option, ...]:
        return (Option("--url", "endpoint, e.g. http://127.0.0.1:8000", url, metavar="URL"),
                Option("--store", "API of the endpoint", choices=_store_names()),
                *self.service_options)

    def config(self, values: Mapping[str, Any]) -> VectorConfig:
        cfg = VectorConfig()
        for name, value in values.items():
            if value is not None and hasattr(cfg, name):
                setattr(cfg, name, value)
        api_key_headers(cfg.api_key_env)  # an unset variable is refused now, before anything waits
        return cfg

    def direct_target(self, config: VectorConfig) -> BenchTarget:
        if not config.url or not config.store:
            raise BenchError("bench vector needs --url URL and --store " + "|".join(_store_names()))
        return BenchTarget(name=config.store, url=config.url, record={"name": config.store, "endpoint": config.url})

    def run(self, target: BenchTarget, config: VectorConfig, writer: RunWriter, progress: Progress) -> RunResult:
        from pathlib import Path

        from benchctl.bench.sampler import Sampler
        from benchctl.bench.vector import data as vdata
        from benchctl.bench.vector.runner import VectorBench
        from benchctl.bench.vector.stores import STORES, StoreError
        from benchctl.services.server import VectorServer

        cfg = config
        store_name = target.service.vector_store() if isinstance(target.service, VectorServer) else target.name
        headers = api_key_headers(cfg.api_key_env) or dict(target.headers)  # the job's own key by default
        store = STORES[store_name](target.url, timeout=cfg.grace, headers=headers)
        progress.status("preparing data…")
        try:
            if cfg.data:
                data = vdata.load(Path(cfg.data).expanduser(), cfg.queries, cfg.k, cfg.metric, cfg.seed, cfg.n)
            else:
                train, queries = vdata.synthetic(cfg.n, cfg.dim, cfg.clusters, cfg.queries, cfg.seed)
                data = vdata.Dataset(train, queries, vdata.exact_neighbors(train, queries, cfg.k, cfg.metric),
                                     f"synthetic(n={cfg.n}, dim={cfg.dim}, clusters={cfg.clusters}, seed={cfg.seed})")
        except vdata.DataError as exc:
            raise BenchError(f"bench: {exc}") from None

        def step(message: str) -> None:
            progress.status(message)
            if not message.startswith("ingesting "):
                progress.note(f"  {message}")

        # The server's /metrics (Qdrant's; Chroma has none: then nothing) sampled while the phases run.
        with Sampler.for_server(writer.dir, target.url, STORES[store_name].metrics, cfg.server_metrics_interval,
                                store.headers, target.sidecars) as timeline:
            bench = VectorBench(store, cfg, data, writer, step, timeline)
            try:
                bench.run()
            except StoreError as exc:
                if bench.ingest_result is None:  # nothing measured yet: one line, no run folder worth keeping
                    raise BenchError(f"bench {target.name}: {exc} (partial log: {writer.dir})") from None
                raise PartialRun(self._result(target, bench, writer, timeline, "failed"),
                                 BenchError(f"bench {target.name}: {exc}")) from None
            except (KeyboardInterrupt, SystemExit) as exc:
                raise PartialRun(self._result(target, bench, writer, timeline, "interrupted"), exc) from None
            return self._result(target, bench, writer, timeline)

    @staticmethod
    def _result(target: BenchTarget, bench: Any, writer: RunWriter, timeline: Sampler, status: str = "") -> RunResult:
        """What was measured so far (all of it after a complete run), each sweep point with the server's side."""
        metrics, points, health = bench.partial()
        timeline.annotate(points, lambda p: f"concurrency {p['concurrency']}")
        result = writer.envelope(service=target.record, config=bench.config_dict(), metrics=metrics, points=points,
                                 client_health=health, errors=dict(bench.errors), extra=timeline.record())
        if status:
            result.status = status
        return result

    def problems(self, result: RunResult) -> list[str]:
        out = []
        for point in result.points:
            p = point.values
            if p.get("stopped_early") and not p.get("interrupted"):
                out.append(f"concurrency {p['concurrency']}: stopped early: {p['stopped_early']}")
            elif p.get("errors") and not p.get("requests"):
                out.append(f"concurrency {p['concurrency']}: every request failed")
        return out

    def summary_view(self, result: RunResult) -> RenderableType:
        from rich.console import Group
        from rich.table import Table
        from rich.text import Text

        k = int(result.metrics.get("dataset", {}).get("k") or result.config.get("k") or 10)
        ing = result.metrics.get("ingest")
        if ing is None:
            head = Text("ingest: not finished")
        else:
            head = Text(f"ingest: {ing['vectors']} vectors in {ing['insert_s']:.2f} s = {ing['vectors_per_s']:.0f} "
                        f"vectors/s (batch p50 {ing['batch_latency_ms'].get('p50', 0):.1f} ms, p99 "
                        f"{ing['batch_latency_ms'].get('p99', 0):.1f} ms); the store reported all of them "
                        f"{ing['index_wait_s']:.2f} s after the last insert")
        table = Table(show_edge=False, header_style="bold")
        for col in ("POINT", "REQUESTS", "QPS", "p50 ms", "p95 ms", "p99 ms", f"recall@{k}", "ERRORS"):
            table.add_column(col, justify="left" if col == "POINT" else "right")
        serial = result.metrics.get("serial")
        if serial is not None:
            lat = serial["latency_ms"]
            table.add_row("serial", str(serial["queries"]), "", f"{lat.get('p50', 0):.2f}",
                          f"{lat.get('p95', 0):.2f}", f"{lat.get('p99', 0):.2f}", f"{serial[f'recall@{k}']:.3f}", "")
        for point in result.points:
            p = point.values
            lat = p["latency_ms"]
            mark = " (interrupted)" if p.get("interrupted") else " (stopped early)" if p.get("stopped_early") else ""
            table.add_row(f"concurrency {p['concurrency']}{mark}", str(p["requests"]), f"{p['qps']:.0f}",
                          f"{lat.get('p50', 0):.2f}", f"{lat.get('p95', 0):.2f}", f"{lat.get('p99', 0):.2f}",
                          f"{p[f'recall@{k}']:.3f}", str(p["errors"]))
        return Group(head, table, *timeline_view(result.extra.get("server_timeline"), [
            (f"concurrency {p['concurrency']}", p.get("server_timeline")) for p in result.points]))


__all__ = ["VectorKind", "api_key_headers"]
