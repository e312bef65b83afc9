"""The run manifest: everything needed to repeat a run and to know what was measured.

Stored as ``manifest`` in run.json and as ``manifest.json`` beside it: benchctl's version and commit, the line
(or recipe) as run, every effective setting with the layer that set it, executor and profile, the service's
Slurm job (id, nodes, partition, QOS, account, time), its image (path, and the SIF's sha256 when the pull left
one), the engine's version as the server states it, the model and its revision (the snapshot hash of the HF
cache), GPU model and driver and the loaded modules as the job printed them, and the lifecycle timestamps with
the cold-start figures derived from them.

Every fact is best effort with a short timeout: a manifest never fails or delays a run by more than a few
seconds, and a fact it could not learn is absent rather than guessed.
"""

from __future__ import annotations

import json
import platform
import sys
from collections.abc import Mapping
from datetime import datetime, timezone
from typing import TYPE_CHECKING, Any

from benchctl import __version__
from benchctl.coldstart import cold_start
from benchctl.errors import UserError
from benchctl.redact import redact_value

if TYPE_CHECKING:
    from benchctl.app import App
    from benchctl.bench.kind import BenchTarget
    from benchctl.jobs import Job

# The job's own markers the manifest keeps (printed by batch_templates/_macros.j2's prelude and image steps).
_LIFECYCLE = {"T_STARTED": "started", "T_IMAGE": "image_ready", "T_READY": "ready"}


def _iso(epoch: float | None) -> str | None:
    if epoch is None:
        return None
    return datetime.fromtimestamp(epoch, timezone.utc).isoformat(timespec="milliseconds")


def _float(value: str | None) -> float | None:
    try:
        return float(value) if value is not None else None
    except ValueError:
        return None


def engine_version(url: str, path: str, headers: Mapping[str, str] | None = None) -> Any:
    """What the server says about its version (vLLM ``/version``, Ollama ``/api/version``, ...), or None."""
    if not url or not path:
        return None
    from benchctl.http import http_get

    status, body = http_get(url.rstrip("/") + path, timeout=2.0, limit=4096, headers=dict(headers or {}))
    if status != 200:
        return None
    try:
        data = json.loads(body)
    except ValueError:
        return body.strip()[:200] or None
    if isinstance(data, dict):  # Qdrant's / also carries a title and commit: keep the short facts only
        keep = {k: v for k, v in data.items() if k in ("version", "commit", "title") and isinstance(v, (str, int))}
        return keep or None
    return data if isinstance(data, (str, int, float)) else None


def job_facts(app: App, job: Job) -> dict[str, Any]:
    """The service job's part: Slurm placement, image, model, GPUs, modules, lifecycle, cold start."""
    from benchctl.services.base import SlurmServer

    service: SlurmServer = app.service(job.service)
    opts = job.options
    facts: dict[str, Any] = {
        "job_id": job.id, "service": job.service, "executor": job.executor, "nodes": job.nodes, "host": job.host,
        "partition": opts.get("partition", ""), "qos": opts.get("qos", ""), "account": opts.get("account", ""),
        "reservation": opts.get("reservation", ""), "time_limit": opts.get("time", ""),
        "runtime": opts.get("runtime", ""), "start_options": dict(opts),
    }
    try:
        info = service.log_info(job)
    except (OSError, UserError) as exc:  # an unreadable log: the rest of the manifest still stands
        facts["log_error"] = str(exc)
        return facts
    markers = info.markers
    facts["image"] = {"uri": opts.get("image", ""), "path": markers.get("IMAGE", ""),
                      "pulled_by_job": "PULLED" in markers}
    digest = markers.get("IMAGE_DIGEST", "")
    if digest.startswith("sha256:"):  # written by the job that pulled the image (`pull`, or a start that did)
        facts["image"]["sha256"] = digest[7:]
    if markers.get("GPU"):
        facts["gpu"] = markers["GPU"]
    if "MODULES" in markers:
        facts["modules"] = [m for m in markers["MODULES"].split(":") if m]
    revision = service.model_revision(job)
    if revision:
        facts["model_revision"] = revision
    lifecycle: dict[str, Any] = {"submitted": _iso(job.submitted_at)}
    for marker, name in _LIFECYCLE.items():
        lifecycle[name] = _iso(_float(markers.get(marker)))
    facts["lifecycle"] = lifecycle
    figures = cold_start(job.submitted_at, markers)
    if figures is not None:
        facts["cold_start"] = figures.to_dict()
    return facts


def build_manifest(app: App, target: BenchTarget, kind: str, options: Mapping[str, Any]) -> dict[str, Any]:
    """The manifest of one run against ``target`` with the bench ``options`` as given (typed values)."""
    settings = app.settings
    manifest: dict[str, Any] = {
        "benchctl": {"version": __version__, "git_sha": _git_sha(), "python": platform.python_version(),
                     "platform": platform.platform(terse=True)},
        "invocation": {"line": app.current_line, "argv": list(sys.argv)},
        "executor": app.executor_name, "profile": settings.text("profile"),
        "settings": {key: {"value": settings.values[key], "source": settings.sources.get(key, "default")}
                     for key in sorted(settings.values)},
        "bench": {"kind": kind, "target": target.name, "url": target.url, "options": dict(options)},
    }
    if app.recipe_context:
        manifest["invocation"]["recipe"] = app.recipe_context
    if target.job is not None:
        facts = job_facts(app, target.job)
        service = app.service(target.job.service)
        version = engine_version(target.url, getattr(service, "version_path", ""), target.headers)
        if version is not None:
            facts["engine_version"] = version
        facts["model"] = target.record.get("model", "")
        manifest["service"] = facts
    masked = redact_value(manifest)
    return masked if isinstance(masked, dict) else manifest


def _git_sha() -> str:
    from benchctl.bench.results import git_sha

    return git_sha()


__all__ = ["build_manifest", "engine_version", "job_facts"]
