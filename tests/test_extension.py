"""benchctl is extended through its public registries, without editing any of its modules.

This module defines, from the outside: a new service (``echo``: its own template in a test folder, its own
start option, its own bench kind), a new bench kind (``echo-bench``) and a new LLM backend (``echo-api``).
Registered on one App (``app.services``, ``app.bench_kinds``) and in ``BACKENDS``, each shows up in ``help``,
Tab completion, ``start --dry-run``, ``start`` + ``check --wait`` (a real local job), ``bench`` dispatch and
``bench llm --backend``. ARCHITECTURE.md's "how to add" lists are exactly these steps.
"""

from __future__ import annotations

import json
import time
import urllib.request
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import pytest
from prompt_toolkit.completion import CompleteEvent
from prompt_toolkit.document import Document
from rich.console import RenderableType
from rich.text import Text

from benchctl.app import App
from benchctl.bench.kind import BenchKind, BenchTarget, Progress
from benchctl.bench.llm.backends import BACKENDS, Backend, Messages
from benchctl.bench.llm.stream import OpenAIStream
from benchctl.bench.results import RunResult, RunWriter, read_run
from benchctl.completion import BenchctlCompleter
from benchctl.config import load_settings
from benchctl.llmsim import SimConfig, running
from benchctl.options import Option, integer
from benchctl.services.server import Server
from tests.conftest import string_ui

TEMPLATE = """#!/bin/bash -l
{% import "_macros.j2" as m %}
{{ m.sbatch_header(job) }}

# benchctl: the echo test service ({{ greeting | q }})
{{ m.prelude(job) }}

{{ m.pick_port(job.port) }}
{% call m.exec(job) %}python3 -m http.server "$PORT" --bind 127.0.0.1{% endcall %} &
{{ m.serve(job) }}
"""


def make_echo_service(template_dir: Path) -> type[Server]:
    class Echo(Server):
        name = "echo"
        summary = "a static HTTP server (test service)"
        template = "echo.sbatch.j2"
        health_path = "/"
        bench_kind = "echo-bench"
        default_cpus = 1
        ready_timeout = 30
        extra_options: ClassVar[tuple[Option, ...]] = (Option("--greeting", "what the script says", default="hi"),)

        def template_values(self, values: Mapping[str, Any], run_dir: Path) -> dict[str, Any]:
            return {"greeting": values["greeting"]}

    Echo.template_dir = template_dir
    return Echo


@dataclass
class EchoConfig:
    rounds: int = 3


class EchoKind(BenchKind):
    """GET the target's URL ``--rounds`` times; one record per request."""

    name = "echo-bench"
    summary = "GET the endpoint a few times (test kind)"

    @property
    def options(self) -> tuple[Option, ...]:
        return (Option("--rounds", "requests to send", integer(1), default=EchoConfig.rounds, metavar="N"),)

    def config(self, values: Mapping[str, Any]) -> EchoConfig:
        return EchoConfig(rounds=values.get("rounds") or EchoConfig.rounds)

    def run(self, target: BenchTarget, config: EchoConfig, writer: RunWriter, progress: Progress) -> RunResult:
        times = []
        for i in range(config.rounds):
            t0 = time.perf_counter()
            with urllib.request.urlopen(target.url + "/", timeout=5) as resp:
                status = resp.status
            times.append(time.perf_counter() - t0)
            writer.request({"i": i, "status": status})
            progress.note(f"  request {i}: HTTP {status}")
        return writer.envelope(service=target.record, config={"rounds": config.rounds},
                               metrics={"requests": len(times)}, points=[{"mean_ms": 1000 * sum(times) / len(times)}],
                               client_health={}, errors={})

    def summary_view(self, result: RunResult) -> RenderableType:
        return Text(f"echo: {result.metrics['requests']} requests, mean {result.points[0]['mean_ms']:.2f} ms")


