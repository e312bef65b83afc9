"""``JobFiles``: every read and write of a job's files (scripts, logs, result folders) goes through this.

Jobs write their files where *they* run: on the cluster's shared file system for the ``slurm`` executor,
on this machine for ``local``, and on a login node reached over SSH for a remote executor. So nothing above
the executors opens a job's path directly; each executor offers a ``JobFiles`` for its side, and the
helpers here (bounded head+tail reads, the last N lines) work on any implementation.

Paths are text (``str`` or ``PurePath``): they name files on the executor's side, not necessarily here.
"""

from __future__ import annotations

import os
from abc import ABC, abstractmethod
from dataclasses import dataclass
from pathlib import Path, PurePath
from typing import TypeAlias

PathLike: TypeAlias = "str | PurePath"

# Reading a multi-GB log to find a marker would stall the shell; markers are printed early, kill lines late.
HEAD_BYTES = 256 * 1024
TAIL_BYTES = 64 * 1024


@dataclass(frozen=True)
class FileInfo:
    size: int
    mtime: float
    is_dir: bool


class JobFiles(ABC):
    """The file operations benchctl needs on a job's side."""

    @abstractmethod
    def stat(self, path: PathLike) -> FileInfo | None:
        """Size, modification time and kind; None when the path does not exist (or cannot be read)."""

    @abstractmethod
    def read_bytes(self, path: PathLike, offset: int = 0, length: int | None = None) -> bytes:
        """``length`` bytes from ``offset`` (all the rest when None); b"" past the end.
        Raises FileNotFoundError (or another OSError) when the file cannot be read."""

    @abstractmethod
    def write_text(self, path: PathLike, text: str, *, mode: int = 0o600) -> None:
        """Create or replace a file (parent folders are created)."""

    @abstractmethod
    def mkdir(self, path: PathLike, *, mode: int = 0o700) -> None:
        """Create a folder and its parents (no error when it exists)."""

    @abstractmethod
    def listdir(self, path: PathLike) -> list[str]:
        """Names in a folder; [] when it does not exist."""

    @abstractmethod
    def chmod(self, path: PathLike, mode: int) -> None:
        ...

    # ---- derived (work on any implementation) ------------------------------------------------------
    def exists(self, path: PathLike) -> bool:
        return self.stat(path) is not None

    def is_file(self, path: PathLike) -> bool:
        info = self.stat(path)
        return info is not None and not info.is_dir

    def is_dir(self, path: PathLike) -> bool:
        info = self.stat(path)
        return info is not None and info.is_dir

    def read_text(self, path: PathLike) -> str:
        """The whole file as text (undecodable bytes replaced). OSError when it cannot be read."""
        return self.read_bytes(path).decode("utf-8", errors="replace")


class LocalFiles(JobFiles):
    """This machine's file system (the ``local`` executor, and ``slurm`` on a login node)."""

    def stat(self, path: PathLike) -> FileInfo | None:
        try:
            st = os.stat(path)
        except (OSError, ValueError):
            return None
        import stat as st_mode

        return FileInfo(st.st_size, st.st_mtime, st_mode.S_ISDIR(st.st_mode))

    def read_bytes(self, path: PathLike, offset: int = 0, length: int | None = None) -> bytes:
        with open(path, "rb") as fh:
            if offset:
                fh.seek(offset)
            return fh.read() if length is None else fh.read(length)

    def write_text(self, path: PathLike, text: str, *, mode: int = 0o600) -> None:
        target = Path(path)
        private_mkdir(target.parent)
        fd = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
        with os.fdopen(fd, "w") as fh:
            fh.write(text)
        os.chmod(target, mode)  # O_CREAT's mode applies to new files only

    def mkdir(self, path: PathLike, *, mode: int = 0o700) -> None:
        private_mkdir(Path(path), mode)

    def listdir(self, path: PathLike) -> list[str]:
        try:
            return sorted(os.listdir(path))
        except OSError:
            return []

    def chmod(self, path: PathLike, mode: int) -> None:
        os.chmod(path, mode)


def private_mkdir(path: Path, mode: int = 0o700) -> Path:
    """Create ``path`` and every missing parent with ``mode`` (Path.mkdir applies it to the last one only):
    benchctl's folders hold job logs, keys and results that other users of the cluster must not read."""
    missing = []
    current = path
    while not current.exists() and current != current.parent:
        missing.append(current)
        current = current.parent
    for folder in reversed(missing):
        try:
            folder.mkdir(mode=mode)
        except FileExistsError:
            continue
        os.chmod(folder, mode)  # mkdir's mode is cut by the umask
    return path


# ---- helpers over any JobFiles ------------------------------------------------------------------------
def _decode_lines(data: bytes) -> list[str]:
    return data.decode("utf-8", errors="replace").splitlines()


def read_bounded(files: JobFiles, path: PathLike | None) -> list[str]:
    """Lines from the head and tail of a file, without reading all of a huge log; [] when missing."""
    if not path:
        return []
    info = files.stat(path)
    if info is None or info.is_dir:
        return []
    try:
        if info.size <= HEAD_BYTES + TAIL_BYTES:
            return _decode_lines(files.read_bytes(path))
        head = files.read_bytes(path, 0, HEAD_BYTES)
        tail = files.read_bytes(path, info.size - TAIL_BYTES)
    except OSError:
        return []
    return _decode_lines(head + b"\n" + tail)


def tail_lines(files: JobFiles, path: PathLike | None, n: int) -> list[str]:
    """The last ``n`` lines of a file (reads at most the last few hundred KB); [] when missing."""
    if n <= 0 or not path:
        return []
    info = files.stat(path)
    if info is None or info.is_dir:
        return []
    block = min(info.size, max(64 * 1024, n * 400))
    try:
        data = files.read_bytes(path, info.size - block)
    except OSError:
        return []
    lines = _decode_lines(data)
    if block < info.size and lines:
        lines = lines[1:]  # the first line is probably cut
    return lines[-n:]


__all__ = ["FileInfo", "JobFiles", "LocalFiles", "PathLike", "private_mkdir", "read_bounded", "tail_lines"]
