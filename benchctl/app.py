"""The application object: settings, registry, job table, executor and output for one session.

Every mode (REPL, ``-e``, ``--script``, piped stdin) feeds lines to ``App.onecmd``; the error boundary
for one command lives in ``App.run_line``, so all modes behave the same.
"""

from __future__ import annotations

import logging
import os
import secrets
import sys
from collections.abc import Callable, Iterable
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING

from benchctl.commands import (
    AlreadyReported,
    CommandError,
    ExitRepl,
    HelpRequested,
    ParsedArgs,
    Registry,
    did_you_mean,
    parse_args,
    split_line,
)
from benchctl.config import Settings, load_settings, state_dir
from benchctl.errors import UserError
from benchctl.executors import Executor, make_executor, resolve_executor_name
from benchctl.executors.files import private_mkdir
from benchctl.executors.process import Runner
from benchctl.jobs import JobTable
from benchctl.redact import learn, redact
from benchctl.registry import Registry as NameRegistry
from benchctl.ui import Ui

if TYPE_CHECKING:
    from benchctl.bench.kind import BenchKind
    from benchctl.jobs import Job
    from benchctl.services import ServiceContext, SlurmServer

log = logging.getLogger(__name__)

PROMPT = "benchctl> "
# Commands that change nothing (no job, no result): a one-shot `benchctl status` leaves no session folder.
READ_ONLY = frozenset({"help", "history", "status", "check", "logs", "config", "save", "exit", "source", "results",
                       "compare", "metrics", "report"})


