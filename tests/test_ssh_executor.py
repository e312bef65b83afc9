"""The ssh executor without a server: fakes at the paramiko seam (``tests/sshd.py``: ``FakeConnection`` answers
commands from the fake Slurm, ``LocalSftp`` keeps files in a folder, ``FakeTransport`` opens real sockets).

What is checked: argv quoting (``shlex.join``; secrets on stdin, never on the command line), the retry policy
after a drop (queries again; sbatch looked up by its comment first), SFTP files, remote paths ({user}, ~),
forwards and the ``tunnel`` command, host-key refusal, and one-line errors for unreachable hosts.
"""

from __future__ import annotations

import http.server
import os
import re
import shlex
import subprocess
import threading
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from benchctl.app import App
from benchctl.config import RemoteSide, load_settings
from benchctl.executors.base import ExecutorError
from benchctl.executors.files import tail_lines
from benchctl.executors.process import Completed
from benchctl.executors.ssh import SftpFiles, SshExecutor
from benchctl.executors.ssh_connect import (
    ConnectionLost,
    RefuseUnknownHost,
    SshTarget,
    UnknownHostKey,
    fingerprint,
    parse_remote,
    resolve_target,
)
from benchctl.executors.ssh_forward import Forwards
from tests.conftest import string_ui
from tests.fakes import FakeJob, FakeSlurm
from tests.sshd import CommentSlurm, FakeConnection


@pytest.fixture
def slurm() -> CommentSlurm:
    return CommentSlurm()


@pytest.fixture
def conn(slurm: CommentSlurm, tmp_path: Path) -> FakeConnection:
    (tmp_path / "remote-home").mkdir()
    return FakeConnection(slurm, tmp_path / "remote-home")


@pytest.fixture
def executor(conn: FakeConnection, monkeypatch: pytest.MonkeyPatch) -> SshExecutor:
    monkeypatch.setattr("benchctl.executors.ssh.LOOKUP_GAP", 0.0)
    return SshExecutor(conn)


# ---- targets ---------------------------------------------------------------------------------------------
@pytest.mark.parametrize(("text", "expected"), [
    ("u100@login.lxp.lu:8822", ("u100", "login.lxp.lu", 8822)), ("login.lxp.lu", ("", "login.lxp.lu", 0)),
    ("root@127.0.0.1:2222", ("root", "127.0.0.1", 2222)), ("me@[::1]:2200", ("me", "::1", 2200)),
    ("meluxina", ("", "meluxina", 0))])
def test_parse_remote(text: str, expected: tuple[str, str, int]) -> None:
    assert parse_remote(text) == expected


@pytest.mark.parametrize("text", ["", "u@", "u@host:99999", "u@host:x", "-oProxyCommand=x", "u@h ost"])
def test_parse_remote_refuses(text: str) -> None:
    with pytest.raises(ValueError):
        parse_remote(text)


def test_ssh_config_is_honoured_and_explicit_values_win(tmp_path: Path) -> None:
    config = tmp_path / "config"
    config.write_text("Host mlx\n  HostName login.lxp.lu\n  User u100\n  Port 8822\n  IdentityFile ~/.ssh/mlx\n"
                      "  ProxyJump gw@bastion:22\n")
    target = resolve_target("mlx", ssh_config=config)
    assert (target.hostname, target.user, target.port, target.proxy_jump) == ("login.lxp.lu", "u100", 8822,
                                                                             "gw@bastion:22")
    assert target.key_files == (os.path.expanduser("~/.ssh/mlx"),) and target.label == "u100@mlx:8822"
    other = resolve_target("mlx", user="u200", port=2222, key_file="/k", ssh_config=config)
    assert (other.user, other.port, other.key_files) == ("u200", 2222, ("/k",))
    plain = resolve_target("login.lxp.lu", ssh_config=tmp_path / "none")
    assert (plain.hostname, plain.port) == ("login.lxp.lu", 22)


