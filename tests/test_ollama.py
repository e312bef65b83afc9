"""Ollama: the service (options, batch script, golden files), the model-aware readiness probe against a real
HTTP server speaking Ollama's /api/tags, and a whole job with a fake `ollama` on PATH (runtime none).

Golden files:

    BENCHCTL_UPDATE_GOLDEN=1 .venv/bin/python -m pytest tests/test_golden.py tests/test_ollama.py
"""

from __future__ import annotations

import dataclasses
import json
import re
import shlex
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from benchctl.app import App
from benchctl.executors.local import sbatch_options
from benchctl.jobs import Job
from benchctl.services import SERVICES, ServiceError
from benchctl.services.ollama import Ollama, model_listed, with_tag
from benchctl.slurm.states import JobState
from benchctl.templates import Renderer, TemplateError
from tests.fakes import FakeSlurm
from tests.test_templates import BASH, HOST_BIN_DIR, RUNTIMES, bash_syntax_ok, service_for

RUN_DIR = Path("/home/u/benchctl/jobs/ollama-X")
# Pinned here (not read from sif/images.yaml) so the golden files change only when the template does.
IMAGE = "docker://ollama/ollama:0.35.1"
IMAGES = {"ollama": IMAGE}
# The golden scripts: apptainer with every option, none with only the required model.
GOLDEN_OPTIONS: dict[str, dict[str, Any]] = {
    "apptainer": {"model": "llama3.2", "parallel": 4, "max_loaded": 2},
    "none": {"model": "qwen3:4b"},
}
HOSTILE_MODELS = ["llama3.2; touch /tmp/pwned", "$(touch /tmp/pwned)", "it's `id`", "-x --insecure", 'a"b$HOME']


def make_service(tmp_path: Path, runtime: str, host_bin_dir: str = HOST_BIN_DIR) -> Ollama:
    return service_for("ollama", tmp_path, runtime, IMAGES, host_bin_dir)  # type: ignore[no-any-return]


def render(tmp_path: Path, runtime: str, options: dict[str, Any] | None = None) -> str:
    service = make_service(tmp_path, runtime)
    values = service.resolve({"model": "llama3.2", **(options or {})})
    assert values["runtime"] == runtime
    return service.render(values, RUN_DIR)


# ---- golden files and the script's shape ------------------------------------------------------------


@pytest.mark.skipif(BASH is None, reason="bash not installed")
@pytest.mark.parametrize("runtime", sorted(RUNTIMES))
@pytest.mark.parametrize("options", [{}, {"parallel": 8, "max_loaded": 3, "port": 11434},
                                     {"models_dir": "/tmp/it's $(id) `id`"}, {"model": HOSTILE_MODELS[2]}],
                         ids=["default", "knobs", "dir", "model"])
def test_rendered_script_passes_bash_n(tmp_path: Path, runtime: str, options: dict[str, Any]) -> None:
    script = render(tmp_path, runtime, options)
    assert script.startswith("#!/bin/bash -l\n")
    ok, err = bash_syntax_ok(script)
    assert ok, err


def test_declaration() -> None:
    assert Ollama.name == "ollama" and Ollama.uses_gpu and Ollama.bench_kind == "llm"
    assert Ollama.health_path == "/api/tags"
    assert (Renderer().directory / Ollama.template).is_file()
    assert {o.flag for o in Ollama.start_options()} >= {"--port", "--model", "--parallel", "--max-loaded",
                                                       "--models-dir"}


@pytest.mark.usefixtures("fixed_env")
@pytest.mark.parametrize("runtime", sorted(RUNTIMES))
def test_sbatch_header_asks_for_gpus(tmp_path: Path, runtime: str) -> None:
    opts = sbatch_options(render(tmp_path, runtime))
    assert opts["job-name"] == "benchctl-ollama"
    assert opts["gres"] == "gpu:4"
    assert opts["partition"] == "gpu"
    assert opts["signal"] == "B:USR1@120"


