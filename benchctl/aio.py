"""One way to run asyncio code: on uvloop when it is installed (the load generator and the simulator spend
most of their time in the event loop, and uvloop's is several times cheaper per socket event), else on the
standard loop. ``BENCHCTL_EVENT_LOOP=asyncio`` forces the standard loop (to compare the two)."""

from __future__ import annotations

import asyncio
import os
import sys
from collections.abc import Coroutine
from typing import Any, TypeVar

T = TypeVar("T")


def loop_name() -> str:
    """"uvloop" or "asyncio": what :func:`run` will use."""
    # asyncio.Runner(loop_factory=...) is 3.11+; on 3.10 the standard loop is used.
    if os.environ.get("BENCHCTL_EVENT_LOOP", "").lower() == "asyncio" or sys.version_info < (3, 11):
        return "asyncio"
    try:
        import uvloop  # noqa: F401
    except ImportError:
        return "asyncio"
    return "uvloop"


def run(coro: Coroutine[Any, Any, T]) -> T:
    """``asyncio.run(coro)`` on uvloop's event loop when available."""
    if sys.version_info >= (3, 11) and loop_name() == "uvloop":
        import uvloop

        with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
            result: T = runner.run(coro)
            return result
    return asyncio.run(coro)
