"""Shared fixtures: an isolated home/XDG tree for every test, a fake Slurm, and an App writing to a string."""

from __future__ import annotations

import io
import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
from rich.console import Console

from benchctl.app import App
from benchctl.config import load_settings
from benchctl.executors.slurm import SlurmExecutor
from benchctl.ui import Ui
from tests.fakes import FakeSlurm

REPO = Path(__file__).resolve().parent.parent


@pytest.fixture(autouse=True)
def isolated_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Every test gets its own HOME, XDG dirs, benchctl home and (empty) user config -- and no secrets learned
    by an earlier test (the redactor remembers them for the process)."""
    from benchctl.redact import forget_all

    forget_all()
    home = tmp_path / "home"
    home.mkdir()
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.setenv("USER", "tester")
    for kind in ("CONFIG", "STATE", "DATA", "CACHE"):
        monkeypatch.setenv(f"XDG_{kind}_HOME", str(home / f".xdg-{kind.lower()}"))
    monkeypatch.setenv("BENCHCTL_HOME", str(tmp_path / "bc"))
    monkeypatch.setenv("BENCHCTL_CONFIG", str(tmp_path / "config.toml"))
    (tmp_path / "config.toml").touch()  # named by BENCHCTL_CONFIG, so it must exist (empty: no user settings)
    for var in ("SLURM_JOB_ID", "SBATCH_ACCOUNT", "SLURM_ACCOUNT"):
        monkeypatch.delenv(var, raising=False)
    return tmp_path


@pytest.fixture
def fixed_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """Everything a rendered script depends on, fixed (the paths need not exist: rendering creates nothing)."""
    monkeypatch.setenv("BENCHCTL_HOME", "/home/u/benchctl")
    monkeypatch.setenv("USER", "u")


@pytest.fixture
def full_disk(tmp_path: Path) -> Iterator[Path]:
    """A 256 KiB tmpfs, filled up."""
    mount = tmp_path / "small"
    mount.mkdir()
    if subprocess.run(["mount", "-t", "tmpfs", "-o", "size=256k", "tmpfs", str(mount)],
                      capture_output=True).returncode != 0:
        pytest.skip("cannot mount a tmpfs here (needs root)")
    try:
        (mount / "results").mkdir()
        fd = os.open(mount / "filler", os.O_WRONLY | os.O_CREAT)
        try:
            while os.write(fd, b"x" * 4096):
                pass
        except OSError:
            pass
        finally:
            os.close(fd)
        yield mount
    finally:
        subprocess.run(["umount", "-l", str(mount)], capture_output=True)


def string_ui(width: int = 120) -> tuple[Ui, io.StringIO]:
    buf = io.StringIO()
    console = Console(file=buf, width=width, color_system=None, force_terminal=False, highlight=False)
    return Ui(console=console), buf


@pytest.fixture
def fake_slurm() -> FakeSlurm:
    return FakeSlurm()


@pytest.fixture
def make_app(fake_slurm: FakeSlurm):  # type: ignore[no-untyped-def]
    """Factory: an App over the fake Slurm, its output in ``app.out`` (a StringIO)."""

    def factory(profile: str = "meluxina", executor: str = "slurm", **layers: object) -> App:
        settings = load_settings(executor=executor, profile=profile)
        ui, buf = string_ui()
        executor_obj = SlurmExecutor(fake_slurm) if executor == "slurm" else None
        app = App(settings=settings, runner=fake_slurm, ui=ui, executor_obj=executor_obj)
        app.out = buf  # type: ignore[attr-defined]
        return app

    return factory


@pytest.fixture
def app(make_app) -> Iterator[App]:  # type: ignore[no-untyped-def]
    yield make_app()


@pytest.fixture
def local_app() -> Iterator[App]:
    """An App on the local executor and profile (real processes on this machine), its output in ``app.out``;
    whatever a test left running is stopped."""
    ui, buf = string_ui()
    app = App(settings=load_settings(executor="local", profile="local"), ui=ui)
    app.out = buf  # type: ignore[attr-defined]
    yield app
    for job in app.jobs.active():
        app.service(job.service).stop(job, grace=3, poll=0.2)
