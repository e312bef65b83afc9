"""IO500 storage benchmark: one MPI batch job (``srun ./io500 config.ini``), not a server.

The job runs IO500 once on ``--nodes`` x ``--tasks-per-node`` ranks against a data directory on the file
system under test (default: a new directory under ``{scratch}``, on MeluXina the Lustre scratch), then
prints ``BENCHCTL_RESULT_DIR=`` and ``BENCHCTL_DONE=``. The INI is rendered on the Python side from
``batch_templates/io500.ini.j2`` (or copied from ``--config FILE``) into the run directory next to
``job.sh``; the script only uses its path. Results are parsed with :mod:`benchctl.bench.io500`.

Every value that reaches the INI is validated here: IO500's INI parser ends a value at ``#`` or ``;``
and a newline would start a new key, so a hostile or mistyped value could silently change the run.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

from benchctl.bench.io500 import parse as io500_results
from benchctl.executors.files import read_bounded
from benchctl.jobs import Job
from benchctl.options import Complete, Option, Parser, checked, integer
from benchctl.services.server import BatchRun
from benchctl.templates import TemplateError

if TYPE_CHECKING:
    from benchctl.bench.results import RunResult

INI_TEMPLATE = "io500.ini.j2"
CONFIG_NAME = "config.ini"
LOG_NAME = "io500.out"

# Paths go into the INI unquoted and into IO500's ior/mdtest argument strings, which are split on spaces:
# no whitespace, no INI comment characters (# ;), no quotes or shell metacharacters.
_PATH_RE = re.compile(r"^[A-Za-z0-9_./+@%:,=~-]+$")
# IOR sizes: bytes or a k/m/g/t suffix ("2m", "9920000m", "4096").
_SIZE_RE = re.compile(r"^(?P<num>[1-9]\d*)(?P<unit>[kKmMgGtT]?)$")
_SIZE_FACTOR = {"": 1, "k": 1 << 10, "m": 1 << 20, "g": 1 << 30, "t": 1 << 40}
_API_RE = re.compile(r"^[A-Za-z][A-Za-z0-9_-]*$")
_INT_RE = re.compile(r"^[1-9]\d*$")
# [global] keys read from a user's --config: the job creates those directories and binds them.
_GLOBAL_KEY_RE = re.compile(r"^\s*(?P<key>datadir|resultdir)\s*=\s*(?P<value>[^#;]*?)\s*(?:[#;].*)?$", re.I)


class Io500ConfigError(TemplateError):
    """A value cannot go into the IO500 INI. A TemplateError, so ``start`` reports it like a template error."""


def _check_text(name: str, value: Any) -> str:
    text = str(value)
    if "\n" in text or "\r" in text:
        raise Io500ConfigError(f"io500 {name}: a line break would start a new INI key: {text!r}")
    return text


def check_path(name: str, value: Any) -> str:
    """An absolute path without characters the INI or IO500's argument splitting would misread."""
    text = _check_text(name, value)
    if not _PATH_RE.match(text):
        raise Io500ConfigError(f"io500 {name}: {text!r} may hold only letters, digits and _ . / + @ % : , = ~ - "
                               "(no spaces, # or ;: IO500's INI parser ends a value there)")
    if not text.startswith("/"):
        raise Io500ConfigError(f"io500 {name}: {text!r} must be an absolute path (the job runs elsewhere)")
    return text


def check_size(name: str, value: Any) -> str:
    """An IOR size: a positive number with an optional k/m/g/t suffix."""
    text = _check_text(name, value).strip()
    if not _SIZE_RE.match(text):
        raise Io500ConfigError(f"io500 {name}: expected a size like 2m, 4k or 1048576, got {text!r}")
    return text


def size_bytes(text: str) -> int:
    m = _SIZE_RE.match(text)
    if not m:
        raise Io500ConfigError(f"not an IOR size: {text!r}")
    return int(m["num"]) * _SIZE_FACTOR[m["unit"].lower()]