# ---- host keys -------------------------------------------------------------------------------------------
def test_unknown_host_key_refused_with_fingerprint_and_how_to_accept(tmp_path: Path) -> None:
    if not os.path.exists("/usr/bin/ssh-keygen"):
        pytest.skip("ssh-keygen not installed")
    import paramiko

    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(tmp_path / "k")], check=True)
    key = paramiko.Ed25519Key.from_private_key_file(str(tmp_path / "k"))
    expected = subprocess.run(["ssh-keygen", "-lf", str(tmp_path / "k.pub")], capture_output=True, text=True,
                              check=True).stdout.split()[1]
    assert fingerprint(key) == expected
    target = SshTarget("login", "login.lxp.lu", "u1", 8822, known_hosts="/kh")
    with pytest.raises(UnknownHostKey) as err:
        RefuseUnknownHost(target).missing_host_key(paramiko.SSHClient(), "[login.lxp.lu]:8822", key)
    text = str(err.value)
    assert expected in text and "ssh-keyscan -p 8822 login.lxp.lu >> /kh" in text and "\n" not in text


def test_unreachable_host_is_one_line_and_the_shell_goes_on(isolated_env: Path) -> None:
    import socket

    with socket.socket() as probe:  # a port nobody listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    settings = load_settings(executor="ssh", profile="local")
    settings.layer({"remote.host": f"u1@127.0.0.1:{port}"}, "test")
    ui, buf = string_ui()
    app = App(settings=settings, ui=ui)
    assert app.run_lines(["start chroma --runtime none", "help"], keep_going=True) == 1
    out = buf.getvalue()
    assert f"error: cannot connect to 127.0.0.1:{port}: connection refused" in out
    assert "start SERVICE" in out  # the next command ran
    assert not app.jobs.all()
    app.close()


def test_ssh_executor_needs_a_host(isolated_env: Path) -> None:
    ui, buf = string_ui()
    app = App(settings=load_settings(executor="ssh", profile="local"), ui=ui)
    assert not app.run_line("start chroma")
    assert "needs a login node: --remote USER@HOST[:PORT]" in buf.getvalue()


def test_another_clusters_job_is_refused_before_anything_connects(isolated_env: Path) -> None:
    """The first command of a session (no executor made yet) must still tell the clusters apart: judging by
    the executor's name alone would let `stop` cancel job 777 on the wrong cluster."""
    from benchctl.jobs import Job
    from benchctl.slurm.states import JobState

    ui, buf = string_ui()
    settings = load_settings(executor="ssh", profile="local")
    settings.layer({"remote.host": "u100@login.example:8822"}, "test")
    app = App(settings=settings, ui=ui)
    app.jobs.add(Job(id="777", service="chroma", executor="ssh", state=JobState.RUNNING,
                     extra={"remote": "u200@other:22"}))
    assert not app.run_line("stop 777")  # refused from the table: no connection was tried
    assert "job 777 runs on u200@other:22; manage it with 'benchctl --remote u200@other:22'" in buf.getvalue()
    assert not app.owns(app.jobs.get("777"))  # type: ignore[arg-type]


# ---- commands over the connection ------------------------------------------------------------------------
def test_queries_are_argv_quoted_and_retried_after_a_drop(executor: SshExecutor, conn: FakeConnection,
                                                          slurm: CommentSlurm) -> None:
    slurm.jobs["7"] = FakeJob("7", state="RUNNING", nodes="n1")
    conn.drops["squeue"] = 1
    assert executor.query(["7"])["7"].state.value == "RUNNING"
    assert [c.split()[0] for c in conn.commands] == ["squeue", "squeue"]
    executor.cancel("7")
    assert conn.commands[-1] == "scancel 7"


def test_a_program_missing_on_the_login_node_says_where(executor: SshExecutor, slurm: CommentSlurm) -> None:
    slurm.fail_next["squeue"] = Completed(("squeue",), 127, "", "sh: 1: squeue: not found")
    slurm.fail_next["sacct"] = Completed(("sacct",), 127, "", "sh: 1: sacct: not found")
    with pytest.raises(ExecutorError, match="squeue is not found on u100@login:8822"):
        executor.query(["1"])


