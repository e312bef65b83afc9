"""MeluXina's site rules at `start`: the account from Slurm's database, the scratch fallback, QOS time limits,
the reservation option -- each decided before submission and said in one line."""

from __future__ import annotations

from pathlib import Path

import pytest

from benchctl.app import App
from benchctl.executors.slurm import parse_accounts
from benchctl.services.site import slurm_minutes
from tests.fakes import FakeSlurm
from tests.test_commands import clear, fails_with, output


@pytest.fixture
def user_config(isolated_env: Path) -> Path:
    """The user config file conftest points BENCHCTL_CONFIG at."""
    return isolated_env / "config.toml"


@pytest.fixture
def no_account(make_app, user_config: Path):  # type: ignore[no-untyped-def]
    """The meluxina profile with no account configured (as a new user has it)."""
    user_config.write_text('[slurm]\naccount = ""\n')
    return make_app()


def test_sacctmgr_lines() -> None:
    # sacctmgr -n -P show user u100001 withassoc format=defaultaccount,account
    assert parse_accounts("p200981|p200981\np200981|p201234\n") == ("p200981", ["p200981", "p201234"])
    assert parse_accounts("|p201234\n") == ("", ["p201234"])
    assert parse_accounts("") == ("", [])


def test_the_default_account_is_taken_from_slurm_and_said(no_account: App, fake_slurm: FakeSlurm) -> None:
    fake_slurm.associations = "p200981|p200981\np200981|p201234\n"
    assert no_account.run_line("start chroma --dry-run")
    out = output(no_account)
    assert "#SBATCH --account=p200981" in out
    assert "account p200981: your Slurm default (also yours: p201234)" in out
    assert no_account.settings.sources["slurm.account"] == "Slurm (sacctmgr default account)"
    assert no_account.run_line("start chroma --dry-run")
    assert output(no_account).count("your Slurm default") == 1  # said once a session
    assert no_account.run_line("start chroma --dry-run --account p201234")


def test_several_accounts_and_no_default_is_one_clear_line(no_account: App, fake_slurm: FakeSlurm) -> None:
    fake_slurm.associations = "|p201234\n|p205555\n"
    err = fails_with(no_account, "start chroma --dry-run")
    assert "several accounts (p201234, p205555) and have no default" in err and "slurm.account" in err
    assert no_account.run_line("start chroma --dry-run --account p205555")


def test_a_configured_account_asks_nobody(make_app, user_config: Path, fake_slurm: FakeSlurm) -> None:  # type: ignore[no-untyped-def]
    user_config.write_text('[slurm]\naccount = "p200981"\n')
    app = make_app()
    assert app.run_line("start chroma --dry-run")
    assert not any(c[0] == "sacctmgr" and "user" in c for c in fake_slurm.calls)  # the QOS table is asked, once


def test_qos_time_limit_refused_before_submission(app: App, fake_slurm: FakeSlurm) -> None:
    fake_slurm.qos_table = "default|2-00:00:00\ndev|06:00:00\nurgent|\n"
    err = fails_with(app, "start chroma --qos dev --time 08:00:00")  # one line: the notices wait for a success
    assert "--time 08:00:00 is above the dev QOS limit of 06:00:00 (Slurm)" in err
    assert not any(c[0] == "sbatch" for c in fake_slurm.calls)
    assert app.run_line("start chroma --qos dev --time 06:00:00 --dry-run")
    assert "--qos dev runs in reservation cpudev on partition cpu" in output(app)  # the dev QOS's reservation
    assert app.run_line("start chroma --qos urgent --time 3-00:00:00 --dry-run")  # no limit stated


def test_profile_table_when_slurm_cannot_tell(make_app, user_config: Path) -> None:  # type: ignore[no-untyped-def]
    user_config.write_text('[slurm]\nqos_limits = ["short=06:00:00"]\n')
    app = make_app()
    assert "above the short QOS limit of 06:00:00 (the meluxina profile)" in fails_with(
        app, "start chroma --qos short --time 1-00:00:00")


def test_reservation(app: App) -> None:
    assert app.run_line("start chroma --qos dev --reservation special --time 01:00:00 --dry-run")
    assert "#SBATCH --reservation=special" in output(app)
    assert app.run_line("start vllm --model m/x --qos dev --time 01:00:00 --dry-run")
    assert "#SBATCH --reservation=gpudev" in output(app)  # the dev QOS on a GPU node


def test_scratch_falls_back_to_the_project_home(make_app, user_config: Path, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    (tmp_path / "project" / "home" / "p200981").mkdir(parents=True)
    user_config.write_text(f'[paths]\nscratch = "{tmp_path}/project/scratch/{{account}}/{{user}}"\n'
                           f'scratch_fallback = "{tmp_path}/project/home/{{account}}/{{user}}"\n')
    app = make_app()
    assert app.run_line("start chroma --dry-run")
    out = output(app)
    assert f"{tmp_path}/project/scratch/p200981 does not exist" in out
    assert f"DATA_DIR={tmp_path}/project/home/p200981/tester/" in out


@pytest.mark.parametrize(("text", "minutes"), [("30", 30), ("01:00:00", 60), ("2-00:00:00", 2880),
                                               ("1-12", 2160), ("UNLIMITED", None), ("00:30:01", 31)])
def test_slurm_minutes(text: str, minutes: int | None) -> None:
    assert slurm_minutes(text) == minutes


def test_pull_job_fills_the_sif_cache_once(app: App, fake_slurm: FakeSlurm) -> None:
    assert app.run_line("pull vllm --dry-run")
    out = output(app)
    assert "#SBATCH --partition=cpu" in out and "apptainer pull --disable-cache" in out
    assert "vllm-openai_v0.30.0.sif" in out and "vllm-openai_v0.10.1.1.sif" in out  # vllm brings its Ray image
    assert 'export APPTAINER_TMPDIR="${APPTAINER_TMPDIR:-$_BC_APPTAINER/tmp}"' in out
    assert "APPTAINER_DOCKER_USERNAME" in out and "PASSWORD=" not in out  # by name only
    assert "no image pinned for 'nosuch'" in fails_with(app, "pull nosuch")
    assert app.run_line("pull all")
    job = app.jobs.latest_for("pull")
    assert job is not None and "chroma_1.5.9.sif" in fake_slurm.jobs[job.id].script


def test_pull_with_runtime_none_says_there_is_nothing_to_pull(make_app) -> None:  # type: ignore[no-untyped-def]
    app = make_app(profile="local", executor="local")
    assert "nothing to pull with --runtime none" in fails_with(app, "pull chroma")


def test_the_jobs_own_account_names_its_paths(app: App) -> None:
    assert app.run_line("start chroma --account p201234 --dry-run")
    out = output(app)
    assert "#SBATCH --account=p201234" in out and "/project/scratch/p201234/" in out
    assert "/project/scratch/p200981/" not in out


def test_qdrant_on_lustre_is_warned_and_dev_shm_offered(app: App) -> None:
    assert app.run_line("start qdrant --dry-run")
    assert "is on a network file system (Lustre)" in output(app) and "--data-dir /dev/shm/qdrant" in output(app)
    clear(app)
    assert app.run_line("start qdrant --dry-run --data-dir /dev/shm/qdrant")
    assert "network file system" not in output(app) and "DATA_DIR=/dev/shm/qdrant" in output(app)


def test_no_multithread_halves_the_cpus(app: App) -> None:
    assert app.run_line("start vllm --model m/x --no-multithread --dry-run")
    out = output(app)
    assert "#SBATCH --hint=nomultithread" in out and "#SBATCH --cpus-per-task=64" in out
