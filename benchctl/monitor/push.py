"""Benchmark figures to a monitor's Pushgateway, and away again.

One group per run and sweep point (``job="benchctl"``, ``run_id``, ``point``), so Grafana shows each point of
each run, and ``results --forget RUN`` or a stopping monitor deletes exactly what benchctl pushed. Label
values go into the URL base64url-encoded (the Pushgateway's ``label@base64`` form): a model name such as
``meta-llama/Llama-3.1-8B`` holds a slash.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from benchctl.bench.results import RunResult
from benchctl.http import http_request
from benchctl.monitor.pushed import PUSH_JOB, PUSHED


class PushError(RuntimeError):
    """The Pushgateway refused or could not be reached (the run itself is saved regardless)."""


@dataclass(frozen=True)
class Gateway:
    """A Pushgateway: its base URL and the headers that admit benchctl (the monitor's basic auth)."""

    url: str
    headers: Mapping[str, str]


def _b64(value: str) -> str:
    return base64.urlsafe_b64encode(value.encode()).decode().rstrip("=") or "="


def group_path(run_id: str, point: str) -> str:
    return f"/metrics/job/{PUSH_JOB}/run_id@base64/{_b64(run_id)}/point@base64/{_b64(point)}"


def _label(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def point_label(point: Mapping[str, Any], index: int) -> str:
    """How a sweep point is named, as the summary tables name it: ``rate=R`` (open loop), else ``c=N``."""
    for key, fmt in (("rate", "rate={}"), ("concurrency", "c={}")):
        if point.get(key) not in (None, "", "inf"):
            return fmt.format(point[key])
    return f"point{index + 1}"


def exposition(result: RunResult, point: Mapping[str, Any]) -> str:
    """One point's figures in the Prometheus text format (gauges; ms already turned into seconds)."""
    labels = {"service": str(result.service.get("name") or result.service.get("service") or ""),
              "model": str(result.config.get("model") or result.service.get("model") or ""), "kind": result.kind}
    text = ",".join(f'{k}="{_label(v)}"' for k, v in labels.items())
    lines = []
    for pushed in PUSHED:
        value = pushed.value(point)
        if value is not None:
            lines += [f"# HELP {pushed.name} {pushed.help}", f"# TYPE {pushed.name} gauge",
                      f"{pushed.name}{{{text}}} {value!r}"]
    return "\n".join(lines) + "\n" if lines else ""


def push_run(gateway: Gateway, result: RunResult) -> int:
    """PUT every point of ``result`` (replacing an earlier push of the same point); the number of groups."""
    pushed = 0
    for index, point in enumerate(p.to_dict() for p in result.points):
        body = exposition(result, point)
        if not body:
            continue
        status, _ = http_request("PUT", gateway.url + group_path(result.run_id, point_label(point, index)),
                                 body.encode(), timeout=5, headers=dict(gateway.headers))
        if status not in (200, 202):
            raise PushError(f"the Pushgateway at {gateway.url} answered {status or 'nothing'}")
        pushed += 1
    return pushed


def groups(gateway: Gateway) -> list[dict[str, str]]:
    """The label sets of every group the Pushgateway holds (its ``/api/v1/metrics``)."""
    status, body = http_request("GET", gateway.url + "/api/v1/metrics", timeout=5, limit=None,
                                headers=dict(gateway.headers))
    if status != 200:
        raise PushError(f"the Pushgateway at {gateway.url} answered {status or 'nothing'}")
    try:
        data = json.loads(body).get("data") or []
    except (ValueError, AttributeError):
        raise PushError(f"the Pushgateway at {gateway.url} sent no JSON") from None
    return [dict(g.get("labels") or {}) for g in data if isinstance(g, dict)]


def forget_run(gateway: Gateway, run_id: str | None = None) -> int:
    """DELETE benchctl's groups of ``run_id`` (every run when None); the number deleted."""
    deleted = 0
    for labels in groups(gateway):
        if labels.get("job") != PUSH_JOB or "run_id" not in labels or (run_id and labels["run_id"] != run_id):
            continue
        status, _ = http_request("DELETE", gateway.url + group_path(labels["run_id"], labels.get("point", "")),
                                 timeout=5, headers=dict(gateway.headers))
        if status in (200, 202):
            deleted += 1
    return deleted


__all__ = ["Gateway", "PushError", "exposition", "forget_run", "group_path", "groups", "point_label", "push_run"]
