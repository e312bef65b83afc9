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
    version_path = "/api/v2/version"
    default_cpus = 4
    ready_timeout = 300
    # Chroma's server (`chroma run`, Rust, 1.x) has no authentication: its CHROMA_SERVER_AUTHN_* settings are
    # accepted and ignored (verified on chromadb 1.5.9: a request without a token is answered 200).
    no_auth_note = ("ChromaDB's server has no authentication: anyone on the cluster who finds the port can read "
                    "and change its data")
    extra_options: ClassVar[tuple[Option, ...]] = (
        Option("--data-dir", "where chroma keeps its data (default: a new dir under {scratch})", path,
               metavar="DIR", complete=Complete.PATH),
    )

    def template_values(self, values: Mapping[str, Any], run_dir: Path) -> dict[str, Any]:
        data_dir = values.get("data_dir") or str(
            Path(self.ctx.settings.expand("paths.scratch")) / "benchctl" / "chroma" / run_dir.name)
        return {"data_dir": str(data_dir)}
