"""``tunnel``: bring a service's port to this machine.

With the ``ssh`` executor (benchctl on a laptop) it opens a local port forward over the session's SSH connection
to the job's node:port -- for ``monitor`` to Grafana and Prometheus too -- and ``--list``/``--close`` manage them;
they all close when the shell exits. On the login node itself there is nothing to forward from here: it prints the
``ssh -p PORT USER@LOGIN -NL P:NODE:P`` command to run on the laptop, the same line ``check`` shows.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from rich.table import Table

from benchctl.commands import Command, CommandError, ParsedArgs, Registry
from benchctl.commands.lifecycle import refresh, resolve_jobs
from benchctl.executors.base import ExecutorError
from benchctl.executors.ssh import SshExecutor
from benchctl.options import Complete, Option, OptionError, integer

if TYPE_CHECKING:
    from benchctl.app import App
    from benchctl.executors.ssh_forward import Forward
    from benchctl.jobs import Job
    from benchctl.services.server import Server

# A LOCAL_PORT is checked like any number option (the positional has no Option of its own).
LOCAL_PORT = integer(1, 65535)
# The monitor's ports worth a browser tab (the Pushgateway is for jobs, not for people).
MONITOR_PORTS = ("grafana", "prometheus")


def job_ports(service: Server, job: Job) -> list[tuple[str, int]]:
    """(what, port) the tunnel brings: the service's port, or Grafana's and Prometheus's for a monitor."""
    from benchctl.services.monitor import Monitor

    if isinstance(service, Monitor):
        ports = service.ports(job)
        return [(f"{name} of monitor {job.id}", ports[name]) for name in MONITOR_PORTS if name in ports]
    return [(f"{job.service} {job.id}", job.port)] if job.port else []


def target_job(app: App, target: str) -> tuple[Server, Job]:
    """The running server job ``target`` names (the newest when a service has several), refreshed."""
    from benchctl.services.server import Server

    jobs = resolve_jobs(app, target, active_only=True, manage=True)
    job = refresh(app, [max(jobs, key=lambda j: j.submitted_at)])[0]
    service = app.service(job.service)
    if not isinstance(service, Server):
        raise CommandError(f"{job.label} is a batch run: it has no port to tunnel to")
    if job.state.is_final:
        raise CommandError(f"{job.label} has ended ({job.state.value}): nothing to tunnel to")
    if not job.port:
        raise CommandError(f"{job.label} has no port yet ({job.state.value}); 'check {job.id} --wait' waits for it")
    return service, job


def cmd_tunnel(app: App, args: ParsedArgs) -> None:
    """Forward a service's port to this machine (with --remote), or print the ssh command that does (on the
    login node). --list shows the open tunnels, --close ID|all closes them; all close when benchctl exits."""
    executor = app.executor
    if args.get("list"):
        if args.positionals or args.get("close"):
            raise CommandError("tunnel --list takes nothing else")
        list_tunnels(app, executor.forwards.all() if isinstance(executor, SshExecutor) else [])
        return
    if args.get("close"):
        if args.positionals:
            raise CommandError("tunnel --close takes a tunnel id or 'all', nothing else")
        close_tunnels(app, executor, args.get("close"))
        return
    if not args.positionals:
        raise CommandError("tunnel: name a service or job id (or --list, --close ID|all)")
    service, job = target_job(app, args.positionals[0])
    ports = job_ports(service, job)
    if not ports:
        raise CommandError(f"{job.label} has not said its ports yet ('check {job.id} --wait')")
    if not isinstance(executor, SshExecutor):
        print_hints(app, service, job, ports)
        return
    endpoint = service.endpoint(job)
    host = endpoint.host if endpoint else job.endpoint_host
    wanted: int | None = None
    if len(args.positionals) > 1:
        try:
            wanted = LOCAL_PORT(args.positionals[1])
        except OptionError as exc:
            raise CommandError(f"tunnel: LOCAL_PORT {exc}") from None
    for index, (what, port) in enumerate(ports):
        existing = executor.forwards.find(host, port)
        if existing is not None and not existing.auto and wanted is None:
            app.ui.info(f"tunnel {existing.id} already open: http://{existing.local} → {what} ({host}:{port})")
            continue
        local = wanted + index if wanted is not None else port
        try:
            forward = executor.forwards.open(host, port, local_port=local, label=what)
        except ExecutorError:
            if wanted is not None:
                raise
            forward = executor.forwards.open(host, port, label=what)  # that port is taken here: any free one
        app.ui.success(f"tunnel {forward.id}: http://{forward.local} → {what} on {host}:{port}")
    app.ui.info("  'tunnel --list' shows them, 'tunnel --close ID|all' closes them (exit too)")


def print_hints(app: App, service: Server, job: Job, ports: list[tuple[str, int]]) -> None:
    """On the login node: the ssh command(s) for the laptop (or why none is needed)."""
    lines = [(what, service.tunnel(job, port), port) for what, port in ports]
    if not any(command for _, command, _ in lines):
        app.ui.info(f"{job.label} runs on this machine ({job.executor} executor): "
                    + ", ".join(f"{what} at http://127.0.0.1:{port}" for what, _, port in lines) + "; no tunnel needed")
        return
    app.ui.info("benchctl runs on the login node here; on your laptop, run:")
    for what, command, port in lines:
        app.ui.text(f"  {command}", style="bold")
        app.ui.info(f"    then open http://localhost:{port} ({what})")
    app.ui.info("(or run benchctl on the laptop with --remote USER@LOGIN: 'tunnel' then forwards by itself)")


def list_tunnels(app: App, forwards: list[Forward]) -> None:
    if not forwards:
        app.ui.info("no tunnels open" + ("" if isinstance(app.executor, SshExecutor) else
                                         " (benchctl opens tunnels when it runs on your laptop with --remote)"))
        return
    table = Table(show_edge=False, header_style="bold")
    for column in ("ID", "LOCAL", "REMOTE", "FOR", "CONNS"):
        table.add_column(column, no_wrap=column != "FOR")
    for forward in forwards:
        what = forward.label + (" (automatic)" if forward.auto else "")
        conns = str(forward.connections) + (f" ({forward.errors} failed)" if forward.errors else "")
        table.add_row(str(forward.id), forward.local, forward.remote, what, conns)
    app.ui.renderable(table)


def close_tunnels(app: App, executor: object, which: str) -> None:
    if not isinstance(executor, SshExecutor):
        raise CommandError("no tunnels to close (benchctl opens tunnels only with --remote)")
    if which == "all":
        closed = executor.forwards.close_all()
        app.ui.info(f"closed {len(closed)} tunnel{'s' if len(closed) != 1 else ''}")
        return
    if not which.isdigit():
        raise CommandError(f"tunnel --close: expected a tunnel id or 'all', got {which!r} (see 'tunnel --list')")
    forward = executor.forwards.close(int(which))
    if forward is None:
        raise CommandError(f"no tunnel {which} (see 'tunnel --list')")
    app.ui.info(f"closed tunnel {forward.id} ({forward.local} → {forward.remote})")


def register(registry: Registry) -> None:
    registry.add(Command(
        "tunnel", cmd_tunnel, "tunnel SERVICE|JOBID [LOCAL_PORT] | tunnel --list | tunnel --close ID|all",
        "forward a service's port to this machine (or print the ssh command)", (Complete.TARGET, Complete.NUMBER),
        (Option("--list", "the open tunnels", None),
         Option("--close", "close a tunnel by id, or all of them", metavar="ID|all"))))

__all__ = ["cmd_tunnel", "register"]