class App:
    """One benchctl session."""

    def __init__(self, *, settings: Settings | None = None, runner: Runner | None = None, ui: Ui | None = None,
                 executor: str | None = None, profile: str | None = None, executor_obj: Executor | None = None,
                 templates_dir: Path | None = None) -> None:
        self.runner = runner or Runner()
        self.settings = settings or load_settings(
            executor=executor, profile=profile,
            resolve_executor=lambda name: resolve_executor_name(name, self.runner))
        self.ui = ui or Ui()
        self.session_id = datetime.now().strftime("%Y%m%d-%H%M%S-") + secrets.token_hex(2)
        self.jobs = JobTable(self.home / "state" / "jobs.json", runs=self.home / "jobs")
        self.registry = Registry()
        self._executor = executor_obj
        self._templates_dir = templates_dir
        self._ctx: ServiceContext | None = None
        self._services: NameRegistry[type[SlurmServer]] | None = None
        self._bench_kinds: NameRegistry[BenchKind] | None = None
        self.history_strings: list[str] = []  # set by the REPL; `history` reads it
        self.last_failed = False
        self.saved_to: dict[Path, bool] = {}  # transcripts `save` wrote (path -> with HTML): autosave refreshes them
        self.changed = False  # a command that changes jobs or results ran: a one-shot run keeps its transcript
        self.sourcing = 0  # nesting depth of `source FILE`
        self.current_line = ""  # the command line running now (secrets masked): run manifests record it
        self.recipe_context: dict[str, object] | None = None  # the recipe a `run` is executing, for manifests
        self.last_run_id = ""  # the run the last `bench` wrote (a recipe's report and summary name it)
        # Asks the user yes/no; the REPL sets a real question, batch modes (scripts) never ask: yes.
        self.confirm: Callable[[str], bool] = lambda question: True
        from benchctl.commands.bench import register as register_bench_commands
        from benchctl.commands.jobs import register as register_job_commands
        from benchctl.commands.metrics import register as register_metrics_commands
        from benchctl.commands.report import register as register_report_commands
        from benchctl.commands.results import register as register_results_commands
        from benchctl.commands.run import register as register_run_commands
        from benchctl.commands.services import register as register_service_commands
        from benchctl.commands.session import register as register_session_commands
        from benchctl.commands.tunnel import register as register_tunnel_commands

        register_service_commands(self.registry)
        register_job_commands(self.registry)
        register_bench_commands(self.registry)
        register_metrics_commands(self.registry)
        register_results_commands(self.registry)
        register_report_commands(self.registry)
        register_run_commands(self.registry)
        register_session_commands(self.registry)
        register_tunnel_commands(self.registry)

    # ---- lazily built parts --------------------------------------------------------------------
    @property
    def home(self) -> Path:
        return self.settings.home

    @property
    def session_dir(self) -> Path:
        return self.home / "sessions" / self.session_id

    @property
    def executor_name(self) -> str:
        return self._executor.name if self._executor is not None else self.settings.text("executor")

    def owns(self, job: Job, *, connect: bool = True) -> bool:
        """Whether ``job`` belongs to this session's executor (and, over ssh, its login node): the jobs it
        polls, lists as its own and may manage. ``connect=False`` (the toolbar, redrawn on every key) never
        makes the executor -- over ssh that is a login -- and judges by the executor's name until it exists."""
        if self._executor is None and not connect:
            return job.executor == self.executor_name
        return self.executor.owns(job)

    @property
    def executor(self) -> Executor:
        if self._executor is None:
            name = self.settings.text("executor")
            self._executor = make_executor(resolve_executor_name(name, self.runner), self.runner, self.home / "state",
                                           settings=self.settings)
        return self._executor

    def close(self) -> None:
        """End of the session: the executor's forwards and connection (ssh) are closed."""
        if self._executor is not None:
            try:
                self._executor.close()
            except Exception:  # leaving must never fail on a half-dead connection
                log.exception("closing the executor failed")

    def service_context(self) -> ServiceContext:
        """The ServiceContext, built on first use (jinja2 and yaml load only when a service is touched)."""
        if self._ctx is None:
            from benchctl.services import ServiceContext, load_images
            from benchctl.templates import Renderer

            # Jobs run benchctl's python (runtime-none services, the bench client): this one on a login node;
            # over ssh the cluster's own when `remote.python` names it (a laptop's path means nothing there).
            python = sys.executable
            if self.executor.remote and self.settings.text("remote.python"):
                python = self.settings.expand("remote.python")
            self._ctx = ServiceContext(settings=self.settings, executor=self.executor, jobs=self.jobs,
                                       renderer=Renderer(self._templates_dir), images=load_images(),
                                       host_bin_dir=os.path.dirname(python), python=python)
        return self._ctx

    @property
    def services(self) -> NameRegistry[type[SlurmServer]]:
        """This session's service registry (a copy of ``benchctl.services.SERVICES``: register more here)."""
        if self._services is None:
            from benchctl.services import SERVICES

            self._services = SERVICES.copy()
        return self._services

    @property
    def bench_kinds(self) -> NameRegistry[BenchKind]:
        """This session's bench kinds (a copy of ``benchctl.bench.BENCH_KINDS``: register more here)."""
        if self._bench_kinds is None:
            from benchctl.bench import BENCH_KINDS

            self._bench_kinds = BENCH_KINDS.copy()
        return self._bench_kinds

    def service(self, name: str) -> SlurmServer:
        cls = self.services.get(name)
        if cls is None:
            raise CommandError(f"unknown service {name!r} (available: {', '.join(sorted(self.services.names()))})")
        return cls(self.service_context())

    # ---- running commands ------------------------------------------------------------------------
    def onecmd(self, line: str) -> None:
        """Run one command line; raises CommandError/ExitRepl for the caller's error boundary."""
        learn(line)  # its secrets are masked from here on, wherever they show up again
        argv = split_line(line)
        if not argv:
            return  # an empty line does nothing (never repeats the last command)
        command = self.registry.lookup(argv[0])
        if command is None:
            raise CommandError(f"unknown command {argv[0]!r}{did_you_mean(argv[0], self.registry)} (try 'help')")
        self.jobs.sync()  # another benchctl session of this user may have started or stopped jobs
        self.show_notices()
        try:
            parsed = parse_args(self, command, argv[1:])
        except HelpRequested as asked:  # `bench chroma --help` = `help bench chroma`
            helper = self.registry.lookup("help")
            assert helper is not None
            helper.handler(self, ParsedArgs([asked.command.name, *asked.positionals[:1]]))
            return
        if command.name not in READ_ONLY:
            self.changed = True
        self.current_line = redact(line.strip())
        command.handler(self, parsed)

    def show_notices(self) -> None:
        """Problems found in the job table (damage, set-aside records, a newer version), each shown once."""
        for notice in self.jobs.take_notices():
            self.ui.warn(notice)

    def run_line(self, line: str) -> bool:
        """Run one line with the error boundary; returns False when it failed. ExitRepl propagates."""
        self.last_failed = False
        try:
            self.onecmd(line)
            return True
        except ExitRepl:
            raise
        except KeyboardInterrupt:
            self.ui.error("cancelled")
        except AlreadyReported:
            pass
        except UserError as exc:  # commands, services, executors, config, bench kinds: one line
            self.ui.error(str(exc))
        except OSError as exc:  # a full disk, a folder without permission: say which, as such
            where = f": {exc.filename}" if exc.filename else ""
            self.ui.error(f"{exc.strerror or exc}{where}")
        except Exception as exc:  # a bug: full traceback to the log file, one line on screen
            log.exception("command failed: %r", redact(line))
            self.ui.error(f"internal error: {exc.__class__.__name__}: {exc} (details in {log_file()})")
        self.last_failed = True
        return False

    def run_lines(self, lines: Iterable[str], *, keep_going: bool = False, echo: bool = True) -> int:
        """Batch modes: returns the number of failed commands; stops at the first failure unless keep_going."""
        failures = 0
        for raw in lines:
            line = raw.strip()
            if not line or line.startswith("#"):
                continue
            if echo:
                self.ui.transcript.record_input(PROMPT, line)
            try:
                ok = self.run_line(line)
            except ExitRepl:
                break
            if not ok:
                failures += 1
                if not keep_going:
                    break
        return failures

    def autosave(self, *, one_shot: bool = False) -> Path | None:
        """Save the transcript into the session directory (on exit, EOF and crashes), and refresh every
        transcript `save` wrote earlier (its HTML and job list too). A one-shot run that changed nothing
        (``benchctl status``) keeps no session folder."""
        import json

        if not self.ui.transcript.text().strip():
            return None
        for target, html in self.saved_to.items():
            try:
                self.ui.transcript.save(target)
                if html:
                    self.ui.transcript.save(target.with_suffix(".html"), html=True)
                jobs = target.with_name(target.stem + "-jobs.json")
                jobs.write_text(json.dumps([j.to_dict() for j in self.jobs.all()], indent=1))
            except OSError as exc:
                log.warning("refreshing %s failed: %s", target, exc)
        if one_shot and not self.changed:
            return None
        try:
            return self.ui.transcript.save(self.session_dir / "transcript.txt")
        except OSError as exc:
            log.warning("autosave failed: %s", exc)
            return None


def log_file() -> Path:
    return state_dir() / "logs" / "benchctl.log"


class _RedactingFilter(logging.Filter):
    """benchctl's log never holds a secret: the message and any traceback are masked before they are written."""

    def filter(self, record: logging.LogRecord) -> bool:
        record.msg, record.args = redact(record.getMessage()), None
        if record.exc_info:
            import traceback

            record.exc_text = redact("".join(traceback.format_exception(*record.exc_info)).rstrip())
            record.exc_info = None
        return True


def setup_logging(level: int = logging.INFO) -> None:
    """benchctl's own log (tracebacks go here, never to the screen). Tolerates an unwritable state dir."""
    path = log_file()
    try:
        private_mkdir(path.parent)
        os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600))  # created private
        handler: logging.Handler = logging.FileHandler(path)
    except OSError:
        handler = logging.NullHandler()
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    handler.addFilter(_RedactingFilter())
    root = logging.getLogger("benchctl")
    root.handlers[:] = [handler]
    root.setLevel(level)
    root.propagate = False