def test_submit_quotes_paths_and_sends_secrets_on_stdin(executor: SshExecutor, conn: FakeConnection,
                                                        slurm: CommentSlurm) -> None:
    job_id = executor.submit(Path("/home/u 1/it's/job.sh"), cwd=Path("/home/u 1/it's"),
                             env={"BENCHCTL_API_KEY": "s3cr3t 'x' $(rm -rf /)"})
    assert slurm.jobs[job_id].env["BENCHCTL_API_KEY"] == "s3cr3t 'x' $(rm -rf /)"
    command = conn.commands[-1]
    assert "s3cr3t" not in command and "cd -- '/home/u 1/it'\"'\"'s'" in shlex.split(command)[2]
    assert slurm.comments[job_id].startswith("benchctl-")
    with pytest.raises(ExecutorError, match="cannot pass"):
        executor.submit(Path("/j.sh"), cwd=Path("/"), env={"BAD NAME": "x"})


def test_sbatch_is_not_repeated_when_the_job_got_through(executor: SshExecutor, conn: FakeConnection,
                                                         slurm: CommentSlurm) -> None:
    conn.drops["sbatch"], conn.reach_slurm = 1, True
    job_id = executor.submit(Path("/r/job.sh"), cwd=Path("/r"))
    assert list(slurm.jobs) == [job_id]  # one job, found by its comment
    assert [c.split()[0] for c in conn.commands] == ["sh", "squeue"]


def test_sbatch_is_submitted_again_when_it_never_arrived(executor: SshExecutor, conn: FakeConnection,
                                                         slurm: CommentSlurm) -> None:
    conn.drops["sbatch"] = 1
    job_id = executor.submit(Path("/r/job.sh"), cwd=Path("/r"))
    assert list(slurm.jobs) == [job_id]
    assert [c.split()[0] for c in conn.commands] == ["sh", "squeue", "squeue", "sh"]


# ---- files over SFTP -------------------------------------------------------------------------------------
def test_sftp_files(conn: FakeConnection, tmp_path: Path) -> None:
    files = SftpFiles(conn)
    run = tmp_path / "remote-home" / "benchctl" / "jobs" / "x"
    files.write_text(run / "job.sh", "#!/bin/bash\necho hi\n", mode=0o700)
    assert (run / "job.sh").stat().st_mode & 0o777 == 0o700 and run.stat().st_mode & 0o777 == 0o700
    assert files.read_text(run / "job.sh").endswith("echo hi\n") and files.is_dir(run)
    files.write_text(run / "log", "".join(f"line {i}\n" for i in range(1000)))
    assert files.read_bytes(run / "log", 7, 7) == b"line 1\n"
    assert files.read_bytes(run / "log", 10**6) == b""
    assert tail_lines(files, run / "log", 2) == ["line 998", "line 999"]
    assert files.stat(run / "missing") is None and files.listdir(run / "missing") == []
    assert files.listdir(run) == ["job.sh", "log"]
    with pytest.raises(FileNotFoundError):
        files.read_bytes(run / "missing")
    conn.sftp_client.fail = 1  # a dropped connection: done again on the new one
    assert files.stat(run / "log") is not None
    conn.sftp_client.fail = 2
    with pytest.raises(ConnectionLost):
        files.stat(run / "log")


# ---- remote paths ----------------------------------------------------------------------------------------
def test_job_paths_are_the_login_nodes(isolated_env: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("BENCHCTL_HOME")
    settings = load_settings(executor="ssh", profile="meluxina")
    settings.layer({"slurm.account": "p200981"}, "test")
    local_home = settings.home
    settings.remote = RemoteSide(user="u100", home_dir=lambda: "/home/users/u100")
    assert settings.home == local_home == Path(os.environ["HOME"]) / "benchctl"  # table, results: here
    assert settings.job_home == Path("/home/users/u100/benchctl")
    assert settings.expand_text("{home}/x/{user}/~") == "/home/users/u100/benchctl/x/u100/~"
    assert settings.expand_text("~/data") == "/home/users/u100/data"
    settings.layer({"remote.home": "/project/home/p200981/{user}"}, "test")
    assert settings.job_home == Path("/project/home/p200981/u100")


# ---- forwards and tunnel ---------------------------------------------------------------------------------
class _Hello(http.server.BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        body = b'{"nanosecond heartbeat": 1}'
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: Any) -> None:
        pass


def _serve() -> Iterator[int]:
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Hello)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield server.server_address[1]
    server.shutdown()
    server.server_close()


