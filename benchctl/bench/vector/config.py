"""``VectorConfig``: the vector benchmark's settings -- the one place their defaults are written (the kind's
options show them from here). Light to import: ``help`` and completion read it."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass
class VectorConfig:
    n: int = 20000
    dim: int = 128
    clusters: int = 16
    k: int = 10
    queries: int = 200
    batch: int = 500
    concurrency: list[int] = field(default_factory=lambda: [1, 4])
    duration: float = 10.0
    m: int = 16
    ef_construct: int = 100
    ef_search: int = 100
    metric: str = "l2"
    seed: int = 42
    keep: bool = False
    data: str = ""
    collection: str = "benchctl_vectors"
    index_timeout: float = 300.0
    # Each request's timeout, and how long a server may fail every request before a phase or point ends.
    grace: float = 30.0
    # `bench vector --url URL --store S`: the endpoint and its API (a service's job supplies them otherwise)
    url: str = ""
    store: str = ""
    api_key_env: str = ""  # the NAME of the variable holding the API key (never the key)
    server_metrics_interval: float = 1.0  # seconds between scrapes of the server's /metrics (0: off)
