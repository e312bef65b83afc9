"""A small proxy-free HTTP client for readiness checks and server facts (``/health``, ``/metrics``, ``/version``)
and the Pushgateway.

No proxies: HPC login nodes often export ``http_proxy``, which cannot reach compute nodes.
"""

from __future__ import annotations

import urllib.error
import urllib.request

_OPENER = urllib.request.build_opener(urllib.request.ProxyHandler({}))


def http_get(url: str, timeout: float = 3.0, limit: int | None = 65536,
             headers: dict[str, str] | None = None) -> tuple[int, str]:
    """GET ``url``; returns (status, body: at most ``limit`` bytes, None = all). Status 0 = no connection."""
    return http_request("GET", url, timeout=timeout, limit=limit, headers=headers)


def http_request(method: str, url: str, body: bytes | None = None, timeout: float = 3.0,
                 limit: int | None = 65536, headers: dict[str, str] | None = None) -> tuple[int, str]:
    """One request (PUT/DELETE to a Pushgateway, GET elsewhere); (status, body), status 0 = no connection."""
    request = urllib.request.Request(url, data=body, headers=headers or {}, method=method)
    try:
        with _OPENER.open(request, timeout=timeout) as resp:
            return resp.status, resp.read(limit).decode("utf-8", errors="replace")
    except urllib.error.HTTPError as exc:
        return exc.code, ""
    except (OSError, ValueError):
        return 0, ""


__all__ = ["http_get", "http_request"]
