"""Keep secrets out of history, transcripts and logs.

Matches options whose name ends in a secret word (``--hf-token X``, ``--api-key=X``, ``--password X``),
environment-style assignments (``HF_TOKEN=X``, ``QDRANT__SERVICE__API_KEY=X``), ``Authorization: Bearer X``
headers and bare Hugging Face tokens (``hf_...``). Names that merely contain such a word are left alone:
``--max-tokens 512`` and ``--tokenizer NAME`` are ordinary LLM options.
"""

from __future__ import annotations

import re

_SECRET_WORD = r"(?:token|api[-_]?key|apikey|password|passwd|secret|credentials?)"
_OPTION_RE = re.compile(rf"(--?(?:[\w]+[-_])*{_SECRET_WORD})(=|\s+)(\S+)", re.IGNORECASE)
_ASSIGN_RE = re.compile(rf"\b((?:[A-Za-z0-9]+_+)*{_SECRET_WORD})=(\S+)", re.IGNORECASE)
_BEARER_RE = re.compile(r"\b(Bearer)\s+(\S+)", re.IGNORECASE)
_HF_RE = re.compile(r"\bhf_[A-Za-z0-9]{10,}\b")
MASK = "****"


def has_secret(text: str) -> bool:
    return any(rx.search(text) for rx in (_OPTION_RE, _ASSIGN_RE, _BEARER_RE, _HF_RE))


def redact(text: str) -> str:
    text = _OPTION_RE.sub(lambda m: f"{m.group(1)}{m.group(2)}{MASK}", text)
    text = _ASSIGN_RE.sub(lambda m: f"{m.group(1)}={MASK}", text)
    text = _BEARER_RE.sub(lambda m: f"{m.group(1)} {MASK}", text)
    return _HF_RE.sub(MASK, text)
