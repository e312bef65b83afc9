"""What the site decides for a ``start``: the account to charge, the scratch folder that exists, and whether the
wall time fits the QOS -- checked before anything is submitted, each said in one line.

* Account: ``--account``, else ``slurm.account``, else the user's default account from Slurm's database
  (``sacctmgr``), said once per session; several accounts and no default is an error naming them.
* Scratch: projects may have a home directory and no scratch (``/project/scratch/pXXXXXX`` missing): then
  ``paths.scratch_fallback`` (MeluXina: ``/project/home/{account}/{user}``), with a notice.
* QOS: the limit Slurm states (``sacctmgr show qos``), else the profile's ``slurm.qos_limits`` table; a
  ``--time`` above it is refused before submission.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import PurePath
from typing import Any

from benchctl.config import Settings
from benchctl.errors import UserError
from benchctl.executors.base import Executor

_TIME_RE = re.compile(r"^(?:(\d+)-)?(\d+)(?::(\d+))?(?::(\d+))?$")


class SiteError(UserError):
    """A start the site would refuse (or charge to the wrong project): one line, before any submission."""


def slurm_minutes(value: str) -> int | None:
    """Minutes of a Slurm time (``30``, ``MM:SS``, ``HH:MM:SS``, ``D-HH``, ``D-HH:MM``, ``D-HH:MM:SS``);
    None for ``UNLIMITED``/empty/unreadable."""
    m = _TIME_RE.match(value.strip())
    if not m:
        return None
    days, a, b, c = (int(x) if x else None for x in m.groups())
    if days is not None:  # D-HH[:MM[:SS]]
        return days * 1440 + (a or 0) * 60 + (b or 0) + (1 if c else 0)
    if b is None:  # MM
        return a
    if c is None:  # MM:SS
        return (a or 0) + (1 if b else 0)
    return (a or 0) * 60 + b + (1 if c else 0)  # HH:MM:SS


@dataclass
class Site:
    """One session's view of the site; asks the scheduler at most once for each fact."""

    settings: Settings
    executor: Executor
    _account: str | None = None
    _limits: dict[str, str] | None = None
    _scratch_checked: bool = False
    _said: set[str] = field(default_factory=set)
    _pending: list[str] = field(default_factory=list)

    def _say(self, message: str) -> None:
        """Kept until the start succeeds (``take_notices``): a failed start shows its one error line only."""
        if message not in self._said and message not in self._pending:
            self._pending.append(message)

    def say(self, message: str) -> None:
        """A notice shown with the start's result (a service's own warning about its settings)."""
        self._say(message)

    def take_notices(self) -> list[str]:
        """The notices of the last start, once: the caller prints them with its result."""
        out, self._pending = self._pending, []
        self._said.update(out)
        return out

    # ---- account -------------------------------------------------------------------------------
    def account(self, given: str) -> str:
        """The account a job charges: ``given`` (option or config), else Slurm's default for the user."""
        if given or self.executor is None:
            return given
        if self._account is None:
            default, accounts = self.executor.accounts()
            if default:
                self._account = default
                others = [a for a in accounts if a != default]
                self._say(f"account {default}: your Slurm default" + (f" (also yours: {', '.join(others)})"
                                                                       if others else "")
                          + "; set slurm.account in your config (or --account) to charge another")
            elif len(accounts) == 1:
                self._account = accounts[0]
                self._say(f"account {accounts[0]}: the only one Slurm knows for you")
            elif accounts:
                raise SiteError(f"you may charge several accounts ({', '.join(accounts)}) and have no default: "
                                "set slurm.account in your config, or pass --account")
            else:
                self._account = ""  # no accounting here (local executor, a cluster without slurmdbd)
            if self._account:
                self.settings.layer({"slurm.account": self._account}, "Slurm (sacctmgr default account)")
        return self._account

    # ---- scratch --------------------------------------------------------------------------------
    def check_scratch(self) -> None:
        """Use ``paths.scratch_fallback`` when the scratch's project folder does not exist (said once)."""
        if self._scratch_checked:
            return
        self._scratch_checked = True
        fallback = self.settings.text("paths.scratch_fallback")
        if not fallback or self.executor is None or self.executor.name == "local":
            return
        scratch = PurePath(self.settings.expand("paths.scratch"))
        files = self.executor.files
        if files.stat(scratch) is not None or files.stat(scratch.parent) is not None:
            return
        alternative = PurePath(self.settings.expand_text(fallback))
        if files.stat(alternative.parent) is None:
            return  # neither exists: leave it to the job, which says what it could not create
        self.settings.layer({"paths.scratch": fallback}, "site (no project scratch)")
        self._say(f"{scratch.parent} does not exist (a project without scratch?): using {alternative} for "
                  "large data; set paths.scratch to choose")

    # ---- QOS ------------------------------------------------------------------------------------
    def qos_limit(self, qos: str) -> tuple[str, str]:
        """(the QOS's maximum wall time, where that comes from); ("", "") when unknown or unlimited."""
        if self._limits is None:
            self._limits = self.executor.qos_limits() if self.executor is not None else {}
        if qos in self._limits:  # Slurm's answer wins, "no limit" included
            wall = self._limits[qos]
            return (wall, "Slurm") if wall else ("", "")
        for entry in self.settings.get("slurm.qos_limits") or []:
            name, _, limit = str(entry).partition("=")
            if name.strip() == qos and limit.strip():
                return limit.strip(), f"the {self.settings.text('profile')} profile"
        return "", ""

    def check_time(self, qos: str, time: str) -> None:
        if not qos or not time:
            return
        limit, source = self.qos_limit(qos)
        wanted, allowed = slurm_minutes(time), slurm_minutes(limit) if limit else None
        if wanted is not None and allowed is not None and wanted > allowed:
            raise SiteError(f"--time {time} is above the {qos} QOS limit of {limit} ({source}): ask for less, or "
                            "choose another --qos")

    def reservation(self, qos: str, partition: str) -> str:
        """The reservation ``qos`` must run in on ``partition`` (the profile's slurm.qos_reservations), or ""."""
        for entry in self.settings.get("slurm.qos_reservations") or []:
            key, _, name = str(entry).partition("=")
            want_qos, _, want_partition = key.partition(":")
            if want_qos.strip() == qos and want_partition.strip() in ("", partition) and name.strip():
                return name.strip()
        return ""

    def apply(self, values: dict[str, Any]) -> None:
        """Fill in and check a service's start values (account, scratch, QOS time) before rendering."""
        qos, partition = str(values.get("qos") or ""), str(values.get("partition") or "")
        if qos and not values.get("reservation"):
            needed = self.reservation(qos, partition)
            if needed:
                values["reservation"] = needed
                self._say(f"--qos {qos} runs in reservation {needed} on partition {partition} (--reservation "
                          "chooses another)")
        values["account"] = self.account(str(values.get("account") or ""))
        self.check_scratch()
        self.check_time(str(values.get("qos") or ""), str(values.get("time") or ""))
