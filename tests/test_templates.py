"""Rendered batch scripts: golden files, bash syntax, shell quoting of hostile values, strict templates.

Golden files live in tests/golden/. After an intended template change, regenerate them with

    BENCHCTL_UPDATE_GOLDEN=1 .venv/bin/python -m pytest tests/test_golden.py tests/test_templates.py

and review the diff like any other code change.
"""

from __future__ import annotations

import difflib
import os
import re
import shlex
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest

from benchctl.config import load_settings
from benchctl.executors.local import LocalExecutor, sbatch_options
from benchctl.jobs import JobTable
from benchctl.services import SERVICES, ServiceContext
from benchctl.services.chroma import Chroma
from benchctl.templates import Renderer, TemplateError, shell_join, shell_quote

GOLDEN_DIR = Path(__file__).resolve().parent / "golden"
UPDATE = os.environ.get("BENCHCTL_UPDATE_GOLDEN") == "1"

RUN_DIR = Path("/home/u/benchctl/jobs/chroma-X")
HOST_BIN_DIR = "/opt/benchctl/bin"
# Pinned here (not read from sif/images.yaml) so the golden files change only when the templates do.
IMAGES = {"chroma": "docker://chromadb/chroma:1.5.9"}

# runtime -> (profile, executor)
RUNTIMES = {"apptainer": ("meluxina", "slurm"), "none": ("local", "local")}

BASH = shutil.which("bash")


def service_for(name: str, tmp_path: Path, runtime: str, images: dict[str, str] | None = None,
                host_bin_dir: str = HOST_BIN_DIR) -> Any:
    """Service ``name`` on the profile and executor of ``runtime`` (apptainer: meluxina + slurm; none: local),
    with pinned images and a fake host bin dir, as every template test renders it."""
    profile, executor = RUNTIMES[runtime]
    from benchctl.executors.slurm import SlurmExecutor
    from tests.fakes import FakeSlurm

    # MeluXina: the account comes from Slurm (a user whose default project is p200981).
    runner: Any = (SlurmExecutor(FakeSlurm(associations="p200981|p200981\n")) if executor == "slurm"
                   else LocalExecutor(tmp_path / "local-state"))
    ctx = ServiceContext(settings=load_settings(executor=executor, profile=profile),
                         executor=runner, jobs=JobTable(None), renderer=Renderer(),
                         images=images or {}, host_bin_dir=host_bin_dir)
    return SERVICES[name](ctx)


def make_service(tmp_path: Path, runtime: str, name: str = "chroma") -> Any:
    return service_for(name, tmp_path, runtime, IMAGES)


def render(tmp_path: Path, runtime: str, options: dict[str, Any] | None = None) -> str:
    service = make_service(tmp_path, runtime)
    values = service.resolve(options or {})
    assert values["runtime"] == runtime  # the profile's runtime, not the option, chose it
    return service.render(values, RUN_DIR)


def bash_syntax_ok(script: str) -> tuple[bool, str]:
    assert BASH is not None
    res = subprocess.run([BASH, "-n"], input=script, capture_output=True, text=True, timeout=10)
    return res.returncode == 0, res.stderr


# ---- golden files ---------------------------------------------------------------------------------


def assert_golden(golden: Path, rendered: str) -> None:
    """Compare ``rendered`` with a golden file (or rewrite it with BENCHCTL_UPDATE_GOLDEN=1), failing with a
    unified diff and the hint to regenerate when they differ."""
    if UPDATE:
        golden.parent.mkdir(parents=True, exist_ok=True)
        golden.write_text(rendered)
        return
    assert golden.exists(), f"{golden} is missing; create it with BENCHCTL_UPDATE_GOLDEN=1"
    expected = golden.read_text()
    if rendered != expected:
        diff = "".join(difflib.unified_diff(expected.splitlines(keepends=True), rendered.splitlines(keepends=True),
                                            fromfile=str(golden), tofile="rendered"))
        pytest.fail(f"rendered output differs from {golden.name}:\n{diff}\n"
                    "If the change is intended, re-run with BENCHCTL_UPDATE_GOLDEN=1 and review the golden diff.",
                    pytrace=False)