@pytest.fixture
def service_port() -> Iterator[int]:
    yield from _serve()


@pytest.fixture
def other_port() -> Iterator[int]:
    yield from _serve()


def get(url: str) -> str:
    with urllib.request.urlopen(url, timeout=5) as answer:
        return str(answer.read().decode())


def test_forward_reaches_the_service_and_closes(conn: FakeConnection, service_port: int) -> None:
    forwards = Forwards(conn)
    forward = forwards.open("127.0.0.1", service_port, label="svc")
    assert "heartbeat" in get(f"http://{forward.local}/api/v2/heartbeat")
    assert forwards.ensure("127.0.0.1", service_port) is forward and forward.connections == 1
    taken = forward.local_port
    with pytest.raises(ExecutorError, match=f"cannot listen on 127.0.0.1:{taken}"):
        forwards.open("127.0.0.1", service_port, local_port=taken)
    forwards.close_all()
    with pytest.raises(OSError):
        get(f"http://{forward.local}/")


def ssh_app(conn: FakeConnection, slurm: FakeSlurm) -> tuple[App, Any]:
    settings = load_settings(executor="ssh", profile="local")
    settings.layer({"remote.home": "~/benchctl"}, "test")  # ~ of the login node (the fake SFTP's home)
    executor = SshExecutor(conn, runner=slurm)
    executor.attach(settings)
    ui, buf = string_ui()
    app = App(settings=settings, runner=slurm, ui=ui, executor_obj=executor)
    app.out = buf  # type: ignore[attr-defined]
    return app, buf


def running(app: App, slurm: FakeSlurm, port: int, service: str = "chroma", more: str = "") -> str:
    """Start ``service`` and make its job RUNNING on n1 with ``port`` (the markers a real job prints)."""
    assert app.run_line(f"start {service} --runtime none"), app.out.getvalue()  # type: ignore[attr-defined]
    job = app.jobs.all()[-1]
    slurm.jobs[job.id].state, slurm.jobs[job.id].nodes = "RUNNING", "n1"
    Path(job.out_path).write_text(f"BENCHCTL_HOST=n1\nBENCHCTL_NODE=n1\nBENCHCTL_IP=127.0.0.1\nBENCHCTL_PORT={port}\n"
                                  f"{more}BENCHCTL_READY=2026-12-04T00:00:00Z\n")
    return job.id


def test_start_check_and_tunnel_over_ssh(isolated_env: Path, conn: FakeConnection, slurm: CommentSlurm,
                                         tmp_path: Path, service_port: int) -> None:
    app, buf = ssh_app(conn, slurm)
    job_id = running(app, slurm, service_port)
    job = app.jobs.get(job_id)
    assert job is not None and job.extra["remote"] == "u100@login:8822"
    assert job.run_dir.startswith(str(tmp_path / "remote-home" / "benchctl" / "jobs"))
    assert app.run_line("check chroma --wait --timeout 20")  # the probe went through an automatic forward
    assert conn.fake_transport.opened == [("127.0.0.1", service_port)]
    assert app.run_line("check chroma")
    assert f"'tunnel {job_id}' (a forward over benchctl's SSH connection)" in buf.getvalue()
    assert app.run_line(f"tunnel {job_id}")
    local = re.findall(r"tunnel \d+: http://(127\.0\.0\.1:\d+)", buf.getvalue())[-1]
    assert "heartbeat" in get(f"http://{local}/api/v2/heartbeat")
    assert app.run_line("tunnel --list")
    assert "(automatic)" in buf.getvalue() and f"chroma {job_id}" in buf.getvalue()
    assert not app.run_line("tunnel --close 99") and "no tunnel 99" in buf.getvalue()
    assert app.run_line("tunnel --close all") and "closed 2 tunnels" in buf.getvalue()
    assert not app.run_line("tunnel chroma 99999")
    app.close()