@pytest.fixture
def ext_app(tmp_path: Path) -> Iterator[App]:
    template_dir = tmp_path / "templates"
    template_dir.mkdir()
    (template_dir / "echo.sbatch.j2").write_text(TEMPLATE)
    ui, buf = string_ui()
    app = App(settings=load_settings(executor="local", profile="local"), ui=ui)
    app.out = buf  # type: ignore[attr-defined]
    app.services.register(make_echo_service(template_dir))
    app.bench_kinds.register(EchoKind())
    yield app
    for job in app.jobs.active():
        app.service(job.service).stop(job, grace=5, poll=0.2)


def out(app: App) -> str:
    return str(app.out.getvalue())  # type: ignore[attr-defined]


def completions(app: App, text: str) -> list[str]:
    return [c.text for c in BenchctlCompleter(app).get_completions(Document(text), CompleteEvent())]


def test_new_service_in_help_completion_and_dry_run(ext_app: App) -> None:
    assert ext_app.run_line("help")
    assert "echo" in out(ext_app).split("services:", 1)[1]
    assert ext_app.run_line("help start echo")
    assert "--greeting" in out(ext_app) and "what the script says (default hi)" in out(ext_app)
    assert "echo" in completions(ext_app, "start e")
    assert completions(ext_app, "start echo --gr") == ["--greeting"]
    assert "echo" in completions(ext_app, "bench e")
    assert completions(ext_app, "bench echo --ro") == ["--rounds"]
    assert ext_app.run_line("start echo --dry-run --greeting 'hello there'")
    assert "# benchctl: the echo test service ('hello there')" in out(ext_app)  # its own template
    assert ext_app.jobs.all() == []
    # A second App does not see what this one registered.
    assert "echo" not in App(settings=load_settings(executor="local", profile="local"), ui=string_ui()[0]).services


def test_new_service_starts_checks_and_benches_with_its_own_kind(ext_app: App) -> None:
    assert ext_app.run_line("start echo --time 5"), out(ext_app)
    assert ext_app.run_line("check echo --wait --timeout 30"), out(ext_app)
    assert "echo job local-" in out(ext_app) and "ready" in out(ext_app), out(ext_app)
    assert ext_app.run_line("bench echo --rounds 2"), out(ext_app)
    text = out(ext_app)
    assert "request 1: HTTP 200" in text and "echo: 2 requests" in text
    run = read_run(Path(text.split("results: ", 1)[1].split()[0]))
    assert run.kind == "echo-bench" and run.service["name"] == "echo" and run.metrics == {"requests": 2}
    assert len((run.path.parent / "requests.jsonl").read_text().splitlines()) == 2  # type: ignore[union-attr]
    assert ext_app.run_line("stop echo")
    assert not ext_app.jobs.active()


def test_new_llm_backend_is_a_choice_and_drives_the_requests(app: App, tmp_path: Path) -> None:
    calls: list[Messages] = []

    def body(model: str, messages: Messages, out_tokens: int, exact: bool) -> dict[str, Any]:
        calls.append(messages)
        return {"model": model, "prompt": "echo: " + messages[-1][1], "max_tokens": out_tokens, "stream": True,
                "stream_options": {"include_usage": True}}

    BACKENDS.register(Backend("echo-api", "completions with an echo: prefix (test)", "/v1/completions", False, body,
                              OpenAIStream))
    try:
        assert "echo-api" in completions(app, "bench llm --backend ")
        output = tmp_path / "run.json"
        with running(SimConfig(ttft_ms=1, itl_ms=1, output_tokens=3)) as sim:
            assert app.run_line(f"bench llm --url {sim.url} --backend echo-api --model sim --requests 3 "
                                f"--concurrency 1 --output-tokens 3 --output {output}"), out(app)
        run = json.loads(output.read_text())
        assert run["backend"] == "echo-api" and run["completed"] == 3 and len(calls) == 3
    finally:
        BACKENDS.unregister("echo-api")
    assert not app.run_line("bench llm --url http://127.0.0.1:9 --backend echo-api --model m")
    assert "--backend: expected one of" in out(app)

