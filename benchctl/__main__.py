"""Entry point: pick the mode -- REPL, ``-e "CMD; CMD"``, ``--script FILE`` or piped stdin.

Heavy modules (prompt_toolkit, jinja2, yaml) are imported only by the modes and commands that use them,
so ``benchctl -e help`` starts fast on a busy login node.
"""

from __future__ import annotations

import argparse
import shlex
import signal
import sys
from collections.abc import Sequence
from types import FrameType
from typing import TYPE_CHECKING

from benchctl import __version__

if TYPE_CHECKING:
    from benchctl.app import App


def split_commands(text: str) -> list[str]:
    """Split ``-e`` text on ``;`` outside quotes (``logs x; stop x`` → two commands)."""
    parts: list[str] = []
    current: list[str] = []
    quote = ""
    for ch in text:
        if quote:
            if ch == quote:
                quote = ""
        elif ch in "'\"":
            quote = ch
        elif ch == ";":
            parts.append("".join(current))
            current = []
            continue
        current.append(ch)
    parts.append("".join(current))
    return [p.strip() for p in parts if p.strip()]


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="benchctl", description="Deploy, check and benchmark AI-factory services "
                                "as Slurm jobs, from one shell.")
    mode = p.add_mutually_exclusive_group()
    mode.add_argument("-e", "--execute", metavar="CMDS", help="run commands separated by ';' and exit")
    mode.add_argument("--script", metavar="FILE", help="run commands from FILE (one per line, # comments)")
    p.add_argument("--keep-going", action="store_true", help="with --script/stdin: continue after a failed command")
    from benchctl.config import PROFILES
    from benchctl.executors import executor_choices

    p.add_argument("--executor", choices=executor_choices(), help="where jobs run (default: config)")
    p.add_argument("--profile", choices=("auto", *PROFILES), help="site profile (default: config)")
    p.add_argument("--remote", metavar="USER@HOST[:PORT]", help="drive Slurm on this login node over SSH (the ssh "
                   "executor), e.g. u100000@login.lxp.lu:8822")
    p.add_argument("--known-hosts", metavar="FILE", help="known_hosts file for --remote (default ~/.ssh/known_hosts)")
    p.add_argument("--version", action="version", version=f"benchctl {__version__}")
    p.add_argument("command", nargs=argparse.REMAINDER, help="one command to run, e.g. `benchctl status`")
    return p


def _exit_on_signal(signum: int, frame: FrameType | None) -> None:
    # A dropped SSH session sends SIGHUP: leave through the normal path so the transcript is saved.
    raise SystemExit(128 + signum)


def remote_executor(args: argparse.Namespace) -> str | None:
    """The executor the options ask for: ``--remote`` means ``ssh`` (and no other)."""
    from benchctl.config import ConfigError

    executor: str | None = args.executor
    if args.remote is None:
        return executor
    if executor not in (None, "ssh"):
        raise ConfigError(f"--remote runs jobs over SSH: it does not go with --executor {executor}")
    from benchctl.executors.ssh_connect import parse_remote

    try:
        parse_remote(args.remote)
    except ValueError as exc:
        raise ConfigError(f"--remote {exc}") from None
    return "ssh"


def remote_settings(app: App, args: argparse.Namespace) -> None:
    """``--remote``/``--known-hosts`` as settings of the ``[remote]`` section (``config`` shows them as options)."""
    if args.remote is not None:
        app.settings.layer({"remote.host": args.remote.strip()}, "option --remote")
    if args.known_hosts is not None:
        app.settings.layer({"remote.known_hosts": args.known_hosts}, "option --known-hosts")


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    for sig in (signal.SIGHUP, signal.SIGTERM):
        signal.signal(sig, _exit_on_signal)
    from benchctl.app import App, setup_logging
    from benchctl.config import ConfigError

    setup_logging()
    try:
        executor = remote_executor(args)
        app = App(executor=executor, profile=None if args.profile in (None, "auto") else args.profile)
        remote_settings(app, args)
    except ConfigError as exc:
        print(f"benchctl: {exc}", file=sys.stderr)
        return 2
    interactive = args.execute is None and args.script is None and not args.command and sys.stdin.isatty()
    if not interactive:
        from rich.console import Console

        app.ui.err_console = Console(stderr=True, highlight=False)
    try:
        if args.execute is not None:
            return 1 if app.run_lines(split_commands(args.execute), keep_going=args.keep_going) else 0
        if args.command:
            return 1 if app.run_lines([shlex.join(args.command)]) else 0
        if args.script is not None:
            try:
                with open(args.script) as fh:
                    lines = fh.readlines()
            except OSError as exc:
                print(f"benchctl: cannot read {args.script}: {exc.strerror}", file=sys.stderr)
                return 2
            return 1 if app.run_lines(lines, keep_going=args.keep_going) else 0
        if not sys.stdin.isatty():
            return 1 if app.run_lines(sys.stdin, keep_going=args.keep_going) else 0
        from benchctl.repl import run_repl

        run_repl(app)
        return 0
    finally:  # also on Ctrl-C and crashes: the transcript survives
        app.autosave(one_shot=not interactive)
        app.close()  # tunnels and the SSH connection


if __name__ == "__main__":
    sys.exit(main())