def test_jobs_of_another_login_node_are_neither_polled_nor_managed(isolated_env: Path, conn: FakeConnection,
                                                                     slurm: CommentSlurm, service_port: int) -> None:
    """A laptop's table holds jobs of two clusters: this connection must not ask its cluster about the other's
    job ids (it would mark them gone, or report a stranger's job that has the same id)."""
    from benchctl.jobs import Job
    from benchctl.slurm.states import JobState

    app, buf = ssh_app(conn, slurm)
    mine = running(app, slurm, service_port)
    app.jobs.add(Job(id="777", service="chroma", executor="ssh", state=JobState.RUNNING, nodes="x1",
                     extra={"remote": "u200@other:22"}))
    slurm.calls.clear()
    assert app.run_line("status")
    asked = " ".join(" ".join(c) for c in slurm.calls)
    assert mine in asked and "777" not in asked
    other = app.jobs.get("777")
    assert other is not None and other.state is JobState.RUNNING  # not marked gone by the wrong cluster
    assert not app.run_line("stop 777")
    assert "job 777 runs on u200@other:22; manage it with 'benchctl --remote u200@other:22'" in buf.getvalue()
    assert app.run_line("check chroma") and f"chroma job {mine}" in buf.getvalue()  # its own, not the newer 777
    app.close()


def test_runtime_none_jobs_run_the_clusters_python_over_ssh(isolated_env: Path, conn: FakeConnection,
                                                            slurm: CommentSlurm, tmp_path: Path) -> None:
    """remote.python names benchctl's python on the cluster: runtime-none jobs and the bench client run it (the
    laptop's own path would mean nothing on the login node)."""
    import sys

    app, buf = ssh_app(conn, slurm)
    app.settings.layer({"remote.python": "~/venv/bin/python"}, "test")
    assert app.run_line("start llm-sim --runtime none"), buf.getvalue()
    script = Path(app.jobs.all()[-1].script_path).read_text()
    remote_bin = tmp_path / "remote-home" / "venv" / "bin"
    assert f"export PATH={remote_bin}:" in script and os.path.dirname(sys.executable) not in script
    assert app.service_context().python == str(remote_bin / "python")
    app.close()


def test_exporter_sidecars_are_scraped_through_a_forward(isolated_env: Path, conn: FakeConnection,
                                                         slurm: CommentSlurm, tmp_path: Path) -> None:
    """bench's timeline samples a job's --exporters sidecars: from a laptop, through a forward (node:port of a
    compute node is not reachable from there)."""
    import json

    from benchctl.commands.bench import exporter_targets
    from benchctl.jobs import Job
    from benchctl.slurm.states import JobState

    app, _buf = ssh_app(conn, slurm)
    mon_dir = tmp_path / "remote-home" / "mon"
    (mon_dir / "targets" / "exporters").mkdir(parents=True)
    (mon_dir / "targets" / "exporters" / "500-node-n2.json").write_text(json.dumps(
        [{"targets": ["n2:9100"], "labels": {"exporter": "node", "node": "n2", "job_id": "500"}}]))
    slurm.jobs["400"] = FakeJob("400", state="RUNNING", nodes="n1")
    app.jobs.add(Job(id="400", service="monitor", executor="ssh", state=JobState.RUNNING, run_dir=str(mon_dir),
                     out_path=str(mon_dir / "slurm-400.out"), extra={"remote": "u100@login:8822"}))
    server = Job(id="500", service="llm-sim", executor="ssh", state=JobState.RUNNING, options={"exporters": "node"},
                 extra={"remote": "u100@login:8822"})
    [target] = exporter_targets(app, server)
    assert target.name == "node@n2" and target.url.startswith("http://127.0.0.1:")
    forward = app.executor.forwards.find("n2", 9100)  # type: ignore[attr-defined]
    assert forward is not None
    assert target.url == f"http://127.0.0.1:{forward.local_port}/metrics"
    app.close()


