"""End-to-end smoke tests: the installed entry point in a real pseudo-terminal (pexpect), plus batch modes.

The prompt is matched as ``benchctl>`` without its trailing space (prompt_toolkit's cursor codes follow it), and
Tab is paced: completion is asynchronous, so keys sent in the same write would overtake it.
"""

from __future__ import annotations

import glob
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

pexpect = pytest.importorskip("pexpect")

pytestmark = pytest.mark.e2e

PROMPT = "benchctl>"
TIMEOUT = 10


@pytest.fixture
def env(tmp_path: Path) -> dict[str, str]:
    home = tmp_path / "home"
    home.mkdir(exist_ok=True)  # the autouse isolated_env fixture may have made it
    env = {k: v for k, v in os.environ.items() if not k.startswith(("SLURM_", "SBATCH_", "XDG_", "BENCHCTL_"))}
    env.update(
        HOME=str(home),
        XDG_CONFIG_HOME=str(home / ".config"),
        XDG_STATE_HOME=str(home / ".state"),
        XDG_DATA_HOME=str(home / ".data"),
        XDG_CACHE_HOME=str(home / ".cache"),
        BENCHCTL_HOME=str(tmp_path / "bc"),
        BENCHCTL_CONFIG=str(tmp_path / "config.toml"),  # does not exist: defaults apply
        TERM="xterm",
        PROMPT_TOOLKIT_NO_CPR="1",
        PAGER="cat",
        COLUMNS="120",
        LINES="40",
    )
    return env


class Shell:
    """A benchctl process in a pty, with pgcli-style failure messages on timeouts."""

    def __init__(self, env: dict[str, str], *args: str) -> None:
        self.child = pexpect.spawn(sys.executable, ["-m", "benchctl", "--executor", "local", *args], env=env,
                                   encoding="utf-8", dimensions=(40, 120), timeout=TIMEOUT,
                                   cwd=str(Path(__file__).resolve().parents[2]))

    def expect(self, text: str) -> None:
        try:
            self.child.expect_exact(text)
        except (pexpect.TIMEOUT, pexpect.EOF) as exc:
            tail = (self.child.before or "")[-2000:]
            pytest.fail(f"Expected:\n  {text!r}\nActual (tail of output):\n{tail}\n({exc.__class__.__name__})")

    def prompt(self) -> None:
        self.expect(PROMPT)

    def send(self, text: str) -> None:
        self.child.send(text)

    def tab(self, text: str) -> None:
        """Type ``text``, wait, then press Tab (in one write the Tab would overtake the completion)."""
        self.child.send(text)
        time.sleep(0.3)
        self.child.send("\t")
        time.sleep(0.3)

    def run(self, line: str) -> None:
        self.child.send(line + "\r")

    def exit_status(self) -> int:
        self.expect(pexpect.EOF)  # type: ignore[arg-type]
        self.child.close()
        return self.child.exitstatus

    def close(self) -> None:
        if self.child.isalive():
            self.child.close(force=True)


@pytest.fixture
def shell(env: dict[str, str]):  # type: ignore[no-untyped-def]
    shells: list[Shell] = []

    def spawn(*args: str) -> Shell:
        shells.append(Shell(env, *args))
        return shells[-1]

    yield spawn
    for s in shells:
        s.close()


def test_tab_completed_dry_run_then_save_and_exit(shell, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    sh = shell()
    sh.prompt()
    sh.tab("star")
    sh.send(" ")
    sh.tab("chr")
    sh.send(" ")
    sh.tab("--dry")
    # A space, not Enter: Enter while a completion is selected only closes the menu.
    sh.send(" \r")
    sh.expect("#SBATCH --job-name=benchctl-chroma")
    sh.expect("dry run: nothing submitted")
    sh.prompt()
    target = tmp_path / "t.txt"
    sh.run(f"save {target}")
    sh.expect("saved ")
    sh.prompt()
    sh.run("exit")
    assert sh.exit_status() == 0
    text = target.read_text()
    assert "benchctl> start chroma --dry-run" in text
    assert "#SBATCH --job-name=benchctl-chroma" in text


def test_hangup_saves_the_transcript(shell, env: dict[str, str]) -> None:  # type: ignore[no-untyped-def]
    """A dropped SSH session (SIGHUP) must not lose the session's transcript."""
    sh = shell()
    sh.prompt()
    sh.run("help")
    sh.expect("services: chroma")
    sh.prompt()
    sh.send("stat")  # a half-typed line when the connection drops
    time.sleep(0.3)
    sh.child.kill(signal.SIGHUP)
    sh.expect(pexpect.EOF)  # type: ignore[arg-type]
    [saved] = glob.glob(os.path.join(env["BENCHCTL_HOME"], "sessions", "*", "transcript.txt"))
    text = Path(saved).read_text()
    assert "benchctl> help" in text and "services: chroma" in text


def test_error_line_then_ctrl_d_autosaves(shell, env: dict[str, str]) -> None:  # type: ignore[no-untyped-def]
    sh = shell()
    sh.prompt()
    sh.run("help")
    sh.expect("services: chroma")
    sh.prompt()
    sh.run("bogus")
    sh.expect("error: unknown command 'bogus' (try 'help')")
    sh.prompt()
    sh.send("\x04")  # Ctrl-D on an empty line
    sh.expect("transcript saved to")
    assert sh.exit_status() == 0
    [saved] = glob.glob(os.path.join(env["BENCHCTL_HOME"], "sessions", "*", "transcript.txt"))
    text = Path(saved).read_text()
    assert "benchctl> help" in text
    assert "benchctl> bogus" in text
    assert "error: unknown command 'bogus'" in text


def benchctl(env: dict[str, str], *args: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "benchctl", "--executor", "local", *args], env=env, text=True,
                          capture_output=True, input=stdin if stdin is not None else "", timeout=TIMEOUT,
                          cwd=str(Path(__file__).resolve().parents[2]))


def test_batch_modes(env: dict[str, str], tmp_path: Path) -> None:
    bad = benchctl(env, "-e", "bogus")
    assert bad.returncode != 0
    # One clear line, on stderr (batch modes keep stdout for results).
    assert [ln for ln in bad.stderr.splitlines() if ln.strip()] == ["error: unknown command 'bogus' (try 'help')"]
    assert not bad.stdout.strip()

    good = benchctl(env, "-e", "help; status")
    assert good.returncode == 0, good.stdout + good.stderr
    assert "services: chroma" in good.stdout and "no jobs tracked" in good.stdout

    script = tmp_path / "cmds.txt"
    script.write_text("# comment\nhelp\nbogus\nstatus\n")
    stopped = benchctl(env, "--script", str(script))
    assert stopped.returncode == 1
    assert "services: chroma" in stopped.stdout and "error: unknown command 'bogus'" in stopped.stderr
    assert "no jobs tracked" not in stopped.stdout  # the line after the failure did not run
    going = benchctl(env, "--script", str(script), "--keep-going")
    assert going.returncode == 1
    assert "no jobs tracked" in going.stdout

    missing = benchctl(env, "--script", str(tmp_path / "nope.txt"))
    assert missing.returncode == 2 and "cannot read" in missing.stderr


def test_piped_stdin_is_batch_mode(env: dict[str, str]) -> None:
    res = benchctl(env, stdin="help\nstart chroma --dry-run\n")
    assert res.returncode == 0, res.stdout + res.stderr
    assert "Input is not a terminal" not in res.stdout + res.stderr
    assert "services: chroma" in res.stdout
    assert "#SBATCH --job-name=benchctl-chroma" in res.stdout
    assert "\x1b[" not in res.stdout  # no prompt rendering / cursor codes
