"""Keep secrets out of history, transcripts and logs.

Matches ``--hf-token X``/``--api-key=X`` style options, ``HF_TOKEN=X`` style assignments and bare
Hugging Face tokens (``hf_...``).
"""

from __future__ import annotations

import re

_SECRET_WORD = r"(?:token|api[-_]?key|password|passwd|secret|credential)"
_OPTION_RE = re.compile(rf"(--?[\w-]*{_SECRET_WORD}[\w-]*)(=|\s+)(\S+)", re.IGNORECASE)
_ASSIGN_RE = re.compile(rf"\b([A-Za-z_]*{_SECRET_WORD}[A-Za-z_]*)=(\S+)", re.IGNORECASE)
_HF_RE = re.compile(r"\bhf_[A-Za-z0-9]{10,}\b")
MASK = "****"


def has_secret(text: str) -> bool:
    return bool(_OPTION_RE.search(text) or _ASSIGN_RE.search(text) or _HF_RE.search(text))


def redact(text: str) -> str:
    text = _OPTION_RE.sub(lambda m: f"{m.group(1)}{m.group(2)}{MASK}", text)
    text = _ASSIGN_RE.sub(lambda m: f"{m.group(1)}={MASK}", text)
    return _HF_RE.sub(MASK, text)