# ---- properties of every rendered script ----------------------------------------------------------


@pytest.mark.skipif(BASH is None, reason="bash not installed")
@pytest.mark.parametrize("runtime", sorted(RUNTIMES))
def test_rendered_script_passes_bash_n(tmp_path: Path, runtime: str) -> None:
    ok, err = bash_syntax_ok(render(tmp_path, runtime))
    assert ok, err


@pytest.mark.parametrize("runtime", sorted(RUNTIMES))
def test_starts_with_login_shebang(tmp_path: Path, runtime: str) -> None:
    assert render(tmp_path, runtime).startswith("#!/bin/bash -l\n")


@pytest.mark.usefixtures("fixed_env")
@pytest.mark.parametrize("runtime", sorted(RUNTIMES))
def test_sbatch_header_is_complete_and_before_any_command(tmp_path: Path, runtime: str) -> None:
    script = render(tmp_path, runtime)
    lines = script.splitlines()
    first_command = next(i for i, line in enumerate(lines[1:], 1) if line.strip() and not line.startswith("#"))
    sbatch_lines = [i for i, line in enumerate(lines) if line.startswith("#SBATCH")]
    assert sbatch_lines and max(sbatch_lines) < first_command  # sbatch stops reading at the first command
    opts = sbatch_options(script)
    assert opts["job-name"] == "benchctl-chroma"
    assert opts["time"] == "01:00:00"
    assert opts["cpus-per-task"] == "4"
    assert opts["output"] == str(RUN_DIR / "slurm-%j.out")
    assert opts["error"] == str(RUN_DIR / "slurm-%j.err")
    assert opts["signal"] == "B:USR1@120"
    assert "gres" not in opts  # chroma needs no GPU
    if runtime == "apptainer":
        assert (opts["account"], opts["partition"], opts["qos"]) == ("p200981", "cpu", "default")
    else:
        assert "account" not in opts  # no account on the local profile: no empty --account=
        assert opts["partition"] == "cpu"


@pytest.mark.usefixtures("fixed_env")
def test_apptainer_script_uses_the_image_and_modules(tmp_path: Path) -> None:
    script = render(tmp_path, "apptainer")
    assert "SIF=/project/scratch/p200981/u/benchctl/sif/chroma_1.5.9.sif" in script
    assert "docker://chromadb/chroma:1.5.9" in script
    assert "module load env/release/2025.1" in script
    assert "module load Apptainer/1.4.2-GCCcore-14.2.0" in script
    assert "for dir in /project/scratch/p200981/u/benchctl/chroma/chroma-X /project /mnt/tier1 /mnt/tier2; do" in script
    assert 'apptainer exec "${BINDS[@]}" "$SIF" chroma run' in script
    assert HOST_BIN_DIR not in script  # the host PATH is for runtime none only


@pytest.mark.usefixtures("fixed_env")
def test_none_script_runs_chroma_on_the_host(tmp_path: Path) -> None:
    script = render(tmp_path, "none")
    assert f"export PATH={HOST_BIN_DIR}:\"$PATH\"" in script
    assert "apptainer" not in script
    assert "module load" not in script
    assert "DATA_DIR=/home/u/benchctl/scratch/benchctl/chroma/chroma-X" in script
    # run by the local executor: bound to this machine only
    assert re.search(r'^chroma run --host 127\.0\.0\.1 --port "\$PORT" --path "\$DATA_DIR" &$', script, re.M)


@pytest.mark.parametrize("runtime", sorted(RUNTIMES))
def test_fixed_port(tmp_path: Path, runtime: str) -> None:
    script = render(tmp_path, runtime, {"port": 18001})
    assert "PORT=18001\n" in script
    assert "RANDOM" not in script


