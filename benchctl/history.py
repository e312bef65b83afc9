"""Command history in a file under XDG state; lines carrying tokens or passwords are never written."""

from __future__ import annotations

import logging
from pathlib import Path

from prompt_toolkit.history import FileHistory, History, InMemoryHistory

from benchctl.executors.files import private_mkdir
from benchctl.redact import has_secret

log = logging.getLogger(__name__)


class RedactingFileHistory(FileHistory):
    """FileHistory that skips secret-bearing lines (kept in memory for this session's up-arrow only)."""

    def __init__(self, filename: Path) -> None:
        private_mkdir(filename.parent)  # a missing dir breaks every accepted line
        if not filename.exists():
            filename.touch(mode=0o600)
        super().__init__(str(filename))

    def store_string(self, string: str) -> None:
        if has_secret(string):
            return
        super().store_string(string)


def make_history(path: Path) -> History:
    try:
        return RedactingFileHistory(path)
    except OSError as exc:
        log.warning("history file %s unusable (%s); keeping history in memory", path, exc)
        return InMemoryHistory()
