"""llm-sim's arrival stamps: aiohttp's low-level server whose connections note when a request's first bytes
arrived (before aiohttp parses them), and which accepts trace-sized bodies."""

from __future__ import annotations

from typing import Any

from aiohttp import web

from benchctl.llmsim.model import CLOCK

MAX_BODY = 64 * 1024 * 1024


class _Arrivals(web.RequestHandler):
    """aiohttp's per-connection protocol, plus the moment a request's first bytes reached this process
    (``data_received``, before aiohttp parses them): the arrival the truth is measured from. A busy server
    parses and starts the handler a few ms later; that delay is the server's, not the client's."""

    arrived: float | None = None

    def data_received(self, data: bytes) -> None:
        if self.arrived is None:
            self.arrived = CLOCK()
        super().data_received(data)


class StampingServer(web.Server):
    def _make_request(self, message: Any, payload: Any, protocol: Any, writer: Any, task: Any) -> web.BaseRequest:
        # Trace-sized prompts (100k tokens, several MB of JSON) are far over aiohttp's default 1 MiB body limit.
        return web.BaseRequest(message, payload, protocol, writer, task, self._loop, client_max_size=MAX_BODY)

    def __call__(self) -> web.RequestHandler:
        # web.Server.__call__ builds a RequestHandler from these same (private) fields.
        return _Arrivals(self, loop=self._loop, **self._kwargs)


def arrival_of(request: web.BaseRequest) -> float:
    """When the request's bytes arrived (see _Arrivals); the stamp is consumed so the next request on this
    keep-alive connection gets its own. Called once the whole body has been read (else its last bytes would
    stamp the next request too early)."""
    proto = request.protocol
    stamp = getattr(proto, "arrived", None)
    if isinstance(proto, _Arrivals):
        proto.arrived = None
    return stamp if stamp is not None else CLOCK()


__all__ = ["MAX_BODY", "StampingServer", "arrival_of"]
