"""ChromaDB vector database: ``chroma run`` on one node, ready when ``GET /api/v2/heartbeat`` answers."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any, ClassVar

from benchctl.services.base import SlurmServer
from benchctl.services.options import Option


class Chroma(SlurmServer):
    name = "chroma"
    summary = "ChromaDB vector database (chroma run, HTTP API v2)"
    template = "chroma.sbatch.j2"
    health_path = "/api/v2/heartbeat"
    default_cpus = 4
    ready_timeout = 300
    bench_kind = "vector"
    extra_options: ClassVar[tuple[Option, ...]] = (
        Option("--data-dir", "path", "where chroma keeps its data (default: a new dir under {scratch})",
               metavar="DIR"),
    )

    def template_values(self, values: Mapping[str, Any], run_dir: Path) -> dict[str, Any]:
        data_dir = values.get("data_dir") or str(
            Path(self.ctx.settings.expand("paths.scratch")) / "benchctl" / "chroma" / run_dir.name)
        return {"data_dir": str(data_dir)}
