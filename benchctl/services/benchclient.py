"""``bench-client``: the benchmark client as a Slurm job (``bench SERVICE --client job``), not a service of
its own -- submitted by ``bench``, never by ``start``.

One ``srun --ntasks N --nodes M`` step runs ``python -m benchctl.bench.client.task`` with the python benchctl
runs with (``sys.executable``: on a cluster it is on the shared file system, so every node has it, with
benchctl itself -- the client needs no container). Under the ``local`` executor, which has no ``srun``, the
script starts the N tasks itself. The spec (the typed config) is written into the job's folder beside the
script; the server's API key travels in the job's environment, never in a file or the script.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any, ClassVar

from benchctl.options import Option, integer
from benchctl.services.server import OneShot

SPEC = "spec.json"
INPUT_KEYS = ("prompts", "trace", "structured")  # the config's values that may name a file the tasks read
OUT = "client"  # the tasks' records and results, in the job's folder


class BenchClient(OneShot):
    name = "bench-client"
    summary = "the benchmark client as a Slurm job (submitted by `bench SERVICE --client job`)"
    template = "bench-client.sbatch.j2"
    default_cpus = 2  # per task: the event loop's core, and one for the interpreter's and kernel's share
    startable = False
    extra_options: ClassVar[tuple[Option, ...]] = (
        Option("--client-tasks", "client processes (one srun step of N tasks)", integer(1), default=1,
               metavar="N"),
    )

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        # Set by `bench` before submit: the spec written beside the script, and the variables the job gets
        # (the API key): neither is a start value, so neither reaches the job table or job.json.
        self.spec: dict[str, Any] = {}
        self.env: dict[str, str] = {}

    def template_values(self, values: Mapping[str, Any], run_dir: Path) -> dict[str, Any]:
        # The python benchctl runs with, or the cluster's (`remote.python`); a test pins another with ``python``.
        python = str(values.get("python") or self.ctx.python or sys.executable)
        return {"tasks": int(values["client_tasks"]), "python": python, "spec": str(run_dir / SPEC),
                "out": str(run_dir / OUT), "local": self.ctx.executor.name == "local"}

    def prepare_run_dir(self, values: Mapping[str, Any], run_dir: Path) -> None:
        self.files.mkdir(run_dir / OUT)
        spec = self.with_inputs(run_dir) if self.ctx.executor.remote else self.spec
        self.files.write_text(run_dir / SPEC, json.dumps(spec, indent=1), mode=0o600)

    def with_inputs(self, run_dir: Path) -> dict[str, Any]:
        """Over ssh the tasks cannot read this machine's files: the run's input files (--prompts, --trace,
        --structured FILE) are copied into the job's folder and the spec names those copies."""
        config = dict(self.spec.get("config") or {})
        for key in INPUT_KEYS:
            local = Path(str(config.get(key) or "")).expanduser()
            if not config.get(key) or not local.is_file():
                continue  # unset, or built-in sets (--structured json,choice)
            remote = run_dir / "inputs" / f"{key}-{local.name}"
            self.files.mkdir(remote.parent)
            self.files.write_text(remote, local.read_text(encoding="utf-8"), mode=0o600)
            config[key] = str(remote)
        return {**self.spec, "config": config}

    def make_credentials(self, values: Mapping[str, Any], run_dir: Path) -> dict[str, str]:
        return dict(self.env)


__all__ = ["OUT", "SPEC", "BenchClient"]
