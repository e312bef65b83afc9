"""benchctl.executors.local for real: it starts real processes (each test stays well under 10 s)."""

from __future__ import annotations

import contextlib
import getpass
import socket
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from benchctl.executors.base import ExecutorError
from benchctl.executors.local import LocalExecutor, expand_pattern, parse_time_limit, sbatch_options
from benchctl.slurm.parse import JobStatus
from benchctl.slurm.states import JobState

# ---- pure helpers -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "seconds"),
    [
        ("30", 30 * 60),  # M
        ("1:30", 90),  # M:S
        ("01:00:00", 3600),  # H:M:S
        ("0:02", 2),
        ("1-00:00:00", 86400),  # D-H:M:S
        ("2-3", 2 * 86400 + 3 * 3600),  # D-H
        ("1-2:30", 86400 + 2 * 3600 + 30 * 60),  # D-H:M
        ("INFINITE", 0),
        ("UNLIMITED", 0),
        ("infinite", 0),
        ("", 0),
        ("  15  ", 15 * 60),
    ],
)
def test_parse_time_limit(text: str, seconds: int) -> None:
    assert parse_time_limit(text) == seconds


@pytest.mark.parametrize("text", ["soon", "1:xx", "a-1"])
def test_parse_time_limit_garbage_raises_value_error(text: str) -> None:
    with pytest.raises(ValueError):
        parse_time_limit(text)


def test_sbatch_options() -> None:
    script = """#!/bin/bash -l
#SBATCH --job-name=benchctl-chroma
#SBATCH --account='p200981'
#SBATCH --time 01:00:00

# a comment between header lines is fine
#SBATCH --output="/home/u/run/slurm-%j.out"
#SBATCH --exclusive
#SBATCH -N 1
echo hello
#SBATCH --error=/ignored/after/the/first/command
"""
    opts = sbatch_options(script)
    assert opts == {
        "job-name": "benchctl-chroma",
        "account": "p200981",
        "time": "01:00:00",
        "output": "/home/u/run/slurm-%j.out",
        "exclusive": "",
    }


def test_sbatch_options_ignores_the_shebang_line_and_empty_script() -> None:
    assert sbatch_options("#SBATCH --time=5\n") == {}  # line 1 is always the interpreter line
    assert sbatch_options("") == {}


def test_expand_pattern() -> None:
    user = getpass.getuser()
    assert expand_pattern("slurm-%j.out", "local-3", "job", "n1") == "slurm-local-3.out"
    assert expand_pattern("%x_%A.%N.log", "7", "bench", "n1") == "bench_7.n1.log"
    assert expand_pattern("100%%-%j", "7", "x", "n") == "100%-7"
    assert expand_pattern("keep-%z-%5j", "7", "x", "n") == "keep-%z-%5j"  # unsupported patterns stay
    assert expand_pattern("/home/%u/%j", "7", "x", "n") == f"/home/{user}/7"


# ---- real jobs ------------------------------------------------------------------------------------


@pytest.fixture
def executor(tmp_path: Path) -> Iterator[LocalExecutor]:
    ex = LocalExecutor(tmp_path / "state" / "local")
    yield ex
    # never leave a job running behind a failed test
    for job_id in list(ex._children):
        with contextlib.suppress(ExecutorError):
            ex.cancel(job_id)


def make_script(run_dir: Path, body: str, *, time_limit: str | None = "00:01:00", name: str = "job") -> Path:
    run_dir.mkdir(parents=True, exist_ok=True)
    header = ["#!/bin/bash", f"#SBATCH --job-name={name}", "#SBATCH --output=slurm-%j.out"]
    if time_limit is not None:
        header.append(f"#SBATCH --time={time_limit}")
    script = run_dir / "job.sh"
    script.write_text("\n".join(header) + "\n" + body + "\n")
    return script


def wait_for(executor: LocalExecutor, job_id: str, *, final: bool = True, timeout: float = 8.0) -> JobStatus:
    deadline = time.monotonic() + timeout
    while True:
        status = executor.query([job_id])[job_id]
        if status.state.is_final == final:
            return status
        if time.monotonic() > deadline:
            raise AssertionError(f"{job_id} still {status.state.value} after {timeout} s")
        time.sleep(0.05)


