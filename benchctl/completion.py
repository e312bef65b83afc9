"""Tab completion driven by the command registry; reads only cached state (never calls Slurm).

Offers: command names; service names; the command's option names not yet given; option values that are
a choice; tracked job ids (with service, state and node as meta); paths.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import TYPE_CHECKING

from prompt_toolkit.completion import CompleteEvent, Completer, Completion, PathCompleter
from prompt_toolkit.document import Document

from benchctl.commands import Command
from benchctl.options import Complete, Option, find_option

if TYPE_CHECKING:
    from benchctl.app import App


class BenchctlCompleter(Completer):
    def __init__(self, app: App) -> None:
        self.app = app
        self._paths = PathCompleter(expanduser=True)

    def get_completions(self, document: Document, complete_event: CompleteEvent) -> Iterator[Completion]:
        text = document.text_before_cursor
        words = text.split()
        # The word being completed: empty when the cursor follows a space. Split on whitespace only:
        # prompt_toolkit's default word boundaries would cut `--ti` at the dashes and paths at slashes.
        current = "" if not text or text[-1].isspace() else words.pop()
        if not words:
            yield from self._commands(current)
            return
        command = self.app.registry.lookup(words[0])
        if command is None:
            return
        yield from self._for_command(command, words[1:], current)

    def _commands(self, prefix: str) -> Iterator[Completion]:
        for command in self.app.registry:
            for name in (command.name, *command.aliases):
                if name.startswith(prefix) and (name == command.name or prefix):
                    yield Completion(name, -len(prefix), display_meta=command.summary)

    def _for_command(self, command: Command, done: list[str], current: str) -> Iterator[Completion]:
        positionals: list[str] = []
        used: set[str] = set()
        pending: Option | None = None  # an option still waiting for its value
        for word in done:
            if pending is not None:
                pending = None
                continue
            if word.startswith("-"):
                spec = find_option(command.all_options(self.app, positionals), word.split("=", 1)[0])
                if spec is not None:
                    used.add(spec.flag)
                    if not spec.is_switch and "=" not in word:
                        pending = spec
                continue
            positionals.append(word)
        specs = command.all_options(self.app, positionals)
        if pending is not None:
            yield from self._values(pending.completion, current, pending.choices)
            return
        if current.startswith("-"):
            for spec in specs:
                if spec.flag not in used and spec.flag.startswith(current):
                    yield Completion(spec.flag, -len(current), display_meta=spec.help_text)
            return
        if len(positionals) < len(command.args):
            kind = command.args[len(positionals)]
            if kind is Complete.TOPIC:  # help start <Tab>: what `start` takes
                named = self.app.registry.lookup(positionals[0]) if positionals else None
                topics = named.topics(self.app) if named is not None and named.topics else []
                yield from self._values(Complete.CHOICE, current, topics)
                return
            yield from self._values(kind, current, ())
        elif not current:
            for spec in specs:
                if spec.flag not in used:
                    yield Completion(spec.flag, 0, display_meta=spec.help_text)

    def _values(self, kind: Complete, current: str, choices: Iterable[str]) -> Iterator[Completion]:
        if kind is Complete.BENCH and current:  # a job id instead of the service: bench local-3
            benched = {cls.name for cls in self.app.services if cls.bench_kind}
            for job in reversed(self.app.jobs.all()):
                if job.id.startswith(current) and job.service in benched and not job.state.is_final:
                    yield Completion(job.id, -len(current), display_meta=f"{job.service} {job.state.value}")
        if kind is Complete.BENCH:  # the same list `help bench` shows
            from benchctl.commands.bench import bench_topics

            services = {cls.name: cls.summary for cls in self.app.services}
            kinds = {k.name: k.summary for k in self.app.bench_kinds}
            for name in bench_topics(self.app):
                if name.startswith(current):
                    yield Completion(name, -len(current), display_meta=services.get(name) or kinds.get(name, ""))
        if kind is Complete.IMAGES:
            keys = list(self.app.service_context().images)
            pinned = [c.name for c in self.app.services
                      if any(k == c.name or k.startswith(c.name + "-") for k in keys)]
            for name in [*sorted(pinned), "all"]:
                if name.startswith(current):
                    yield Completion(name, -len(current), display_meta="every pinned image" if name == "all" else "")
        if kind in (Complete.SERVICE, Complete.TARGET, Complete.TARGET_ALL):
            for cls in sorted(self.app.services, key=lambda c: c.name):
                if kind is Complete.SERVICE and not cls.startable:
                    continue
                if cls.name.startswith(current):
                    yield Completion(cls.name, -len(current), display_meta=cls.summary)
        if kind in (Complete.JOB, Complete.TARGET, Complete.TARGET_ALL):
            for job in reversed(self.app.jobs.all()):
                if job.id.startswith(current):
                    where = job.host or job.nodes
                    meta = f"{job.service} {job.state.value}" + (f" {where}" if where else "")
                    yield Completion(job.id, -len(current), display_meta=meta)
        if kind is Complete.TARGET_ALL and "all".startswith(current):
            yield Completion("all", -len(current), display_meta="every active job")
        if kind is Complete.RUN:  # the index only (a local file), newest first
            from benchctl.commands.results import newest_first

            for entry in [None, *newest_first(self.app.home / "results")]:
                word = entry.run_id if entry is not None else "last"
                if word.startswith(current):
                    meta = f"{entry.kind} {entry.service} {entry.started_at[:16]}" if entry else "the newest run"
                    yield Completion(word, -len(current), display_meta=meta)
        if kind is Complete.COMMAND:
            yield from self._commands(current)
        if kind is Complete.CHOICE:
            for choice in choices:
                if choice.startswith(current):
                    yield Completion(choice, -len(current))
        if kind is Complete.PATH:
            # The whole word is replaced (not only its last part appended): a directory gets its "/" so the next
            # Tab goes on inside it, and "~/" stays as typed.
            sub = Document(current, len(current))
            for c in self._paths.get_completions(sub, CompleteEvent(completion_requested=True)):
                shown = c.display_text
                word = current[:len(current) + c.start_position] + c.text + ("/" if shown.endswith("/") else "")
                yield Completion(word, -len(current), display=shown)
