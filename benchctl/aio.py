"""One way to run asyncio code: on uvloop when it is installed (the load generator and the simulator spend
most of their time in the event loop, and uvloop's is several times cheaper per socket event), else on the
standard loop. ``BENCHCTL_EVENT_LOOP=asyncio`` forces the standard loop (to compare the two).

SIGTERM and SIGHUP while a coroutine runs cancel it (like Ctrl-C does through asyncio's runner), so the code
under it can record what it measured, and then leave as ``SystemExit(128 + signal)`` -- a Python-level
signal handler raising inside the event loop's callbacks could be swallowed there instead.
"""

from __future__ import annotations

import asyncio
import os
import signal
import sys
import threading
from collections.abc import Coroutine
from typing import Any, TypeVar

T = TypeVar("T")
_STOP_SIGNALS = (signal.SIGTERM, signal.SIGHUP)


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


async def _cancellable(coro: Coroutine[Any, Any, T], received: list[int]) -> T:
    """Run ``coro``; a stop signal cancels it (recorded in ``received``)."""
    loop = asyncio.get_running_loop()
    task = asyncio.current_task()
    installed = []
    if threading.current_thread() is threading.main_thread():
        for sig in _STOP_SIGNALS:
            previous = signal.getsignal(sig)

            def stop(sig: int = sig) -> None:
                received.append(sig)
                if task is not None:
                    task.cancel()

            try:
                loop.add_signal_handler(sig, stop)
                installed.append((sig, previous))
            except (NotImplementedError, RuntimeError, ValueError):
                pass
    try:
        return await coro
    finally:
        for sig, previous in installed:
            loop.remove_signal_handler(sig)
            signal.signal(sig, previous)  # asyncio would leave SIG_DFL: give back the shell's own handler


def run(coro: Coroutine[Any, Any, T]) -> T:
    """``asyncio.run(coro)`` on uvloop's event loop when available; SIGTERM/SIGHUP end it as SystemExit."""
    received: list[int] = []
    try:
        if sys.version_info >= (3, 11) and loop_name() == "uvloop":
            import uvloop

            with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
                result: T = runner.run(_cancellable(coro, received))
        else:
            result = asyncio.run(_cancellable(coro, received))
        if received:  # the coroutine finished anyway: the signal still ends the program
            raise SystemExit(128 + received[0])
        return result
    except asyncio.CancelledError:
        if received:
            raise SystemExit(128 + received[0]) from None
        raise