@pytest.mark.parametrize("runtime", sorted(RUNTIMES))
def test_every_marker_is_printed(tmp_path: Path, runtime: str) -> None:
    script = render(tmp_path, runtime)
    for marker in ("JOBID", "SERVICE", "HOST", "NODE", "IP", "PORT", "DATA_DIR", "PID", "READY", "STOPPING",
                   "STOPPED", "EXITED"):
        assert f"BENCHCTL_{marker}=" in script, marker


# ---- hostile values ------------------------------------------------------------------------------

HOSTILE = [
    ("data_dir", "/tmp/x; rm -rf ~"),
    ("data_dir", "/tmp/$(touch /tmp/pwned)"),
    ("data_dir", "/tmp/it's `id`"),
    ("account", "a$(id)"),
    ("account", "a'; id; '"),
    ("partition", "cpu && id"),
    ("time", "01:00:00 $(id)"),
    ("mem", "16G|id"),
    ("image", 'docker://x/y:1"; id; echo "'),
    ("image", "docker://x/$(id):1"),
]


def inside_single_quotes(line: str, value: str) -> bool:
    """Whether every occurrence of ``value`` in ``line`` lies within a '...' span (where bash expands nothing)."""
    spans = [m.span() for m in re.finditer(r"'[^']*'", line)]
    start = line.find(value)
    while start != -1:
        if not any(a < start and start + len(value) < b for a, b in spans):
            return False
        start = line.find(value, start + 1)
    return True


def single_words(script: str, value: str) -> list[str]:
    """Lines holding the quoted value, from the quoted value on (without a line-continuation backslash)."""
    quoted = shlex.quote(value)
    return [line[line.index(quoted):].rstrip("\\") for line in script.split("\n") if quoted in line]


@pytest.mark.skipif(BASH is None, reason="bash not installed")
@pytest.mark.parametrize("runtime", sorted(RUNTIMES))
@pytest.mark.parametrize(("key", "value"), HOSTILE, ids=[f"{k}={v!r}" for k, v in HOSTILE])
def test_hostile_value_is_only_shell_quoted(tmp_path: Path, runtime: str, key: str, value: str) -> None:
    script = render(tmp_path, runtime, {key: value})
    quoted = shlex.quote(value)
    if key == "image" and runtime == "none":
        assert value not in script  # no image without apptainer
        return
    assert quoted in script
    # every occurrence of the raw value is inside its quoted form (no echo "...{{ value }}..." anywhere)
    if value in quoted:  # ... also where it is part of a longer quoted word (a path named after the account)
        assert all(inside_single_quotes(line, value) for line in script.split("\n"))
    else:  # a value with a single quote is spelled differently once quoted
        assert value not in script
    # the quoted form reads back as exactly one word
    assert shlex.split(quoted) == [value]
    for tail in single_words(script, value):
        assert shlex.split(tail, posix=True)[0] == value
    ok, err = bash_syntax_ok(script)
    assert ok, err


@pytest.mark.parametrize("runtime", sorted(RUNTIMES))
@pytest.mark.parametrize(("key", "value"), [("qos", "q\nid #"), ("account", "a\rb"), ("data_dir", "/tmp/x\ntouch y")])
def test_line_break_in_a_value_is_refused(tmp_path: Path, runtime: str, key: str, value: str) -> None:
    """A newline would end an ``#SBATCH --qos='...`` comment line and turn the rest into a command."""
    with pytest.raises(TemplateError, match="line break"):
        render(tmp_path, runtime, {key: value})