def check_int(name: str, value: Any) -> int:
    """A positive whole number (bools are refused: True would render as 1)."""
    text = _check_text(name, value).strip()
    if isinstance(value, bool) or not _INT_RE.match(text):
        raise Io500ConfigError(f"io500 {name}: expected a whole number >= 1, got {text!r}")
    return int(text)


def _check_choice(name: str, value: Any, choices: tuple[str, ...]) -> str:
    text = _check_text(name, value)
    if text not in choices:
        raise Io500ConfigError(f"io500 {name}: expected {' or '.join(choices)}, got {text!r}")
    return text


def _get(values: Mapping[str, Any], key: str, default: Any) -> Any:
    """``values[key]``, or ``default`` when unset. Not ``or``: a 0 from the command line must be refused,
    not silently replaced by the default."""
    value = values.get(key)
    return default if value is None or value == "" else value


def ini_values(values: Mapping[str, Any], *, datadir: str, resultdir: str) -> dict[str, Any]:
    """The validated context of ``io500.ini.j2``. Raises Io500ConfigError on the first bad value."""
    mode = _check_choice("mode", _get(values, "mode", "standard"), ("standard", "extended"))
    api = _check_text("api", _get(values, "api", "POSIX"))
    if not _API_RE.match(api):
        raise Io500ConfigError(f"io500 api: expected a backend name like POSIX or MPIIO, got {api!r}")
    transfer = check_size("transfer size", _get(values, "transfer_size", Io500.default_transfer_size))
    block = check_size("block size", _get(values, "block_size", Io500.default_block_size))
    if size_bytes(block) % size_bytes(transfer):
        # IO500 would stop with an IOR error minutes into the job; say it before submitting.
        raise Io500ConfigError(f"io500 block size {block} must be a multiple of the transfer size {transfer}")
    files = check_int("files per proc", _get(values, "files_per_proc", Io500.default_files_per_proc))
    return {
        "datadir": check_path("datadir", datadir),
        "resultdir": check_path("resultdir", resultdir),
        "timestamp_datadir": True,
        "timestamp_resultdir": True,
        "api": api,
        "drop_caches": False,  # needs root (sudo) on compute nodes; IO500 defaults it off as well
        "stonewall": check_int("stonewall", _get(values, "stonewall", Io500.default_stonewall)),
        "transfer_size": transfer,
        "block_size": block,
        "mdtest_easy_n": files,
        "mdtest_hard_n": files,
        "mode": mode,
    }


def read_global_dirs(text: str) -> dict[str, str]:
    """``datadir``/``resultdir`` of a user INI's ``[global]`` section (the job creates and binds them)."""
    found: dict[str, str] = {}
    section = ""
    for line in text.splitlines():
        stripped = line.strip()
        if stripped.startswith("["):
            section = stripped.strip("[] \t").lower()
            continue
        m = _GLOBAL_KEY_RE.match(line)
        if section == "global" and m and m["value"]:
            found[m["key"].lower()] = m["value"]
    return found


def _ini_option(check: Any, name: str) -> Parser:
    """An option parser from one of the INI checks (the same rule refuses the value at parse time)."""
    return checked(lambda raw: check(name, raw), Io500ConfigError)


