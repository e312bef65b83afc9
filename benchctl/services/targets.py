"""What a service job tells the monitor: its own target (services with a metrics endpoint) and, with
``--exporters node,dcgm``, sidecar exporters on every node of the job (node-exporter; the DCGM exporter on
GPU nodes), each behind the monitor's basic auth and registered in the monitor's ``targets/exporters``.
"""

from __future__ import annotations

import getpass
import json
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from benchctl.options import Option, OptionError
from benchctl.templates import TemplateError

if TYPE_CHECKING:
    from benchctl.jobs import Job
    from benchctl.services.base import ServiceContext, SlurmServer

KINDS = ("node", "dcgm")
IMAGE_KEYS = {"node": "node-exporter", "dcgm": "dcgm-exporter"}


def exporter_list(raw: str) -> tuple[str, ...]:
    """``node,dcgm`` -> ("node", "dcgm"); anything else is refused naming the kinds."""
    kinds = tuple(dict.fromkeys(k.strip() for k in raw.split(",") if k.strip()))
    unknown = [k for k in kinds if k not in KINDS]
    if unknown or not kinds:
        raise OptionError(f"{', '.join(unknown) or raw!r}: exporters are {', '.join(KINDS)}")
    return kinds


EXPORTERS = Option("--exporters", "sidecars on the job's nodes, scraped by the running monitor: node, dcgm "
                   "(node-exporter; NVIDIA DCGM on GPU nodes)", exporter_list, metavar="LIST")


def newest_monitor(ctx: ServiceContext) -> Job | None:
    """The newest active (as last recorded) monitor job of this executor: what jobs register with, what bench
    pushes to and what `metrics` reads."""
    monitors = [j for j in ctx.jobs.all() if j.service == "monitor" and not j.state.is_final
                and ctx.executor.owns(j) and j.run_dir]
    return max(monitors, key=lambda j: j.submitted_at, default=None)


def monitor_targets(service: SlurmServer) -> str:
    """The targets folder of the newest active monitor job ("" when none runs): a job started meanwhile
    registers there, so Prometheus scrapes it."""
    newest = newest_monitor(service.ctx)
    return str(Path(newest.run_dir) / "targets") if newest else ""


def target_json(service: SlurmServer, values: Mapping[str, Any]) -> str:
    """The job's own Prometheus file_sd entry; @ADDR@, @JOB@ and @NODE@ are filled in by the job."""
    labels = {"service": service.name, "job_id": "@JOB@", "node": "@NODE@", "user": getpass.getuser(),
              "__metrics_path__": service.metrics_path}
    if values.get("model"):
        labels["model"] = str(values["model"])
    return json.dumps([{"targets": ["@ADDR@"], "labels": labels}])


def exporter_values(service: SlurmServer, values: Mapping[str, Any]) -> dict[str, Any]:
    """The template's ``job.exporters`` and what the exporters need (the monitor's folder and web.yml, their
    images, their target labels with @ADDR@/@JOB@/@NODE@/@KIND@ filled in by the job)."""
    kinds = list(values.get("exporters") or ())
    if not kinds:
        return {"exporters": []}
    targets = str(values.get("monitor_targets") or "")
    if not targets:
        raise TemplateError("--exporters: no monitor runs to register them with ('start monitor' first)")
    if "dcgm" in kinds and not int(values.get("gpus") or 0):
        kinds.remove("dcgm")
        service.ctx.site.say(f"{service.name}: no GPUs in this job, so no DCGM exporter")
    images = {}
    if values.get("runtime") == "apptainer":
        from benchctl.services.base import sif_path

        for kind in kinds:
            image = service.ctx.images.get(IMAGE_KEYS[kind])
            if not image:
                raise TemplateError(f"--exporters: no image pinned for {IMAGE_KEYS[kind]!r} in sif/images.yaml")
            images[kind] = (sif_path(service.ctx.settings, image, IMAGE_KEYS[kind]), image)
    labels = {"service": service.name, "job_id": "@JOB@", "node": "@NODE@", "user": getpass.getuser(),
              "exporter": "@KIND@"}
    return {"exporters": kinds, "exporter_dir": str(Path(targets) / "exporters"),
            "monitor_web": str(Path(targets).parent / "web.yml"), "exporter_images": images,
            "exporter_labels": json.dumps([{"targets": ["@ADDR@"], "labels": labels}])}


__all__ = ["EXPORTERS", "KINDS", "exporter_list", "exporter_values", "monitor_targets", "newest_monitor", "target_json"]
