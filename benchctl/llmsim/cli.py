"""Running llm-sim: in a background thread (tests, self-checks) or as ``python -m benchctl.llmsim``."""

from __future__ import annotations

import argparse
import asyncio
import os
import signal
import socket
import threading
from collections.abc import Iterator
from contextlib import contextmanager

from aiohttp import web

from benchctl import aio
from benchctl.llmsim.model import SimConfig
from benchctl.llmsim.server import Simulator


class ServerThread:
    """The simulator on a free port of ``host`` in a background thread (tests, client self-checks)."""

    def __init__(self, cfg: SimConfig, host: str = "127.0.0.1") -> None:
        self.sim = Simulator(cfg)
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind((host, 0))
        self.host, self.port = host, int(self.sock.getsockname()[1])
        self.loop = asyncio.new_event_loop()
        self.runner: web.ServerRunner | None = None
        self.thread = threading.Thread(target=self.loop.run_forever, name="llmsim", daemon=True)

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    async def _start(self) -> None:
        self.runner = web.ServerRunner(self.sim.server())
        await self.runner.setup()
        await web.SockSite(self.runner, self.sock).start()

    def start(self) -> ServerThread:
        self.thread.start()
        asyncio.run_coroutine_threadsafe(self._start(), self.loop).result(10)
        return self

    def stop(self) -> None:
        if self.runner is not None:
            asyncio.run_coroutine_threadsafe(self.runner.cleanup(), self.loop).result(10)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)
        self.loop.close()


@contextmanager
def running(cfg: SimConfig, host: str = "127.0.0.1") -> Iterator[ServerThread]:
    server = ServerThread(cfg, host).start()
    try:
        yield server
    finally:
        server.stop()


def rate(text: str) -> float:
    value = float(text)
    if not 0.0 <= value <= 1.0:
        raise argparse.ArgumentTypeError(f"expected a fraction in [0, 1], got {text}")
    return value


def parse_args(argv: list[str] | None = None) -> tuple[argparse.Namespace, SimConfig]:
    p = argparse.ArgumentParser(prog="python -m benchctl.llmsim", description=__doc__.split("\n\n")[0])
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=8000)
    p.add_argument("--model", default="sim", help="served model name (default: sim)")
    p.add_argument("--ttft-ms", type=float, default=50.0, help="time to first token after a slot is free (ms)")
    p.add_argument("--itl-ms", type=float, default=10.0, help="time between consecutive tokens (ms)")
    p.add_argument("--output-tokens", type=int, default=128, help="output length when a request sets no max")
    p.add_argument("--tokens-per-chunk", type=int, default=1, help="tokens per streamed chunk")
    p.add_argument("--max-concurrency", type=int, default=256, help="sequences served at once; others queue")
    p.add_argument("--error-rate", type=rate, default=0.0, help="fraction of requests answered HTTP 500")
    p.add_argument("--disconnect-rate", type=rate, default=0.0, help="fraction of streams cut mid-way")
    p.add_argument("--invalid-rate", type=rate, default=0.0,
                   help="fraction of structured-output answers that break their constraint on purpose")
    p.add_argument("--prefill-ms-per-1k", type=float, default=0.0, metavar="MS",
                   help="TTFT added per 1,000 prompt tokens not in the prefix cache (default 0: a flat TTFT)")
    p.add_argument("--seed", type=int, default=None, help="seed of the fault draws")
    p.add_argument("--api-key-env", default="", metavar="VAR",
                   help="require 'Authorization: Bearer KEY' on the serving routes, KEY read from this variable "
                        "(never from the command line: every user on the node can read a process's arguments)")
    p.add_argument("--truth-log", default="", metavar="FILE",
                   help="append each finished request's truth (id + llmsim object) to this JSONL file")
    args = p.parse_args(argv)
    api_key = ""
    if args.api_key_env:
        api_key = os.environ.get(args.api_key_env, "")
        if not api_key:
            p.error(f"--api-key-env {args.api_key_env}: that variable is not set (or empty)")
    try:
        cfg = SimConfig(model=args.model, ttft_ms=args.ttft_ms, itl_ms=args.itl_ms, output_tokens=args.output_tokens,
                        tokens_per_chunk=args.tokens_per_chunk, max_concurrency=args.max_concurrency,
                        error_rate=args.error_rate, disconnect_rate=args.disconnect_rate, seed=args.seed,
                        truth_log=args.truth_log, api_key=api_key, invalid_rate=args.invalid_rate,
                        prefill_ms_per_1k=args.prefill_ms_per_1k)
    except ValueError as exc:
        p.error(str(exc))
    return args, cfg


async def serve(cfg: SimConfig, host: str, port: int) -> None:
    """Serve until SIGTERM or SIGINT, then close the listener and end (exit status 0)."""
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    runner = web.ServerRunner(Simulator(cfg).server(), shutdown_timeout=5.0)
    await runner.setup()
    await web.TCPSite(runner, host, port).start()
    print(f"llmsim: serving {cfg.model} on http://{host}:{port}", flush=True)
    try:
        await stop.wait()
    finally:
        await runner.cleanup()
        # Said here, inside the loop: the job script forwards the stop signal too, and a second TERM that
        # arrives once the loop has let go of its handlers must not take the last word away.
        print("llmsim: stopped", flush=True)


def main(argv: list[str] | None = None) -> None:
    args, cfg = parse_args(argv)
    # The key itself never reaches the log: only whether one is required.
    shown = {k: ("required" if v else "none") if k == "api_key" else v for k, v in vars(cfg).items()}
    print("llmsim: settings " + ", ".join(f"{k}={v}" for k, v in shown.items()), flush=True)
    aio.run(serve(cfg, args.host, args.port))
