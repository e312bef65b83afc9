"""``bench``'s options of where the load generator runs, and the plan they make. Light to import: ``help``
and completion read the options."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from benchctl.bench.kind import BenchError
from benchctl.options import Option, integer, text

CLIENT_OPTIONS: tuple[Option, ...] = (
    Option("--client", "where the load generator runs: here (this process, or --client-tasks local processes) "
           "or job (a Slurm job of its own); default: bench.client in the config (job on meluxina, here "
           "locally)", choices=("here", "job")),
    Option("--client-tasks", "client processes sharing the load (closed loop: the users; open loop: the "
           "arrivals); results merged from all their requests", integer(1), metavar="N"),
    Option("--client-nodes", "nodes of the client job (--client job)", integer(1), metavar="M"),
    Option("--client-partition", "partition of the client job (default: slurm.partition_cpu)", text, metavar="P"),
)
# The kinds whose client can run as several tasks or as a job (the others run in this process).
SPLITTABLE = ("llm",)


@dataclass(frozen=True)
class ClientPlan:
    """Where a run's client runs: ``where`` "here" or "job", ``tasks`` processes over ``nodes`` nodes."""

    where: str
    tasks: int = 1
    nodes: int = 1
    partition: str = ""
    defaulted: bool = False  # "job" came from the config, not from --client

    def for_url(self, url: str) -> tuple[ClientPlan, str]:
        """The plan for a target at ``url``: the config's default "job" does not apply to a loopback URL (a
        client on another node could not reach it: `bench llm --url http://127.0.0.1:...`, a tunnel)."""
        from urllib.parse import urlsplit

        host = urlsplit(url).hostname or ""
        if self.defaulted and self.where == "job" and (host == "localhost" or host.startswith("127.")):
            return ClientPlan("here", self.tasks, 1), f"the client runs here: {url} is this machine's own address"
        return self, ""

    @property
    def in_process(self) -> bool:
        """The kind's own run in this process (what `bench` always did)."""
        return self.where == "here" and self.tasks == 1


def client_plan(kind: str, values: Mapping[str, Any], default: str) -> tuple[ClientPlan, str]:
    """The plan from the options (``default``: the config's bench.client), and a note to say ("" = none).
    Asking a kind that cannot split its load for a job or tasks is refused; the config's default is not."""
    where = str(values.get("client") or default or "here")
    tasks, nodes = int(values.get("client_tasks") or 1), int(values.get("client_nodes") or 1)
    asked = bool(values.get("client") == "job" or tasks > 1 or values.get("client_nodes")
                 or values.get("client_partition"))
    if kind not in SPLITTABLE:
        if asked:
            raise BenchError(f"bench: --client job/--client-tasks/--client-nodes: only the {', '.join(SPLITTABLE)} "
                             f"kind runs as client tasks or a client job so far; the {kind} client runs here")
        return ClientPlan("here"), ""  # the config's default: the other kinds simply run here, as always
    if where == "here" and (values.get("client_nodes") or values.get("client_partition")):
        raise BenchError("bench: --client-nodes and --client-partition are for --client job")
    if nodes > tasks:
        raise BenchError(f"bench: --client-nodes {nodes} > --client-tasks {tasks}: a node would have no task")
    return ClientPlan(where, tasks, nodes, str(values.get("client_partition") or ""),
                      defaulted=not values.get("client")), ""


__all__ = ["CLIENT_OPTIONS", "SPLITTABLE", "ClientPlan", "client_plan"]