def wait_for_text(path: Path, text: str, timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if path.exists() and text in path.read_text():
            return
        time.sleep(0.05)
    raise AssertionError(f"{text!r} never appeared in {path}")


def session_processes(sid: int) -> list[int]:
    """Live (non-zombie) processes whose session id is ``sid``, read from /proc."""
    return LocalExecutor._session_members(sid)


def is_live(pid: int) -> bool:
    """The process exists and is not a zombie waiting to be reaped."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except (OSError, IndexError):
        return False


def job_sid(executor: LocalExecutor, job_id: str) -> int:
    return int((executor.state_dir / job_id / "pid").read_text())


def test_completed_job_writes_its_id(executor: LocalExecutor, tmp_path: Path) -> None:
    run = tmp_path / "run"
    script = make_script(run, 'echo "id=$SLURM_JOB_ID name=$SLURM_JOB_NAME node=$SLURMD_NODENAME"\n'
                              'echo "exec=$BENCHCTL_EXECUTOR cwd=$(pwd)"\nexit 0', name="hello")
    job_id = executor.submit(script, cwd=run)
    assert job_id == "local-1"
    status = wait_for(executor, job_id)
    assert status.state is JobState.COMPLETED
    assert status.exit_code == 0
    assert status.job_id == job_id
    out = (run / f"slurm-{job_id}.out").read_text()
    node = socket.gethostname().split(".")[0]
    assert f"id={job_id} name=hello node={node}" in out
    assert f"exec=local cwd={run}" in out
    assert status.nodes == node


def test_ids_are_unique_across_executors(executor: LocalExecutor, tmp_path: Path) -> None:
    run = tmp_path / "run"
    script = make_script(run, "exit 0")
    first = executor.submit(script, cwd=run)
    # a second benchctl process over the same state dir must not reuse the id
    second = LocalExecutor(executor.state_dir).submit(script, cwd=run)
    assert first != second
    wait_for(executor, first)
    wait_for(LocalExecutor(executor.state_dir), second)


def test_failed_job_exit_code(executor: LocalExecutor, tmp_path: Path) -> None:
    run = tmp_path / "run"
    job_id = executor.submit(make_script(run, "echo boom >&2\nexit 3"), cwd=run)
    status = wait_for(executor, job_id)
    assert status.state is JobState.FAILED
    assert status.exit_code == 3
    assert "boom" in (run / f"slurm-{job_id}.out").read_text()  # no --error: stderr joins stdout


def test_separate_error_file(executor: LocalExecutor, tmp_path: Path) -> None:
    run = tmp_path / "run"
    run.mkdir()
    script = run / "job.sh"
    script.write_text("#!/bin/bash\n#SBATCH --output=logs/%x-%j.out\n#SBATCH --error=logs/%x-%j.err\n"
                      "#SBATCH --job-name=sep\necho to-out\necho to-err >&2\n")
    job_id = executor.submit(script, cwd=run)
    assert wait_for(executor, job_id).state is JobState.COMPLETED
    assert (run / "logs" / f"sep-{job_id}.out").read_text() == "to-out\n"
    assert (run / "logs" / f"sep-{job_id}.err").read_text() == "to-err\n"


def test_time_limit_gives_timeout(executor: LocalExecutor, tmp_path: Path) -> None:
    run = tmp_path / "run"
    job_id = executor.submit(make_script(run, "echo started\nsleep 30", time_limit="0:02"), cwd=run)
    assert executor.query([job_id])[job_id].state is JobState.RUNNING
    start = time.monotonic()
    status = wait_for(executor, job_id)
    assert status.state is JobState.TIMEOUT
    assert time.monotonic() - start < 8
    assert not session_processes(job_sid(executor, job_id))  # `sleep 30` went with it


def test_cancel_running_job_leaves_no_process(executor: LocalExecutor, tmp_path: Path) -> None:
    run = tmp_path / "run"
    job_id = executor.submit(make_script(run, "echo started\nsleep 60"), cwd=run)
    wait_for_text(run / f"slurm-{job_id}.out", "started")
    sid = job_sid(executor, job_id)
    members = session_processes(sid)
    assert sid in members
    assert len(members) >= 3  # wrapper, timeout, bash, sleep
    assert executor.query([job_id])[job_id].state is JobState.RUNNING
    executor.cancel(job_id)
    status = executor.query([job_id])[job_id]
    assert status.state is JobState.CANCELLED
    assert session_processes(sid) == []
    assert not [pid for pid in members if is_live(pid)]  # wrapper, timeout, bash and sleep are all gone
    # cancelling again is a no-op, like scancel on a finished job
    executor.cancel(job_id)
    assert executor.query([job_id])[job_id].state is JobState.CANCELLED


def test_cancel_finished_job_keeps_its_state(executor: LocalExecutor, tmp_path: Path) -> None:
    run = tmp_path / "run"
    job_id = executor.submit(make_script(run, "exit 0"), cwd=run)
    assert wait_for(executor, job_id).state is JobState.COMPLETED
    executor.cancel(job_id)
    assert executor.query([job_id])[job_id].state is JobState.COMPLETED
    assert not (executor.state_dir / job_id / "cancelled").exists()


@pytest.mark.parametrize(("time_limit", "exit_status", "state"),
                         [("00:01:00", 0, JobState.COMPLETED), (None, 5, JobState.FAILED)])
def test_signal_term_reaches_the_script(executor: LocalExecutor, tmp_path: Path, time_limit: str | None,
                                        exit_status: int, state: JobState) -> None:
    run = tmp_path / "run"
    body = (f"trap 'echo got TERM; exit {exit_status}' TERM\n"
            "echo armed\n"
            "for _ in $(seq 1 100); do sleep 0.1; done\n"
            "echo never-signalled\nexit 99")
    job_id = executor.submit(make_script(run, body, time_limit=time_limit), cwd=run)
    out = run / f"slurm-{job_id}.out"
    wait_for_text(out, "armed")
    executor.signal(job_id, "TERM")
    wait_for_text(out, "got TERM")
    status = wait_for(executor, job_id)
    # the wrapper survived the signal and recorded the script's own exit status
    assert status.state is state
    assert status.exit_code == exit_status
    assert "never-signalled" not in out.read_text()
    assert not (executor.state_dir / job_id / "cancelled").exists()


def test_signal_accepts_sig_prefix_and_rejects_unknown(executor: LocalExecutor, tmp_path: Path) -> None:
    run = tmp_path / "run"
    job_id = executor.submit(make_script(run, "trap 'echo usr1; exit 0' USR1\necho armed\nsleep 20 & wait"),
                             cwd=run)
    out = run / f"slurm-{job_id}.out"
    wait_for_text(out, "armed")
    with pytest.raises(ExecutorError, match="unknown signal"):
        executor.signal(job_id, "NOPE")
    executor.signal(job_id, "SIGUSR1")
    wait_for_text(out, "usr1")
    assert wait_for(executor, job_id).state is JobState.COMPLETED


def test_query_leaves_out_unknown_ids(executor: LocalExecutor, tmp_path: Path) -> None:
    run = tmp_path / "run"
    job_id = executor.submit(make_script(run, "exit 0"), cwd=run)
    wait_for(executor, job_id)
    found = executor.query([job_id, "local-999", "12345"])
    assert list(found) == [job_id]
    assert executor.query([]) == {}


def test_unknown_job_errors(executor: LocalExecutor) -> None:
    with pytest.raises(ExecutorError, match="unknown local job"):
        executor.cancel("local-42")
    with pytest.raises(ExecutorError, match="unknown local job"):
        executor.signal("local-42", "TERM")


def test_vanished_process_is_failed(executor: LocalExecutor, tmp_path: Path) -> None:
    """A job whose processes died without an exit status (a reboot, kill -9) is FAILED, not RUNNING forever."""
    run = tmp_path / "run"
    job_id = executor.submit(make_script(run, "exit 0"), cwd=run)
    wait_for(executor, job_id)
    (executor.state_dir / job_id / "rc").unlink()
    status = LocalExecutor(executor.state_dir).query([job_id])[job_id]
    assert status.state is JobState.FAILED
    assert status.reason == "process vanished"


def test_bad_time_and_missing_script(executor: LocalExecutor, tmp_path: Path) -> None:
    run = tmp_path / "run"
    with pytest.raises(ExecutorError, match="bad --time"):
        executor.submit(make_script(run, "exit 0", time_limit="soon"), cwd=run)
    with pytest.raises(ExecutorError, match="cannot read"):
        executor.submit(run / "missing.sh", cwd=run)


def test_quick_jobs_never_look_vanished(executor: LocalExecutor, tmp_path: Path) -> None:
    """Regression: a job ending between the rc check and the /proc scan was reported FAILED "process vanished"
    (and the poller keeps a final state for good)."""
    run = tmp_path / "run"
    script = make_script(run, "exit 0")
    ids = [executor.submit(script, cwd=run) for _ in range(8)]
    seen: dict[str, JobStatus] = {}
    deadline = time.monotonic() + 8
    while len(seen) < len(ids) and time.monotonic() < deadline:
        for job_id, status in executor.query([i for i in ids if i not in seen]).items():
            if status.state.is_final:
                seen[job_id] = status
    assert sorted(seen) == sorted(ids)
    assert {s.state for s in seen.values()} == {JobState.COMPLETED}, [s for s in seen.values() if not s.state.ok]