@pytest.mark.usefixtures("fixed_env")
def test_apptainer_env_binds_and_commands(tmp_path: Path) -> None:
    script = render(tmp_path, "apptainer", {"parallel": 4, "max_loaded": 2})
    models_dir = "/project/scratch/p200981/u/benchctl/ollama-models"  # shared between jobs: no run-dir part
    assert f"MODELS_DIR={models_dir}\n" in script
    assert f"for dir in {models_dir} /project /mnt/tier1 /mnt/tier2; do" in script
    for line in ('export OLLAMA_HOST="0.0.0.0:$PORT"', 'export OLLAMA_MODELS="$MODELS_DIR"',
                 "export OLLAMA_NUM_PARALLEL=4", "export OLLAMA_MAX_LOADED_MODELS=2",
                 'export APPTAINERENV_OLLAMA_HOST="$OLLAMA_HOST"', 'export APPTAINERENV_OLLAMA_MODELS="$OLLAMA_MODELS"',
                 'export APPTAINERENV_OLLAMA_NUM_PARALLEL="$OLLAMA_NUM_PARALLEL"',
                 'export APPTAINERENV_OLLAMA_MAX_LOADED_MODELS="$OLLAMA_MAX_LOADED_MODELS"'):
        assert f"\n{line}\n" in script, line
    assert 'apptainer exec --nv "${BINDS[@]}" "$SIF" ollama serve &\nSVC_PID=$!\n' in script
    assert ('_bc_ollama() { apptainer exec --nv "${BINDS[@]}" "$SIF" env OLLAMA_HOST="127.0.0.1:$PORT" '
            'ollama "$@"; }') in script
    assert "SIF=/project/scratch/p200981/u/benchctl/sif/ollama_0.35.1.sif" in script


@pytest.mark.usefixtures("fixed_env")
def test_none_script_runs_ollama_on_the_host_without_optional_knobs(tmp_path: Path) -> None:
    script = render(tmp_path, "none")
    assert "apptainer" not in script.replace("APPTAINERENV", "")
    assert "APPTAINERENV_" not in script
    assert "OLLAMA_NUM_PARALLEL" not in script and "OLLAMA_MAX_LOADED_MODELS" not in script  # Ollama's defaults
    assert re.search(r"^ollama serve &\nSVC_PID=\$!$", script, re.M)
    assert '_bc_ollama() { env OLLAMA_HOST="127.0.0.1:$PORT" ollama "$@"; }' in script
    assert "MODELS_DIR=/home/u/benchctl/scratch/benchctl/ollama-models\n" in script


@pytest.mark.parametrize("runtime", sorted(RUNTIMES))
def test_pull_logic_and_order(tmp_path: Path, runtime: str) -> None:
    script = render(tmp_path, runtime)
    # bounded wait on the port, then list, then pull only when the list lacks the model
    wait_loop = script.index('for _ in $(seq 1 600); do\n    kill -0 $$')
    port_check = script.index('if (exec 3<>"/dev/tcp/127.0.0.1/$PORT") 2>/dev/null; then up=1; break; fi')
    listing = script.index("if _bc_ollama list 2>/dev/null | awk 'NR > 1 {print $1}' | grep -qxF -e \"$MODEL\" "
                           "-e \"$MODEL_TAGGED\"; then")
    pull = script.index('pull_out=$(_bc_ollama pull -- "$MODEL" 2>&1)')
    pull_subshell_end = script.index('echo "BENCHCTL_MODEL_READY=$(date -u +%Y-%m-%dT%H:%M:%SZ)"\n) &\n')
    serve_start = script.index("ollama serve &\nSVC_PID=$!")
    assert wait_loop < port_check < listing < pull < pull_subshell_end < serve_start
    assert script.rstrip().endswith('wait "$SVC_PID"\nrc=$?\necho "BENCHCTL_EXITED=$rc"\nexit "$rc"')  # serve() last
    assert "if _bc_http_ok /api/tags; then" in script
    assert not re.search(r"^\s*sleep [0-9]{2,}", script, re.M)  # no fixed waits for the server
    for marker in ("MODEL", "MODELS_DIR", "MODEL_PULLED", "MODEL_READY", "READY", "PORT", "PID", "STOPPED"):
        assert f"BENCHCTL_{marker}=" in script, marker


@pytest.mark.skipif(BASH is None, reason="bash not installed")
def test_tag_normalisation_in_the_script(tmp_path: Path) -> None:
    script = render(tmp_path, "none")
    start = script.index('case "${MODEL##*/}" in')
    case = script[start:script.index("esac\n", start) + 5]
    for model, tagged in [("llama3.2", "llama3.2:latest"), ("qwen3:4b", "qwen3:4b"),
                          ("reg.example:5000/ns/m", "reg.example:5000/ns/m:latest"),
                          ("hf.co/a/b:Q4_K_M", "hf.co/a/b:Q4_K_M")]:
        assert BASH is not None
        res = subprocess.run([BASH, "-c", f"MODEL={shlex.quote(model)}\n{case}printf %s \"$MODEL_TAGGED\""],
                             capture_output=True, text=True, timeout=10)
        assert res.stdout == tagged == with_tag(model)


