"""llm-sim's HTTP side: aiohttp's low-level server with arrival stamps, and the OpenAI / Ollama handlers."""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import random
import time
import uuid
from collections.abc import Awaitable, Callable
from functools import partial
from typing import IO, Any

import orjson
from aiohttp import web

from benchctl.llmsim.model import (
    CLOCK,
    WORDS,
    BadRequest,
    Disconnect,
    Metrics,
    Plan,
    SimConfig,
    count_messages,
    count_words,
    positive_int,
)
from benchctl.llmsim.stamping import StampingServer, arrival_of
from benchctl.llmsim.structured import PrefixCache, shape

GUARDED = ("/v1", "/api/generate", "/api/chat", "/api/tags")


class Simulator:
    def __init__(self, cfg: SimConfig) -> None:
        self.cfg = cfg
        self.metrics = Metrics()
        self.rng = random.Random(cfg.seed)
        self.slots: asyncio.Semaphore | None = None  # created on the serving loop
        self.created = int(time.time())
        self.cache = PrefixCache()
        self._truth_log: IO[str] | None = None

    def truth(self, plan: Plan, rid: str) -> dict[str, Any]:
        """The request's truth, for its final chunk and (with --truth-log) the log a client is compared to."""
        truth = plan.truth(self.cfg)
        if self.cfg.truth_log:
            if self._truth_log is None:
                self._truth_log = open(self.cfg.truth_log, "a", buffering=1, encoding="utf-8")  # noqa: SIM115
            self._truth_log.write(json.dumps({"id": rid, "llmsim": truth}, separators=(",", ":")) + "\n")
        return truth

    # ---- app -------------------------------------------------------------------------------------
    def routes(self) -> dict[tuple[str, str], Callable[[web.BaseRequest, float], Awaitable[web.StreamResponse]]]:
        return {("GET", "/health"): self.health, ("GET", "/v1/models"): self.models,
                ("GET", "/metrics"): self.prometheus, ("GET", "/api/tags"): self.tags,
                ("GET", "/api/version"): self.version, ("POST", "/tokenize"): self.tokenize,
                ("POST", "/v1/completions"): partial(self.openai, chat=False),
                ("POST", "/v1/chat/completions"): partial(self.openai, chat=True),
                ("POST", "/api/generate"): partial(self.ollama, chat=False),
                ("POST", "/api/chat"): partial(self.ollama, chat=True)}

    def server(self) -> web.Server:
        """aiohttp's low-level server (no Application: routing is one dict lookup) with arrival stamps."""
        routes = self.routes()
        paths = {path for _, path in routes}

        key = hashlib.sha256(self.cfg.api_key.encode()).digest() if self.cfg.api_key else b""

        def allowed(request: web.BaseRequest) -> bool:
            # As vLLM guards its API: the serving routes need the key; /health, /metrics, /tokenize and
            # /api/version do not (probes and scrapers).
            if not key or not request.path.startswith(GUARDED):
                return True
            scheme, _, token = request.headers.get("Authorization", "").partition(" ")
            return scheme.lower() == "bearer" and hmac.compare_digest(hashlib.sha256(token.encode()).digest(), key)

        async def dispatch(request: web.BaseRequest) -> web.StreamResponse:
            await request.read()  # the whole request is here: its arrival stamp is taken, and consumed
            arrival = arrival_of(request)
            if not allowed(request):
                return web.json_response({"error": "Unauthorized"}, status=401)
            handler = routes.get((request.method, request.path))
            if handler is None:
                status = 405 if request.path in paths else 404
                return web.json_response({"error": f"{request.method} {request.path}: not here"}, status=status)
            return await handler(request, arrival)

        return StampingServer(dispatch, access_log=None)

    async def health(self, request: web.BaseRequest, arrival: float) -> web.Response:
        return web.Response(status=200)

    async def version(self, request: web.BaseRequest, arrival: float) -> web.Response:
        return web.json_response({"version": "0.0.0-llmsim"})

    async def models(self, request: web.BaseRequest, arrival: float) -> web.Response:
        return web.json_response({"object": "list", "data": [
            {"id": self.cfg.model, "object": "model", "created": self.created, "owned_by": "llmsim",
             "root": self.cfg.model, "parent": None, "max_model_len": None}]})

    async def tokenize(self, request: web.BaseRequest, arrival: float) -> web.Response:
        """vLLM's ``POST /tokenize``: the prompt's (or chat messages') token count, one token per word."""
        try:
            body = await self.read_body(request)
            count = count_messages(body["messages"]) if "messages" in body else count_words(body.get("prompt"))
        except BadRequest as exc:
            return web.json_response({"object": "error", "message": str(exc), "type": "BadRequestError",
                                      "param": None, "code": exc.status}, status=exc.status)
        return web.json_response({"count": count, "max_model_len": None, "tokens": list(range(count))})

    def ollama_name(self) -> str:
        name = self.cfg.model
        return name if ":" in name.rsplit("/", 1)[-1] else f"{name}:latest"

    async def tags(self, request: web.BaseRequest, arrival: float) -> web.Response:
        name = self.ollama_name()
        return web.json_response({"models": [
            {"name": name, "model": name, "modified_at": "1970-01-01T00:00:00Z", "size": 0,
             "digest": "0" * 64, "details": {"format": "llmsim", "family": "llmsim", "parameter_size": "0",
                                             "quantization_level": "none"}}]})

    async def prometheus(self, request: web.BaseRequest, arrival: float) -> web.Response:
        return web.Response(text=self.metrics.render(self.cfg.model), content_type="text/plain",
                            charset="utf-8", headers={"X-Content-Type-Options": "nosniff"})

    # ---- common request handling -------------------------------------------------------------------
    async def read_body(self, request: web.BaseRequest) -> dict[str, Any]:
        try:
            body = await request.json()
        except ValueError:
            raise BadRequest("the body is not valid JSON") from None
        if not isinstance(body, dict):
            raise BadRequest("the body must be a JSON object")
        model = body.get("model")
        if model not in (None, "", self.cfg.model, self.ollama_name()):
            raise BadRequest(f"The model `{model}` does not exist.", status=404)
        return body

    def plan(self, arrival: float, prompt_tokens: int, max_tokens: int | None, min_tokens: int | None) -> Plan:
        if max_tokens is not None and min_tokens is not None and min_tokens > max_tokens:
            raise BadRequest(f"min_tokens ({min_tokens}) must be <= max_tokens ({max_tokens})")
        if max_tokens is not None:
            n, reason = max_tokens, "length"
        else:
            n, reason = max(self.cfg.output_tokens, min_tokens or 0), "stop"
        fail = self.rng.random() < self.cfg.error_rate
        n_chunks = -(-n // self.cfg.tokens_per_chunk)
        cut = None
        if not fail and self.rng.random() < self.cfg.disconnect_rate:
            cut = self.rng.randint(1, max(1, n_chunks - 1)) if n_chunks > 1 else 1
        return Plan(arrival=arrival, arrival_unix=time.time() - (CLOCK() - arrival), prompt_tokens=prompt_tokens,
                    output_tokens=n, finish_reason=reason, fail=fail, cut_after=cut)

    def injected_error(self) -> web.Response:
        self.metrics.errors += 1
        return web.json_response({"object": "error", "message": "llmsim: injected error (--error-rate)",
                                  "type": "InternalServerError", "param": None, "code": 500}, status=500)

    def text(self, i: int) -> str:
        return " " + WORDS[i % len(WORDS)]

    def piece(self, plan: Plan, i: int) -> str:
        """Token ``i`` of the answer: a structured answer's piece, else the next word."""
        return plan.pieces[i] if plan.pieces is not None else self.text(i)

    def shape(self, plan: Plan, body: dict[str, Any], chat: bool) -> None:
        """The workload side of a request (``structured.shape``): prefix-cache hits, the messages it carried,
        a structured answer."""
        shape(plan, body, chat, self.cache, self.rng, self.cfg.invalid_rate, self.cfg.prefill_ms_per_1k)
        self.metrics.prefix_queries, self.metrics.prefix_hits = self.cache.queries, self.cache.hits

    async def generate(self, plan: Plan, emit: Any) -> bool:
        """Wait for a slot, then call ``await emit(first, end)`` for every chunk at its deadline.

        Returns False when the client went away. Raises Disconnect when the stream is to be cut.
        """
        cfg, m = self.cfg, self.metrics
        if self.slots is None:
            self.slots = asyncio.Semaphore(cfg.max_concurrency)
        m.waiting += 1
        try:
            await self.slots.acquire()
        finally:
            m.waiting -= 1
        m.running += 1
        m.prompt_tokens += plan.prompt_tokens
        plan.start = CLOCK()
        m.queue.observe(plan.start - plan.arrival)
        try:
            previous = None
            for index, (first, end) in enumerate(plan.chunks(cfg)):
                due = plan.token_due(cfg, end - 1)
                delay = due - CLOCK()
                if delay > 0:
                    await asyncio.sleep(delay)
                if plan.cut_after is not None and index >= plan.cut_after:
                    m.disconnects += 1
                    raise Disconnect
                try:
                    await emit(first, end)
                except (ConnectionError, RuntimeError):
                    m.aborted += 1
                    return False
                now = CLOCK()  # handed to the kernel
                plan.sent.append(now)
                m.generation_tokens += end - first
                if previous is None:
                    m.ttft.observe(now - plan.arrival)
                else:
                    m.itl.observe(now - previous)
                previous = now
            if plan.cut_after is not None:  # one-chunk stream: cut after its only chunk
                m.disconnects += 1
                raise Disconnect
        finally:
            m.running -= 1
            self.slots.release()
        m.success[plan.finish_reason] = m.success.get(plan.finish_reason, 0) + 1
        m.e2e.observe(CLOCK() - plan.arrival)
        return True

    async def whole_text(self, plan: Plan) -> str | None:
        """A non-streamed answer: every token on its schedule, joined; None when the plan cuts it."""
        pieces: list[str] = []

        async def collect(first: int, end: int) -> None:
            pieces.extend(self.piece(plan, i) for i in range(first, end))

        try:
            await self.generate(plan, collect)
        except Disconnect:
            return None
        return "".join(pieces)

    @staticmethod
    def cut(request: web.BaseRequest, resp: web.StreamResponse) -> web.StreamResponse:
        """Close the connection mid-body: the client sees the chunked body end without its terminator."""
        if request.transport is not None:
            request.transport.close()
        resp.force_close()
        return resp

    # ---- OpenAI ----------------------------------------------------------------------------------
    async def openai(self, request: web.BaseRequest, arrival: float, *, chat: bool) -> web.StreamResponse:
        try:
            body = await self.read_body(request)
            if chat:
                prompt_tokens = count_messages(body.get("messages"))
                max_tokens = positive_int(body, "max_completion_tokens") or positive_int(body, "max_tokens")
            else:
                if "prompt" not in body:
                    raise BadRequest("'prompt' is required")
                prompt_tokens = count_words(body.get("prompt"))
                max_tokens = positive_int(body, "max_tokens")
            plan = self.plan(arrival, prompt_tokens, max_tokens, positive_int(body, "min_tokens"))
            self.shape(plan, body, chat)
        except BadRequest as exc:
            return web.json_response({"object": "error", "message": str(exc), "type": "BadRequestError",
                                      "param": None, "code": exc.status}, status=exc.status)
        if plan.fail:
            return self.injected_error()
        cfg = self.cfg
        rid = ("chatcmpl-" if chat else "cmpl-") + uuid.uuid4().hex
        created = int(plan.arrival_unix)
        obj = "chat.completion.chunk" if chat else "text_completion"

        def usage(completion: int) -> dict[str, int]:
            return {"prompt_tokens": plan.prompt_tokens, "completion_tokens": completion,
                    "total_tokens": plan.prompt_tokens + completion}

        if not body.get("stream"):
            text = await self.whole_text(plan)
            if text is None:
                return self.cut(request, web.StreamResponse())
            choice: dict[str, Any] = {"index": 0, "logprobs": None, "finish_reason": plan.finish_reason,
                                      "stop_reason": None}
            if chat:
                choice["message"] = {"role": "assistant", "content": text}
            else:
                choice["text"] = text
            return web.json_response({"id": rid, "object": "chat.completion" if chat else "text_completion",
                                      "created": created, "model": cfg.model, "choices": [choice],
                                      "usage": usage(plan.output_tokens), "llmsim": self.truth(plan, rid)})

        opts = body.get("stream_options") or {}
        include_usage = bool(opts.get("include_usage")) if isinstance(opts, dict) else False
        continuous = include_usage and bool(opts.get("continuous_usage_stats"))
        resp = web.StreamResponse(headers={"Content-Type": "text/event-stream; charset=utf-8",
                                           "Cache-Control": "no-cache"})
        await resp.prepare(request)

        def event(payload: dict[str, Any]) -> bytes:
            return b"data: " + orjson.dumps(payload) + b"\n\n"

        def chunk(choice: dict[str, Any], done_tokens: int) -> bytes:
            payload: dict[str, Any] = {"id": rid, "object": obj, "created": created, "model": cfg.model,
                                       "choices": [choice]}
            if include_usage:
                payload["usage"] = usage(done_tokens) if continuous else None
            return event(payload)

        async def emit(first: int, end: int) -> None:
            text = "".join(self.piece(plan, i) for i in range(first, end))
            reason = plan.finish_reason if end == plan.output_tokens else None
            data = b""
            if chat:
                if first == 0:
                    data += chunk({"index": 0, "delta": {"role": "assistant", "content": ""}, "logprobs": None,
                                   "finish_reason": None}, 0)
                data += chunk({"index": 0, "delta": {"content": text}, "logprobs": None, "finish_reason": reason},
                              end)
            else:
                data += chunk({"index": 0, "text": text, "logprobs": None, "finish_reason": reason,
                               "stop_reason": None}, end)
            await resp.write(data)

        try:
            if not await self.generate(plan, emit):
                return resp
        except Disconnect:
            return self.cut(request, resp)
        try:
            if include_usage:
                await resp.write(event({"id": rid, "object": obj, "created": created, "model": cfg.model,
                                        "choices": [], "usage": usage(plan.output_tokens),
                                        "llmsim": self.truth(plan, rid)}))
            await resp.write(b"data: [DONE]\n\n")
            await resp.write_eof()
        except (ConnectionError, RuntimeError):
            self.metrics.aborted += 1
        return resp

    # ---- Ollama ----------------------------------------------------------------------------------
    async def ollama(self, request: web.BaseRequest, arrival: float, *, chat: bool) -> web.StreamResponse:
        try:
            body = await self.read_body(request)
            prompt_tokens = count_messages(body.get("messages")) if chat else count_words(body.get("prompt"))
            options = body.get("options") or {}
            num_predict = options.get("num_predict") if isinstance(options, dict) else None
            max_tokens = positive_int({"num_predict": num_predict}, "num_predict") if num_predict not in (
                None, -1, -2) else None
            plan = self.plan(arrival, prompt_tokens, max_tokens, None)
            self.shape(plan, body, chat)
        except BadRequest as exc:
            return web.json_response({"error": str(exc)}, status=exc.status)
        if plan.fail:
            self.metrics.errors += 1
            return web.json_response({"error": "llmsim: injected error (--error-rate)"}, status=500)
        name = self.ollama_name()

        def stamp() -> str:
            now = time.time()
            return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(now)) + f".{int(now % 1 * 1e6):06d}Z"

        def piece(text: str, done: bool) -> dict[str, Any]:
            obj: dict[str, Any] = {"model": name, "created_at": stamp()}
            if chat:
                obj["message"] = {"role": "assistant", "content": text}
            else:
                obj["response"] = text
            obj["done"] = done
            return obj

        def final(text: str) -> dict[str, Any]:
            loop_now = asyncio.get_running_loop().time()
            first = plan.sent[0] if plan.sent else plan.start
            last = plan.sent[-1] if plan.sent else plan.start
            obj = piece(text, True)
            obj.update({"done_reason": plan.finish_reason,
                        "total_duration": int((loop_now - plan.arrival) * 1e9), "load_duration": 0,
                        "prompt_eval_count": plan.prompt_tokens,
                        "prompt_eval_duration": int((first - plan.start) * 1e9),
                        "eval_count": plan.output_tokens, "eval_duration": int((last - first) * 1e9),
                        "llmsim": self.truth(plan, "")})
            if not chat:
                obj["context"] = []
            return obj

        if body.get("stream") is False:
            text = await self.whole_text(plan)
            if text is None:
                return self.cut(request, web.StreamResponse())
            return web.json_response(final(text))

        resp = web.StreamResponse(headers={"Content-Type": "application/x-ndjson"})
        await resp.prepare(request)

        async def emit(first: int, end: int) -> None:
            text = "".join(self.piece(plan, i) for i in range(first, end))
            await resp.write(orjson.dumps(piece(text, False)) + b"\n")

        try:
            if not await self.generate(plan, emit):
                return resp
        except Disconnect:
            return self.cut(request, resp)
        try:
            await resp.write(orjson.dumps(final("")) + b"\n")
            await resp.write_eof()
        except (ConnectionError, RuntimeError):
            self.metrics.aborted += 1
        return resp

