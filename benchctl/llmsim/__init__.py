"""llm-sim: a simulated LLM server with exact, known timing -- the ground truth for LLM benchmark clients.

Run it as ``python -m benchctl.llmsim --host H --port P [settings]`` (aiohttp, one process, one event loop).

It speaks the wire protocols benchmark clients use, as vLLM's and Ollama's servers do:

* OpenAI (vLLM flavour): ``POST /v1/completions``, ``POST /v1/chat/completions`` (``stream`` true/false;
  SSE ``data: {...}`` events and ``data: [DONE]``; chat's first chunk is role-only
  ``{"delta": {"role": "assistant", "content": ""}}``; ``stream_options.include_usage`` adds a final chunk with
  ``choices: []`` and ``usage``; ``continuous_usage_stats`` puts usage on every chunk), ``GET /v1/models``,
  ``GET /health``, ``POST /tokenize`` (vLLM's: the token count of a prompt or of chat messages).
* Ollama: ``POST /api/generate``, ``POST /api/chat`` (NDJSON; final object ``done: true`` with ``eval_count``,
  ``prompt_eval_count`` and ``*_duration`` in nanoseconds), ``GET /api/tags``.
* Prometheus ``GET /metrics`` with vLLM's names (``vllm:num_requests_running``, ``vllm:num_requests_waiting``,
  ``vllm:prompt_tokens_total``, ``vllm:generation_tokens_total``, ``vllm:request_success_total``,
  ``vllm:time_to_first_token_seconds`` ...) plus ``llmsim:*`` counters for injected faults.

Model of a request:

* **Tokens.** Prompt tokens = whitespace-separated words of the prompt (chat: of every message's text);
  a list of token ids counts its length. Output tokens = the request's ``max_tokens`` /
  ``max_completion_tokens`` (Ollama: ``options.num_predict``) when given -- finish reason ``length`` --,
  else ``--output-tokens`` raised to ``min_tokens`` -- finish reason ``stop`` (a simulated EOS). The
  simulator never stops early, so ``ignore_eos`` is accepted and always satisfied. Each token is one word.
* **Queueing.** At most ``--max-concurrency`` sequences are served at once; the others wait (FIFO) and are
  counted in ``vllm:num_requests_waiting``. A request's sequence starts when it gets a slot.
* **Timing.** Token ``i`` (0-based) is due at ``start + ttft + i * itl``, absolute deadlines on the event
  loop's monotonic clock, so a late wake-up never delays the tokens after it. With ``--tokens-per-chunk K``
  a chunk goes out when its last token is due (tokens ``0..K-1`` at ``start + ttft + (K-1) * itl``).
  Chat's role-only chunk goes out together with the first content chunk (as in vLLM, it follows prefill).
* **Faults.** ``--error-rate`` answers HTTP 500 on arrival, before anything is streamed;
  ``--disconnect-rate`` closes the connection after a random number (>= 1) of chunks, before the end of
  the stream (no ``[DONE]``, no final object; the HTTP chunked body is cut). Both draw from ``--seed``.
* **Truth.** The final usage chunk (``include_usage``), the non-streamed response and Ollama's final object
  carry an extra ``llmsim`` object: arrival time (Unix s, and ``arrival_monotonic`` on CLOCK_MONOTONIC, which
  a client on the same host can compare with its own ``time.perf_counter()``), queue time, the scheduled
  first-token time and every token's scheduled time, and the chunks' actual send times, all in ms relative
  to arrival. Arrival is stamped when the request's first bytes reach the process (``data_received``, before
  aiohttp parses them), a send time when the chunk has been handed to the kernel: the server's own work,
  queueing included, is inside the truth, not outside it.
* **Workloads** (``structured``): structured-output fields (``response_format``, ``structured_outputs``,
  ``guided_*``, Ollama's ``format``) get an answer meeting the constraint (``--invalid-rate`` breaks a share on
  purpose); a prefix cache of 16-word blocks counts ``vllm:prefix_cache_queries_total``/``hits_total``; the truth
  carries ``prefix_hit_tokens``, ``constraint``/``invalid`` and, for chat, the ``messages`` received (role, words,
  sha1 of the content); request bodies up to 64 MiB (trace-sized prompts).
* **Clock.** Every stamp and deadline uses ``time.monotonic()``, not ``loop.time()``: uvloop's loop clock is
  cached per iteration with millisecond resolution.
"""

from __future__ import annotations

from benchctl.llmsim.cli import ServerThread, main, parse_args, running
from benchctl.llmsim.model import CLOCK, Plan, SimConfig, count_messages, count_words
from benchctl.llmsim.server import Simulator

__all__ = ["CLOCK", "Plan", "ServerThread", "SimConfig", "Simulator", "count_messages", "count_words", "main",
           "parse_args", "running"]