@pytest.mark.usefixtures("fixed_env")
@pytest.mark.skipif(BASH is None, reason="bash not installed")
def test_hostile_data_dir_assignment_evaluates_to_the_value(tmp_path: Path) -> None:
    """Run the DATA_DIR line for real: bash assigns the value and runs nothing of it."""
    value = f"{tmp_path}/x; touch {tmp_path}/pwned; $(touch {tmp_path}/pwned2)"
    script = render(tmp_path, "none", {"data_dir": value})
    line = next(line for line in script.splitlines() if line.startswith("DATA_DIR="))
    assert BASH is not None
    res = subprocess.run([BASH, "-c", f'{line}\nprintf %s "$DATA_DIR"'], capture_output=True, text=True,
                         timeout=10)
    assert res.stdout == value
    assert not (tmp_path / "pwned").exists()
    assert not (tmp_path / "pwned2").exists()


# ---- strict rendering -----------------------------------------------------------------------------


def test_missing_template_variable_raises(tmp_path: Path) -> None:
    service = make_service(tmp_path, "none")
    job = service.job_values(service.resolve({}), RUN_DIR)
    with pytest.raises(TemplateError, match=r"chroma\.sbatch\.j2: 'data_dir' is undefined"):
        Renderer().render("chroma.sbatch.j2", {"job": job})  # data_dir missing
    del job["cpus"]
    with pytest.raises(TemplateError, match=r"chroma\.sbatch\.j2"):
        Renderer().render("chroma.sbatch.j2", {"job": job, "data_dir": "/d"})


def test_strict_undefined_in_own_template(tmp_path: Path) -> None:
    (tmp_path / "t.j2").write_text("#SBATCH --partition={{ job.partition | q }}\n")
    (tmp_path / "bad.j2").write_text("{% if %}\n")
    renderer = Renderer(tmp_path)
    assert renderer.render("t.j2", {"job": {"partition": "cpu"}}) == "#SBATCH --partition=cpu\n"
    with pytest.raises(TemplateError, match=r"t\.j2"):
        renderer.render("t.j2", {"job": {}})
    with pytest.raises(TemplateError, match=r"t\.j2"):
        renderer.render("t.j2", {})
    with pytest.raises(TemplateError, match=r"bad\.j2"):
        renderer.render("bad.j2", {})
    with pytest.raises(TemplateError):
        renderer.render("missing.j2", {})


def test_shell_quote_and_join() -> None:
    assert shell_quote(4) == "4"
    assert shell_quote("cpu") == "cpu"
    assert shell_quote("") == "''"
    assert shell_quote("a b") == "'a b'"
    assert shell_join(["chroma", "run", "--path", "/a b", 3]) == "chroma run --path '/a b' 3"
    with pytest.raises(TypeError):
        shell_quote(True)


def test_every_service_template_exists() -> None:
    templates = Renderer().directory
    for cls in SERVICES:
        assert (templates / cls.template).is_file(), cls.template
    assert SERVICES["chroma"] is Chroma


def test_bind_loop_keeps_only_existing_directories(tmp_path: Path, fixed_env: None) -> None:
    """Run the template's bind loop for real: missing directories must not reach `apptainer -B`."""
    script = render(tmp_path, "apptainer")
    start = script.index("BINDS=()")
    loop = script[start:script.index("done", start) + len("done")]
    present = tmp_path / "data dir"
    present.mkdir()
    loop = loop.replace("/project/scratch/p200981/u/benchctl/chroma/chroma-X", shlex.quote(str(present)))
    out = subprocess.run(["bash", "-c", loop + '\nprintf "%s\\n" "${BINDS[@]}"'], capture_output=True, text=True,
                         check=True).stdout.splitlines()
    expected = ["-B", str(present)] + [x for d in ("/project", "/mnt/tier1", "/mnt/tier2") if Path(d).exists()
                                       for x in ("-B", d)]
    assert out == expected


def test_the_chroma_image_is_the_chromadb_the_tests_run() -> None:
    """The image MeluXina users run is the server version the tests exercise (sif/README.md)."""
    from importlib.metadata import version

    from benchctl.services import load_images

    assert load_images()["chroma"] == f"docker://chromadb/chroma:{version('chromadb')}"