def test_client_job_over_ssh_gets_the_runs_input_files(isolated_env: Path, conn: FakeConnection,
                                                        slurm: CommentSlurm, tmp_path: Path) -> None:
    """The client tasks on the cluster cannot read the laptop's --trace/--prompts/--structured files: they
    are copied into the job's folder and the spec names the copies (built-in sets stay as they are)."""
    import json

    from benchctl.services.benchclient import SPEC, BenchClient

    app, _buf = ssh_app(conn, slurm)
    trace = tmp_path / "laptop" / "t.jsonl"
    trace.parent.mkdir()
    trace.write_text('{"timestamp": 0, "input_length": 8, "output_length": 2}\n')
    service = app.service("bench-client")
    assert isinstance(service, BenchClient)
    service.spec = {"config": {"trace": str(trace), "prompts": "", "structured": "json,choice"}, "url": "u"}
    run_dir = tmp_path / "remote-home" / "benchctl" / "jobs" / "bench-client-1"
    service.files.mkdir(run_dir.parent)
    service.files.mkdir(run_dir)
    service.prepare_run_dir({}, run_dir)
    config = json.loads((run_dir / SPEC).read_text())["config"]
    assert config["trace"] == str(run_dir / "inputs" / "trace-t.jsonl")
    assert (run_dir / "inputs" / "trace-t.jsonl").read_text() == trace.read_text()
    assert config["structured"] == "json,choice" and config["prompts"] == ""
    app.close()


def test_tunnel_monitor_forwards_grafana_and_prometheus(isolated_env: Path, conn: FakeConnection, slurm: CommentSlurm,
                                                        service_port: int, other_port: int) -> None:
    app, buf = ssh_app(conn, slurm)
    running(app, slurm, service_port, "monitor", f"BENCHCTL_GRAFANA_PORT={other_port}\nBENCHCTL_PUSH_PORT=1\n")
    assert app.run_line("tunnel monitor"), buf.getvalue()
    lines = re.findall(r"tunnel \d+: http://(127\.0\.0\.1:\d+) → (\w+) of monitor", buf.getvalue())
    assert [what for _, what in lines] == ["grafana", "prometheus"]
    assert all("heartbeat" in get(f"http://{local}/") for local, _ in lines)
    app.close()


def test_tunnel_on_the_login_node_prints_the_ssh_command(make_app: Any, fake_slurm: FakeSlurm) -> None:
    app = make_app(profile="meluxina")
    app.settings.layer({"tunnel.host": "login.lxp.lu", "tunnel.port": 8822, "tunnel.user": "u100"}, "test")
    assert app.run_line("start chroma")
    job = app.jobs.all()[-1]
    fake_slurm.jobs[job.id].state, fake_slurm.jobs[job.id].nodes = "RUNNING", "mel0153"
    Path(job.out_path).parent.mkdir(parents=True, exist_ok=True)
    Path(job.out_path).write_text("BENCHCTL_HOST=mel0153\nBENCHCTL_NODE=mel0153\nBENCHCTL_PORT=8000\n")
    assert app.run_line("tunnel chroma")
    out = app.out.getvalue()
    assert "ssh -p 8822 u100@login.lxp.lu -NL 8000:mel0153:8000" in out
    assert app.run_line("tunnel --list") and "no tunnels open" in app.out.getvalue()
    assert not app.run_line("tunnel --close all")


def test_main_refuses_a_bad_remote(isolated_env: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from benchctl.__main__ import main

    assert main(["--remote", "u@host:99999", "-e", "status"]) == 2
    assert "--remote 'u@host:99999': the port must be" in capsys.readouterr().err
    assert main(["--remote", "u@host", "--executor", "local", "-e", "status"]) == 2
    assert "does not go with --executor local" in capsys.readouterr().err
