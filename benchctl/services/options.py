"""``start`` options every service shares, and value parsers only services need.

The records are ``benchctl.options.Option`` (the one option system): they drive ``start`` parsing, ``help
start``, completion, recipe validation and ``bench io500``, which takes the same options.
"""

from __future__ import annotations

from benchctl.executors.process import submission_env
from benchctl.options import Complete, Option, OptionError, env_name, integer, memory, slurm_time


def job_env_name(raw: str) -> str:
    """The NAME of a variable of the submitting shell that the job reads (a key, a token); the value itself
    never reaches the script. Names sbatch would not pass on are refused."""
    name = env_name(raw)
    if name not in submission_env({name: "x"}):
        raise OptionError(f"{name} cannot carry the key: benchctl does not pass SLURM_*, SBATCH_*, SALLOC_* or "
                          f"SRUN_* variables to sbatch; use another name")
    return name


PORT = integer(0, 65535)

# Added to the start options of every service that supports authentication.
NO_AUTH = Option("--no-auth", "serve without an API key (anyone on the cluster who finds the port can use it)",
                 None)

COMMON_OPTIONS: tuple[Option, ...] = (
    Option("--partition", "Slurm partition (default: slurm.partition_cpu / partition_gpu)", metavar="P"),
    Option("--account", "project account to charge (default: slurm.account)", metavar="ACCOUNT"),
    Option("--qos", "quality of service (default: slurm.qos)", metavar="QOS"),
    Option("--reservation", "run in this reservation, e.g. gpudev/cpudev with --qos dev (default: "
           "slurm.reservation)", metavar="NAME"),
    Option("--time", "wall time limit, e.g. 01:00:00 (default: slurm.time)", slurm_time, metavar="T"),
    Option("--cpus", "CPUs for the service", integer(1), metavar="N"),
    Option("--no-multithread", "one thread per core (--hint=nomultithread; the default CPU count halves)", None),
    Option("--mem", "memory per node, e.g. 16G", memory, metavar="M"),
    Option("--port", "fixed port (default: a free port picked on the node)", PORT, metavar="PORT"),
    Option("--runtime", "container runtime (default: container.runtime)", choices=("apptainer", "none")),
    Option("--image", "container image for apptainer (default: sif/images.yaml)", metavar="URI"),
)

__all__ = ["COMMON_OPTIONS", "NO_AUTH", "PORT", "Complete", "Option", "OptionError", "job_env_name"]
