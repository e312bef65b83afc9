"""``pull``: a short CPU job that fills the SIF cache with the pinned images, once, before a run.

Many jobs of a run pulling from Docker Hub at once would hit its anonymous limit (10 pulls an hour per address,
and the nodes share a few); one job pulls each image once and later jobs find the ``.sif``. ``pull SERVICE``
(or ``pull all``) submits it; ``check``/``logs`` follow it like any job.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any, ClassVar

from benchctl.options import Option, text
from benchctl.services.base import ServiceError, sif_path
from benchctl.services.server import OneShot
from benchctl.templates import TemplateError


class Pull(OneShot):
    name = "pull"
    summary = "pull container images into the SIF cache, once, ahead of a run (pull SERVICE|all)"
    template = "pull.sbatch.j2"
    default_cpus = 2
    startable = False
    extra_options: ClassVar[tuple[Option, ...]] = (
        Option("--images", "comma-separated keys of sif/images.yaml to pull (the `pull` command fills it)", text,
               metavar="KEYS"),
    )

    def images_for(self, names: list[str]) -> list[str]:
        """The images.yaml keys behind ``names`` (services, or "all"); vllm brings its Ray image along."""
        known = dict(self.ctx.images)
        keys = sorted(known) if "all" in names else []
        for name in names:
            if name == "all":
                continue
            matching = [k for k in known if k == name or k.startswith(name + "-")]
            if not matching:
                raise ServiceError(f"pull: no image pinned for {name!r} in sif/images.yaml "
                                   f"(pinned: {', '.join(sorted(known))})")
            keys += [k for k in matching if k not in keys]
        return keys

    def template_values(self, values: Mapping[str, Any], run_dir: Path) -> dict[str, Any]:
        if values.get("runtime") != "apptainer":
            raise TemplateError("pull: nothing to pull with --runtime none (programs run on the host)")
        keys = [k for k in str(values.get("images") or "").split(",") if k]
        if not keys:
            raise TemplateError("pull: name the services whose images to pull (pull SERVICE|all)")
        unknown = [k for k in keys if k not in self.ctx.images]
        if unknown:
            raise TemplateError(f"pull: {', '.join(unknown)} not in sif/images.yaml")
        settings = self.ctx.settings
        return {"pulls": [{"image": self.ctx.images[k], "sif": sif_path(settings, self.ctx.images[k], k)}
                          for k in keys]}


__all__ = ["Pull"]