# ---- options and errors ----------------------------------------------------------------------------------


def output(app: App) -> str:
    return app.out.getvalue()  # type: ignore[attr-defined, no-any-return]


def test_missing_model_is_one_clear_error(app: App, fake_slurm: FakeSlurm, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(SERVICES, "ollama", Ollama)  # until the registry lists it
    assert app.run_line("start ollama") is False
    lines = [line for line in output(app).splitlines() if line.strip()]
    assert len(lines) == 1, lines
    assert "ollama needs --model" in lines[0]
    assert "internal error" not in lines[0] and "Traceback" not in output(app)
    assert not [c for c in fake_slurm.calls if c[0] == "sbatch"]
    assert app.jobs.all() == []


def test_model_option_is_accepted_by_start(app: App, fake_slurm: FakeSlurm, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(SERVICES, "ollama", Ollama)
    assert app.run_line("start ollama --dry-run --model qwen3:4b --parallel 2 --max-loaded 1"), output(app)
    assert "MODEL=qwen3:4b" in output(app) and "OLLAMA_NUM_PARALLEL=2" in output(app)
    assert app.run_line("start ollama --model llama3.2 --parallel two") is False
    assert "--parallel expects a number" in output(app)


def test_template_values_reject_an_empty_model(tmp_path: Path) -> None:
    service = make_service(tmp_path, "none")
    with pytest.raises(TemplateError, match="--model"):
        service.render(service.resolve({"model": "   "}), RUN_DIR)


@pytest.mark.skipif(BASH is None, reason="bash not installed")
@pytest.mark.parametrize("runtime", sorted(RUNTIMES))
@pytest.mark.parametrize("model", HOSTILE_MODELS)
def test_hostile_model_name_stays_quoted(tmp_path: Path, runtime: str, model: str) -> None:
    script = render(tmp_path, runtime, {"model": model})
    assert f"\nMODEL={shlex.quote(model)}\n" in script
    # the raw value appears only inside its quoted assignment; everywhere else the script says "$MODEL"
    assert script.count(shlex.quote(model)) == 1
    assert script.count(model) == (1 if model in shlex.quote(model) else 0)
    # and bash reads it back as exactly that one word, running nothing
    assert BASH is not None
    assignment = script[script.index("\nMODEL=") + 1:script.index("echo \"BENCHCTL_MODEL=$MODEL\"\n")]
    res = subprocess.run([BASH, "-c", assignment + 'printf "%s\\n%s" "$MODEL" "$MODEL_TAGGED"'],
                         capture_output=True, text=True, timeout=10, cwd=tmp_path)
    assert res.returncode == 0, res.stderr
    assert res.stdout.split("\n") == [model, with_tag(model)]
    assert not (tmp_path / "pwned").exists() and not Path("/tmp/pwned").exists()


def test_a_line_break_in_the_model_is_refused(tmp_path: Path) -> None:
    with pytest.raises(TemplateError, match="line break"):
        render(tmp_path, "none", {"model": "llama3.2\necho pwned"})


# ---- readiness: a real HTTP server answering /api/tags like Ollama -----------------------------------


class TagsServer:
    """A stdlib HTTP server on 127.0.0.1 with Ollama's /api/tags shape; ``models`` can change while it runs."""

    def __init__(self) -> None:
        self.models: list[str] = []
        self.requests: list[str] = []
        self.status = 200
        server = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # http.server's method name
                server.requests.append(self.path)
                if self.path != "/api/tags":
                    self.send_error(404)
                    return
                body = json.dumps({"models": [
                    {"name": n, "model": n, "modified_at": "2025-08-01T10:00:00Z", "size": 2019393189,
                     "digest": "a80c4f17acd55265feec403c7aef86be0c25983ab279d83f3bcd3abbcb5b8b72",
                     "details": {"format": "gguf", "family": "llama", "parameter_size": "3.2B",
                                 "quantization_level": "Q4_K_M"}} for n in server.models]}).encode()
                self.send_response(server.status)
                self.send_header("Content-Type", "application/json; charset=utf-8")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = int(self.httpd.server_address[1])
        self.thread = threading.Thread(target=self.httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
        self.thread.start()

    def stop(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def tags_server() -> Iterator[TagsServer]:
    server = TagsServer()
    yield server
    server.stop()


def job_for(port: int, model: str) -> Job:
    return Job(id="42", service="ollama", executor="local", state=JobState.RUNNING, ip="127.0.0.1", port=port,
               options={"model": model})


def test_probe_waits_for_the_model(tmp_path: Path, tags_server: TagsServer) -> None:
    service = make_service(tmp_path, "none")
    job = job_for(tags_server.port, "llama3.2")
    assert service.probe(job) is False  # server up, no model yet
    tags_server.models = ["qwen3:4b", "llama3.2:1b"]  # other models, another tag of the same one
    assert service.probe(job) is False
    tags_server.models.append("llama3.2:latest")
    assert service.probe(job) is True  # `llama3.2` is `llama3.2:latest`
    assert service.probe(job_for(tags_server.port, "llama3.2:latest")) is True
    assert service.probe(job_for(tags_server.port, "qwen3:4b")) is True
    assert service.probe(job_for(tags_server.port, "qwen3")) is False  # qwen3 = qwen3:latest, not listed
    assert service.probe(job_for(tags_server.port, "llama3.2:3b")) is False
    assert set(tags_server.requests) == {"/api/tags"}


def test_probe_not_ready_on_errors(tmp_path: Path, tags_server: TagsServer) -> None:
    service = make_service(tmp_path, "none")
    tags_server.models = ["llama3.2:latest"]
    tags_server.status = 503
    assert service.probe(job_for(tags_server.port, "llama3.2")) is False
    tags_server.status = 200
    assert service.probe(job_for(tags_server.port, "")) is False  # a job without a model is never ready
    assert service.probe(dataclasses.replace(job_for(tags_server.port, "llama3.2"), port=None)) is False
    port = tags_server.port
    tags_server.stop()
    assert service.probe(job_for(port, "llama3.2")) is False  # nothing listening


@pytest.mark.parametrize(("body", "model", "listed"), [
    ('{"models":[{"name":"llama3.2:latest","model":"llama3.2:latest"}]}', "llama3.2", True),
    ('{"models":[{"model":"llama3.2:latest"}]}', "llama3.2", True),
    ('{"models":[{"name":"llama3.2"}]}', "llama3.2:latest", True),
    ('{"models":[]}', "llama3.2", False),
    ('{"models":null}', "llama3.2", False),
    ("[]", "llama3.2", False),
    ('{"models":["llama3.2:latest"]}', "llama3.2", False),
    ('{"models":[{"name":"llama3.2:lat', "llama3.2", False),  # cut short
    ("", "llama3.2", False),
])
def test_model_listed(body: str, model: str, listed: bool) -> None:
    assert model_listed(body, model) is listed


# ---- a whole job: the real batch script, the local executor, a fake `ollama` on PATH ---------------------

FAKE_OLLAMA = r'''
import json, os, signal, sys, urllib.request
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

models_dir = os.environ["OLLAMA_MODELS"]
store = os.path.join(models_dir, "fake-models.json")
host = os.environ.get("OLLAMA_HOST", "")
with open(os.path.join(models_dir, "calls.log"), "a") as log:
    log.write(json.dumps({"argv": sys.argv[1:], "host": host,
                          "parallel": os.environ.get("OLLAMA_NUM_PARALLEL", "")}) + "\n")

def names():
    return json.load(open(store)) if os.path.exists(store) else []

cmd = sys.argv[1]
if cmd == "serve":
    class H(BaseHTTPRequestHandler):
        def do_GET(self):
            body = json.dumps({"models": [{"name": n, "model": n} for n in names()]}).encode()
            self.send_response(200 if self.path == "/api/tags" else 404)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)
        def log_message(self, *a):
            pass
    bind, port = host.rsplit(":", 1)
    httpd = ThreadingHTTPServer((bind, int(port)), H)
    def stop(*_):
        print("fake ollama stopped", flush=True)
        os._exit(0)
    signal.signal(signal.SIGTERM, stop)
    print("fake ollama listening on", host, flush=True)
    httpd.serve_forever()
elif cmd == "list":
    tags = json.load(urllib.request.urlopen("http://" + host + "/api/tags", timeout=5))
    print("NAME                ID              SIZE      MODIFIED")
    for m in tags["models"]:
        print(m["name"] + "    a80c4f17acd5    2.0 GB    2 days ago")
elif cmd == "pull":
    args = [a for a in sys.argv[2:] if a != "--"]
    urllib.request.urlopen("http://" + host + "/api/tags", timeout=5)  # a client: needs the server
    if args[0].startswith("missing"):
        sys.stderr.write("pulling manifest \r\x1b[Kpulling manifest \n"
                         "Error: pull model manifest: file does not exist\n")
        sys.exit(1)
    name = args[0] if ":" in args[0].rsplit("/", 1)[-1] else args[0] + ":latest"
    json.dump(names() + [name], open(store, "w"))
    sys.stderr.write("pulling manifest \r\x1b[K" * 50 + "success\n")
'''


@pytest.fixture
def ollama_on_path(tmp_path: Path) -> Path:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    server = tmp_path / "fake_ollama.py"
    server.write_text(FAKE_OLLAMA)
    exe = bin_dir / "ollama"
    exe.write_text(f'#!/bin/sh\nexec {shlex.quote(sys.executable)} {shlex.quote(str(server))} "$@"\n')
    exe.chmod(0o755)
    return bin_dir


def calls(models_dir: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in (models_dir / "calls.log").read_text().splitlines()]


def wait_marker(service: Ollama, job: Job, marker: str, timeout: float = 8) -> str:
    deadline = time.monotonic() + timeout
    while marker not in service.log_info(job).markers and time.monotonic() < deadline:
        time.sleep(0.1)
    return service.log_info(job).markers.get(marker, "")


@pytest.mark.skipif(BASH is None, reason="bash not installed")
@pytest.mark.parametrize("present", [False, True], ids=["pulls", "already-there"])
def test_job_pulls_the_model_then_is_ready(tmp_path: Path, ollama_on_path: Path, present: bool) -> None:
    models_dir = tmp_path / "models"
    models_dir.mkdir()
    if present:
        (models_dir / "fake-models.json").write_text('["llama3.2:latest"]')
    service = make_service(tmp_path, "none", host_bin_dir=str(ollama_on_path))
    job = service.submit(service.resolve({"model": "llama3.2", "parallel": 3, "time": "5",
                                          "models_dir": str(models_dir)}))
    try:
        job = service.wait_ready(job, timeout=15)
        assert job.ready and job.port
        assert wait_marker(service, job, "MODEL_READY") not in ("", "failed")
        info = service.log_info(job)
        assert info.markers["MODEL"] == "llama3.2"
        assert info.markers["MODEL_PULLED"] == ("no" if present else "yes")
        seen = calls(models_dir)
        assert seen[0] == {"argv": ["serve"], "host": f"127.0.0.1:{job.port}", "parallel": "3"}  # local: this machine
        clients = seen[1:]
        assert [c["argv"] for c in clients] == ([["list"]] if present else [["list"], ["pull", "--", "llama3.2"]])
        assert {c["host"] for c in clients} == {f"127.0.0.1:{job.port}"}
        assert "pulling manifest" not in Path(job.out_path).read_text() + Path(job.err_path).read_text()
    finally:
        job = service.stop(job, grace=10, poll=0.2)
    assert job.state.is_final
    assert "STOPPED" in service.log_info(job).markers
    assert "fake ollama stopped" in Path(job.out_path).read_text()


@pytest.mark.skipif(BASH is None, reason="bash not installed")
def test_job_with_a_model_that_cannot_be_pulled_never_gets_ready(tmp_path: Path, ollama_on_path: Path) -> None:
    models_dir = tmp_path / "models"
    models_dir.mkdir()
    service = make_service(tmp_path, "none", host_bin_dir=str(ollama_on_path))
    job = service.submit(service.resolve({"model": "missing-model", "time": "5", "models_dir": str(models_dir)}))
    try:
        assert wait_marker(service, job, "MODEL_READY") == "failed"
        err = Path(job.err_path).read_text()
        assert "Error: pull model manifest: file does not exist" in err
        assert service.last_error_line(service.refresh(job)) == "benchctl: ollama pull missing-model failed"
        with pytest.raises(ServiceError, match="not ready after"):
            service.wait_ready(job, timeout=1)
    finally:
        service.stop(job, grace=10, poll=0.2)
