"""benchctl "on a laptop": the ssh executor through a REAL OpenSSH server (scripts/local-sshd.sh, 127.0.0.1:2222)
in front of the REAL local Slurm -- the whole life cycle over one connection, a connection killed in the middle
of ``check --wait``, an unknown host key, a refused key, and a ``tunnel`` that reaches ChromaDB.

The "laptop" is a throwaway HOME holding the server's client key as ~/.ssh/id_ed25519 (no agent) and the
server's own known_hosts file; the job table, transcripts and results live in the test's BENCHCTL_HOME.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from benchctl.app import App
from tests.conftest import string_ui
from tests.integration.conftest import sacct_state
from tests.sshd import Sshd, kill_session, laptop_home, logged_in, require_sshd

pytestmark = pytest.mark.slurm


@pytest.fixture
def sshd(isolated_env: Path, require_slurm: None, monkeypatch: pytest.MonkeyPatch) -> Iterator[Sshd]:
    """The test server, a laptop HOME with its key, and a config for the local cluster; jobs left behind are
    cancelled."""
    server = require_sshd()
    monkeypatch.delenv("SSH_AUTH_SOCK", raising=False)  # only the key file: no agent of the person running tests
    laptop_home(Path(os.environ["HOME"]), server)
    Path(os.environ["BENCHCTL_CONFIG"]).write_text(
        'profile = "local"\n\n[slurm]\nstop_grace = 15\n\n[ui]\npoll_interval = 1.0\n')
    yield server
    table = Path(os.environ["BENCHCTL_HOME"]) / "state" / "jobs.json"
    if table.exists():
        for job in json.loads(table.read_text()).get("jobs", []):
            subprocess.run(["scancel", str(job["id"])], capture_output=True, timeout=30)


def benchctl(server: Sshd, commands: str, *, known_hosts: Path | None = None, timeout: float = 400
             ) -> subprocess.CompletedProcess[str]:
    return subprocess.run(benchctl_argv(server, commands, known_hosts), capture_output=True, text=True,
                          timeout=timeout, env=dict(os.environ))


def benchctl_argv(server: Sshd, commands: str, known_hosts: Path | None = None) -> list[str]:
    return [sys.executable, "-m", "benchctl", "--remote", server.remote, "--known-hosts",
            str(known_hosts or server.known_hosts), "-e", commands]


def accepted_logins() -> int:
    """Connections the test server accepted so far (its log)."""
    log = Path(os.environ.get("BENCHCTL_SSHD_DIR", "/tmp/benchctl-sshd")) / "sshd.log"
    return log.read_text(errors="replace").count("Accepted publickey for root")


def local_jobs() -> list[dict[str, object]]:
    jobs: list[dict[str, object]] = json.loads(
        (Path(os.environ["BENCHCTL_HOME"]) / "state" / "jobs.json").read_text())["jobs"]
    return jobs


def test_start_check_logs_bench_stop_over_one_ssh_connection(sshd: Sshd) -> None:
    before = accepted_logins()
    proc = benchctl(sshd, "start chroma --runtime none; check chroma --wait; logs chroma; "
                          "bench chroma --n 2000 --dim 32 --concurrency 1,2 --duration 3; tunnel --list; stop chroma")
    out = proc.stdout
    assert proc.returncode == 0, out + proc.stderr
    assert accepted_logins() - before == 1  # sbatch, squeue, sacct, scancel, SFTP and the forward: one connection
    assert "submitted chroma as job" in out and " ready" in out and "BENCHCTL_READY=" in out
    assert "concurrency 1" in out and "concurrency 2" in out and "recall@10" in out
    assert "(automatic)" in out  # bench went through a forward of the connection
    assert re.search(r"stopped chroma job \d+: CANCELLED", out)
    run_json = Path(out.split("results: ", 1)[1].split()[0])
    assert run_json.is_relative_to(Path(os.environ["BENCHCTL_HOME"]))  # results stay on the laptop
    run = json.loads(run_json.read_text())
    job_id = run["service"]["job_id"]
    assert run["points"][0]["errors"] == 0 and run["points"][0]["qps"] > 10
    assert run["service"]["endpoint"].startswith("http://127.0.0.1:")
    [job] = local_jobs()
    assert job["id"] == job_id and job["executor"] == "ssh" and job["remote"] == sshd.remote
    assert sacct_state(str(job_id)).startswith("CANCELLED")


def test_connection_killed_during_check_wait_is_recovered(sshd: Sshd) -> None:
    started = benchctl(sshd, "start chroma --runtime none", timeout=120)
    assert started.returncode == 0, started.stdout + started.stderr
    job_id = str(local_jobs()[0]["id"])
    check = subprocess.Popen(benchctl_argv(sshd, "check chroma --wait --timeout 180; status"),
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=dict(os.environ))
    killed: list[int] = []
    deadline = time.monotonic() + 30
    while not killed and time.monotonic() < deadline and check.poll() is None:
        if logged_in(check.pid):  # its session is up: it is waiting now -- cut it as a dead link would
            killed = kill_session(check.pid, sshd.pid)
        time.sleep(0.05)
    out, err = check.communicate(timeout=300)
    assert killed, "the check's SSH session was never seen"
    assert check.returncode == 0, out + err
    assert f"chroma job {job_id}" in out and " ready" in out
    log = (Path(os.environ["XDG_STATE_HOME"]) / "benchctl" / "logs" / "benchctl.log").read_text()
    assert "reconnected to " + sshd.remote in log
    [job] = local_jobs()  # not lost, not duplicated
    assert str(job["id"]) == job_id and job["state"] == "RUNNING" and job["ready"] is True
    stopped = benchctl(sshd, "stop chroma", timeout=120)
    assert stopped.returncode == 0 and "CANCELLED" in stopped.stdout, stopped.stdout + stopped.stderr


def test_unknown_host_key_is_refused_with_its_fingerprint(sshd: Sshd, tmp_path: Path) -> None:
    empty = tmp_path / "known_hosts"
    empty.touch()
    host_pub = Path(os.environ.get("BENCHCTL_SSHD_DIR", "/tmp/benchctl-sshd")) / "host_key.pub"
    expected = subprocess.run(["ssh-keygen", "-lf", str(host_pub)], capture_output=True, text=True,
                              check=True).stdout.split()[1]
    proc = benchctl(sshd, "start chroma --runtime none; status", known_hosts=empty, timeout=60)
    text = proc.stdout + proc.stderr
    assert proc.returncode == 1, text
    assert f"unknown host key for [127.0.0.1]:2222 (ssh-ed25519 {expected})" in text
    assert f"ssh-keyscan -p 2222 127.0.0.1 >> {empty}" in text
    assert "Traceback" not in text and empty.read_text() == ""  # never trusted, never written
    assert not (Path(os.environ["BENCHCTL_HOME"]) / "state" / "jobs.json").exists() or not local_jobs()


def test_refused_key_is_one_line(sshd: Sshd, tmp_path: Path) -> None:
    key = Path(os.environ["HOME"]) / ".ssh" / "id_ed25519"
    key.unlink()
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(key)], check=True)
    proc = benchctl(sshd, "start chroma --runtime none", timeout=60)
    assert proc.returncode == 1
    assert "error: root@127.0.0.1:2222 refused the key" in proc.stdout + proc.stderr


def test_tunnel_reaches_chroma(sshd: Sshd) -> None:
    from benchctl.config import load_settings

    settings = load_settings(executor="ssh")
    settings.layer({"remote.host": sshd.remote, "remote.known_hosts": str(sshd.known_hosts)}, "test")
    ui, buf = string_ui()
    app = App(settings=settings, ui=ui)
    try:
        assert app.run_line("start chroma --runtime none"), buf.getvalue()
        assert app.run_line("check chroma --wait --timeout 180"), buf.getvalue()
        assert app.run_line("tunnel chroma"), buf.getvalue()
        local = re.findall(r"tunnel \d+: http://(127\.0\.0\.1:\d+)", buf.getvalue())[-1]
        with urllib.request.urlopen(f"http://{local}/api/v2/heartbeat", timeout=10) as answer:
            assert answer.status == 200 and "heartbeat" in answer.read().decode()
        assert app.run_line("tunnel --close all")
        assert "closed 2 tunnels" in buf.getvalue()  # and the automatic one of the readiness probe
        with pytest.raises(OSError):
            urllib.request.urlopen(f"http://{local}/api/v2/heartbeat", timeout=5)
        assert app.run_line("stop chroma") and "CANCELLED" in buf.getvalue()
    finally:
        app.close()
