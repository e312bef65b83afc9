"""ChromaDB vector database: ``chroma run`` on one node, ready when ``GET /api/v2/heartbeat`` answers."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any, ClassVar

from benchctl.options import Complete, Option, path
from benchctl.services.server import VectorServer


class Chroma(VectorServer):
    name = "chroma"
    summary = "ChromaDB vector database (chroma run, HTTP API v2)"
    template = "chroma.sbatch.j2"
    health_path = "/api/v2/heartbeat"
    default_cpus = 4
    ready_timeout = 300
    extra_options: ClassVar[tuple[Option, ...]] = (
        Option("--data-dir", "where chroma keeps its data (default: a new dir under {scratch})", path,
               metavar="DIR", complete=Complete.PATH),
    )

    def template_values(self, values: Mapping[str, Any], run_dir: Path) -> dict[str, Any]:
        data_dir = values.get("data_dir") or str(
            Path(self.ctx.settings.expand("paths.scratch")) / "benchctl" / "chroma" / run_dir.name)
        return {"data_dir": str(data_dir)}