class Io500(BatchRun):
    name = "io500"
    bench_kind = "io500"
    results_name = "IO500 results"
    summary = "IO500 storage benchmark (ior + mdtest + find over MPI; a batch job, not a server)"
    template = "io500.sbatch.j2"
    default_cpus = 1  # CPUs per MPI rank; ranks per node come from --tasks-per-node
    ready_timeout = 0
    default_tasks_per_node = 8
    default_stonewall = 300  # the IO500 rules: below 300 s the run is INVALID (fine for a quick check)
    default_transfer_size = "2m"  # config-sample-all.ini
    default_block_size = "9920000m"  # an upper bound: the stonewall ends the write phases first
    default_files_per_proc = 1000000
    extra_options: ClassVar[tuple[Option, ...]] = (
        # The base has no --nodes option (servers run on one node); IO500 is the first multi-node job.
        Option("--nodes", "number of nodes", integer(1), default=1, metavar="N"),
        Option("--tasks-per-node", "MPI ranks per node", integer(1), default=default_tasks_per_node, metavar="T"),
        Option("--stonewall", "seconds each write phase runs; < 300 makes the run INVALID", integer(1),
               default=default_stonewall, metavar="S"),
        Option("--mode", "IO500 mode: standard, or extended (adds the optional phases and [SCOREX])",
               default="standard", choices=("standard", "extended")),
        Option("--datadir", "directory on the file system to test (default: a new dir under {scratch})",
               _ini_option(check_path, "datadir"), metavar="DIR", complete=Complete.PATH),
        Option("--config", "your own IO500 INI file instead of the generated one", metavar="FILE",
               complete=Complete.PATH),
        Option("--mpi", "srun MPI plugin: pmix (MeluXina), pmi2, or default (the site's MpiDefault)",
               default="pmix", choices=("pmix", "pmi2", "default")),
        Option("--transfer-size", "[ior-easy] transferSize", _ini_option(check_size, "transfer size"),
               default=default_transfer_size, metavar="SIZE"),
        Option("--block-size", "[ior-easy] blockSize, a multiple of the transfer size",
               _ini_option(check_size, "block size"), default=default_block_size, metavar="SIZE"),
        Option("--files-per-proc", "[mdtest-easy] and [mdtest-hard] n", integer(1), default=default_files_per_proc,
               metavar="N"),
    )

    # ---- paths -------------------------------------------------------------------------------
    def default_datadir(self, run_dir: Path) -> str:
        return str(Path(self.ctx.settings.expand("paths.scratch")) / "benchctl" / "io500" / run_dir.name)

    def _user_config(self, values: Mapping[str, Any]) -> tuple[Path, str] | None:
        raw = values.get("config")
        if not raw:
            return None
        path = Path(self.ctx.settings.expand_text(str(raw)))
        try:
            return path, path.read_text()
        except OSError as exc:
            raise Io500ConfigError(f"io500 --config: cannot read {path}: {exc.strerror}") from None

    def _dirs(self, values: Mapping[str, Any], run_dir: Path) -> tuple[str, str]:
        """(datadir, resultdir) the INI will name."""
        datadir = values.get("datadir")
        return (self.ctx.settings.expand_text(str(datadir)) if datadir else self.default_datadir(run_dir),
                str(run_dir / "results"))

    # ---- INI ---------------------------------------------------------------------------------
    def render_ini(self, values: Mapping[str, Any], run_dir: Path) -> str:
        """The INI text for this run: the user's --config file verbatim, else io500.ini.j2 rendered."""
        user = self._user_config(values)
        if user is not None:
            return user[1]  # the user's own choices, verbatim; IO500 itself rejects unknown keys
        datadir, resultdir = self._dirs(values, run_dir)
        return self.ctx.renderer.render(INI_TEMPLATE, ini_values(values, datadir=datadir, resultdir=resultdir))

    def write_config(self, values: Mapping[str, Any], run_dir: Path) -> Path:
        """Render the INI next to the batch script (``<run_dir>/config.ini``) and return its path."""
        text = self.render_ini(values, run_dir)
        path = run_dir / CONFIG_NAME
        self.files.write_text(path, text)
        return path

    def template_values(self, values: Mapping[str, Any], run_dir: Path) -> dict[str, Any]:
        user = self._user_config(values)
        if user is None:
            datadir, resultdir = self._dirs(values, run_dir)
            ini_values(values, datadir=datadir, resultdir=resultdir)  # refuse bad values at render time too
        else:
            found = read_global_dirs(user[1])
            if "datadir" not in found:
                raise Io500ConfigError(f"io500 --config {user[0]}: [global] datadir is mandatory")
            # Relative directories in a user INI are relative to the job's working directory (run_dir);
            # IO500's own default resultdir is ./results.
            datadir, resultdir = (str(run_dir / d) for d in (found["datadir"], found.get("resultdir", "./results")))
        check_int("nodes", _get(values, "nodes", 1))  # job_values() renders it; refuse 0 here
        return {
            "tasks_per_node": check_int("tasks per node", _get(values, "tasks_per_node", self.default_tasks_per_node)),
            "mode": _check_choice("mode", _get(values, "mode", "standard"), ("standard", "extended")),
            "mpi": _check_choice("mpi", _get(values, "mpi", "pmix"), ("pmix", "pmi2", "default")),
            "run_dir": str(run_dir),
            "config_path": str(run_dir / CONFIG_NAME),
            "config_source": str(user[0]) if user else INI_TEMPLATE,
            "log_path": str(run_dir / LOG_NAME),
            "datadir": datadir,
            "resultdir": resultdir,
        }

    # ---- run directory -----------------------------------------------------------------------
    def prepare_run_dir(self, values: Mapping[str, Any], run_dir: Path) -> None:
        self.write_config(values, run_dir)  # a bad value stops here, before anything is submitted

    # ---- results -----------------------------------------------------------------------------
    def result_dir(self, job: Job) -> Path | None:
        """The job's IO500 result directory: the BENCHCTL_RESULT_DIR marker, else IO500's own log line."""
        text = self.log_info(job).markers.get("RESULT_DIR", "")
        if not text and job.out_path:
            text = io500_results.find_result_dir(read_bounded(self.files, job.out_path)) or ""
        if text:
            # IO500 prints the directory as configured: relative to the job's working directory (run_dir).
            return Path(job.run_dir or ".") / text  # an absolute text replaces the prefix
        if not job.run_dir:
            return None
        # Stopped or killed before the end (no final line, no marker): the newest directory IO500 wrote a
        # summary into under the generated INI's resultdir -- partial results are still results.
        base = Path(job.run_dir) / "results"
        summaries = [(info.mtime, base / name) for name in self.files.listdir(base)
                     if (info := self.files.stat(base / name / io500_results.SUMMARY_FILE)) is not None]
        if summaries:
            return max(summaries)[1]
        return base if self.files.is_file(base / io500_results.SUMMARY_FILE) else None

    def load(self, job: Job) -> io500_results.Io500Result | None:
        """Parsed results of a finished (or killed) run; None when IO500 wrote nothing."""
        where = self.result_dir(job)
        try:
            return io500_results.load_result_dir(where, self.files) if where else None
        except FileNotFoundError:
            return None

    def results(self, job: Job) -> RunResult | None:
        from benchctl.bench.results import RunResult

        result = self.load(job)
        if result is None:
            return None
        metrics = result.to_dict()
        return RunResult(kind="io500", service={"name": self.name, "job_id": job.id, "nodes": job.host or job.nodes},
                         config=dict(job.options), metrics=metrics,
                         errors={} if metrics.get("valid") else {"invalid": 1}, detail=result)

    # ---- a batch job: "ready" means "finished with results" ------------------------------------
    def has_results(self, job: Job) -> bool:
        return "DONE" in self.log_info(job).markers and self.result_dir(job) is not None

    max_poll_interval = 15.0  # an IO500 run takes minutes to hours: poll gently

    def not_ready_message(self, job: Job, timeout: float) -> str:
        return (f"{job.label} still {job.state.value} after {timeout:.0f} s; IO500 runs for several stonewall "
                f"periods — 'logs {job.id}' shows its progress")

__all__ = ["Io500", "Io500ConfigError", "check_int", "check_path", "check_size", "ini_values", "read_global_dirs"]
