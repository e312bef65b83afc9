"""Fixtures for tests against the REAL local Slurm started by ``scripts/local-slurm.sh start``.

Without a reachable Slurm these tests skip -- unless ``BENCHCTL_REQUIRE_SLURM=1`` (set by
``scripts/test.sh``), where a missing cluster is a failure, so CI can never go green by skipping them.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from benchctl.app import App
from tests.conftest import string_ui


def slurm_up() -> bool:
    if not shutil.which("sinfo"):
        return False
    return subprocess.run(["sinfo", "-h"], capture_output=True, timeout=10).returncode == 0


@pytest.fixture(scope="session")
def require_slurm() -> None:
    if not slurm_up():
        if os.environ.get("BENCHCTL_REQUIRE_SLURM") == "1":
            pytest.fail("local Slurm is not running (scripts/local-slurm.sh start)")
        pytest.skip("local Slurm is not running (scripts/local-slurm.sh start)")
    if not shutil.which("chroma", path=os.path.dirname(sys.executable)):
        pytest.fail("chroma is not installed next to this Python (pip install '.[test]')")


@pytest.fixture
def slurm_config(isolated_env: Path, require_slurm: None) -> Path:
    """A user config for the local test cluster: programs on the host, services reached on localhost."""
    path = Path(os.environ["BENCHCTL_CONFIG"])
    path.write_text('profile = "local"\nexecutor = "slurm"\n\n[slurm]\nstop_grace = 15\n\n[ui]\npoll_interval = 1.0\n')
    return path


@pytest.fixture
def slurm_app(slurm_config: Path):  # type: ignore[no-untyped-def]
    """Factory for Apps on the real Slurm (several may share one BENCHCTL_HOME, like restarts do)."""
    apps: list[App] = []

    def factory() -> App:
        ui, buf = string_ui()
        app = App(ui=ui)
        app.out = buf  # type: ignore[attr-defined]
        apps.append(app)
        return app

    yield factory
    # Never leave jobs behind: cancel whatever a failed test left running.
    for app in apps:
        for job in app.jobs.active():
            subprocess.run(["scancel", job.id], capture_output=True, timeout=30)


def sacct_state(job_id: str) -> str:
    out = subprocess.run(["sacct", "-X", "-n", "-P", "-j", job_id, "-o", "State"], capture_output=True, text=True,
                         timeout=30).stdout
    return out.strip().splitlines()[-1] if out.strip() else ""
