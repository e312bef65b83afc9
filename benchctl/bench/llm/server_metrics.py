"""The server's side of an LLM benchmark: its Prometheus ``/metrics`` before and after the run, the means of
its latency histograms over the run, and what served the run (engine, version, arguments, job).

Parsed from the text exposition format; vLLM's page is far over 64 KiB, so it is read whole.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from typing import Any

from benchctl.http import http_get

# vLLM renamed metrics between the releases benchctl meets (pinned images and current ones): read the old name
# as the new one. gpu_cache_usage_perc -> kv_cache_usage_perc (0.9.2; old name gone in 0.12);
# time_per_output_token_seconds -> inter_token_latency_seconds (0.11; old name gone in 0.13).
RENAMED = {"vllm:gpu_cache_usage_perc": "vllm:kv_cache_usage_perc",
           "vllm:time_per_output_token_seconds": "vllm:inter_token_latency_seconds"}
_METRIC_LINE = re.compile(r"^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{[^}]*\})?\s+([-+0-9.eE]+|NaN|[+-]Inf)$")


def parse_metrics(text: str) -> dict[str, float]:
    """Prometheus text as ``{name{labels}: value}`` (comments and malformed lines skipped)."""
    out = {}
    renamed: dict[str, float] = {}
    for line in text.splitlines():
        m = _METRIC_LINE.match(line.strip())
        if m:
            try:
                value = float(m.group(3))
            except ValueError:
                continue
            name, labels = m.group(1), m.group(2) or ""
            out[name + labels] = value
            for old, new in RENAMED.items():  # an older vLLM's name, also under today's (unless both are there)
                if name == old or name.startswith(old + "_"):
                    renamed[new + name[len(old):] + labels] = value
    for key, value in renamed.items():
        out.setdefault(key, value)
    return out


def scrape(url: str, headers: dict[str, str] | None = None) -> dict[str, float]:
    """``URL/metrics`` parsed; {} when the server has none."""
    status, text = http_get(url + "/metrics", timeout=5, limit=None, headers=headers)
    return parse_metrics(text) if status == 200 else {}


def metric_deltas(before: Mapping[str, float], after: Mapping[str, float]) -> dict[str, float]:
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


def server_means(deltas: Mapping[str, float]) -> dict[str, float]:
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
    old_names = {old[: -len("_seconds")] for old in RENAMED if old.endswith("_seconds")}
    return {name.split(":")[-1]: 1000 * sums[name] / counts[name] for name in sorted(sums)
            if counts.get(name) and name not in old_names}  # an old name is read as today's


def engine_version(url: str, headers: dict[str, str] | None = None) -> str:
    """The engine's version: vLLM's ``/version``, Ollama's ``/api/version``; '' when neither answers."""
    for path in ("/version", "/api/version"):
        status, body = http_get(url + path, headers=headers)
        if status == 200:
            try:
                version = str(json.loads(body).get("version", ""))
            except (ValueError, AttributeError):
                version = ""
            if version:
                return version
    return ""


def server_info(url: str, record: Mapping[str, Any], engine: str, server_args: tuple[str, ...],
                headers: dict[str, str] | None = None) -> dict[str, Any]:
    """What served the run: engine and its version, the job's server arguments, Slurm job and nodes -- stored
    with the results, so a number never loses its context."""
    options = record.get("options") or {}
    return {"engine": engine, "version": engine_version(url, headers), "endpoint": url,
            "args": {k: options[k] for k in server_args if options.get(k) not in (None, "")},
            "slurm_job_id": record.get("job_id", ""), "nodes": record.get("nodes", ""),
            "image": record.get("image", "")}


__all__ = ["engine_version", "metric_deltas", "parse_metrics", "scrape", "server_info", "server_means"]
