"""``UserError``: the base of every expected, user-facing failure (a bad option, a failed job, an unreachable
scheduler, a broken config). The shell's error boundary shows its message as one line and goes on; anything
else is a bug (one line on screen, the traceback in benchctl's log)."""

from __future__ import annotations


class UserError(Exception):
    """Expected failure; the message is one line fit for the user."""
