"""Keep secrets out of history, transcripts, logs and result files -- and replace only the secret.

A secret is found by what it is, never by guessing at the text around it:

* the value of an option whose name ends in a secret word (``--hf-token X``, ``--api-key=X``, ``--password X``),
  also inside a quoted value (``--extra-args "--api-key X"``), found by splitting the line as the shell does;
* an environment-style assignment (``HF_TOKEN=X``, ``QDRANT__SERVICE__API_KEY=X``);
* the password of a URL (``http://user:PASSWORD@host``) and the credentials of ``Authorization: Bearer X``;
* known token shapes anywhere: Hugging Face ``hf_…``, OpenAI-style ``sk-…``, GitHub ``ghp_…``/``gho_…``/
  ``ghs_…``/``github_pat_…``.

Each secret found in a command line is remembered for the rest of the process (``learn``), so that the same
value is masked wherever it shows up again -- in an error message, a printed script, a log line, a result file
-- while the words around it (``(see 'help check')``, a closing quote) stay as they were. Names that merely
contain a secret word are left alone: ``--max-tokens 512`` and ``--tokenizer NAME`` are ordinary LLM options.
"""

from __future__ import annotations

import html
import re
import shlex
import threading

MASK = "****"
_SECRET_WORD = r"(?:token|api[-_]?key|apikey|password|passwd|secret|credentials?)"
_SECRET_OPTION_RE = re.compile(rf"^--?(?:[\w]+[-_])*{_SECRET_WORD}$", re.IGNORECASE)
# A shell word: quoted whole, or up to a space or quote (so the quote closing --extra-args "..." survives).
_WORD = r"""'[^']*'|"[^"]*"|[^\s'"]+"""
_OPTION_VALUE_RE = re.compile(rf"(?<![\w-])(--?(?:\w+[-_])*{_SECRET_WORD})(=|\s+)(?P<v>{_WORD})", re.IGNORECASE)
_ASSIGN_RE = re.compile(rf"\b((?:[A-Za-z0-9]+_+)*{_SECRET_WORD})=(?P<v>[^\s'\"]+)", re.IGNORECASE)
_URL_PASSWORD_RE = re.compile(r"\b[a-z][a-z0-9+.-]*://[^\s/:@]*:(?P<v>[^\s/@]+)@", re.IGNORECASE)
_BEARER_RE = re.compile(r"\bBearer\s+(?P<v>[^\s'\"]+)", re.IGNORECASE)
_SHAPES_RE = re.compile(
    r"\b(?P<v>hf_[A-Za-z0-9]{10,}|sk-(?:proj-)?[A-Za-z0-9_-]{16,}|gh[pousr]_[A-Za-z0-9]{20,}"
    r"|github_pat_[A-Za-z0-9_]{20,})\b")
_STRUCTURAL = (_URL_PASSWORD_RE, _BEARER_RE, _ASSIGN_RE, _SHAPES_RE)
# Shorter values are masked where they stand (after --password, in NAME_TOKEN=...) but not learned: masking
# every "abc" elsewhere in the output would garble it.
_MIN_LEARNED = 4

_lock = threading.Lock()
_learned: set[str] = set()


def _split(text: str) -> list[str]:
    try:
        return shlex.split(text, comments=False)
    except ValueError:  # an unbalanced quote: still find what can be found
        return text.split()


def _structural(text: str) -> set[str]:
    """Secrets recognisable in any text: URL passwords, Bearer credentials, NAME_TOKEN=V, known token shapes."""
    return {m.group("v") for rx in _STRUCTURAL for m in rx.finditer(text)}


def _mask(rx: re.Pattern[str], text: str) -> str:
    """``text`` with the value group of every match of ``rx`` replaced, and nothing else touched."""
    return rx.sub(lambda m: m.group(0)[:m.start("v") - m.start()] + MASK + m.group(0)[m.end("v") - m.start():], text)


def secrets_in(text: str, _depth: int = 0) -> set[str]:
    """Every secret value in a command line: the structural ones, and the values of secret-named options.
    Only for lines as typed: in other text, the word after "--password" may be "(see" (an error message)."""
    found = _structural(text)
    words = _split(text)
    for i, word in enumerate(words):
        name, eq, value = word.partition("=")
        if _SECRET_OPTION_RE.match(name):
            if not eq:
                value = words[i + 1] if i + 1 < len(words) else ""
            if value and not value.startswith("-"):
                found.add(value)
        elif _depth < 2 and " " in word.strip():  # a quoted value holding more arguments (--extra-args "...")
            found |= secrets_in(word, _depth + 1)
    return {s.strip("'\"") for s in found if s.strip("'\"") and s != MASK}


def has_secret(text: str) -> bool:
    return bool(secrets_in(text))


def learn(text: str) -> set[str]:
    """Remember the secrets of a command line for the rest of the process; returns them."""
    found = {v for v in secrets_in(text) if len(v) >= _MIN_LEARNED}
    if found:
        with _lock:
            _learned.update(found)
    return found


def forget_all() -> None:
    """Drop the learned secrets (tests)."""
    with _lock:
        _learned.clear()


def redact(text: str) -> str:
    """``text`` with every secret masked: the values learned from command lines, and whatever is recognisable
    as one where it stands (a URL's password, NAME_TOKEN=V, Bearer V, a token shape)."""
    if not text:
        return text
    text = mask_learned(text)
    for rx in _STRUCTURAL:
        text = _mask(rx, text)
    return text


def redact_line(line: str) -> str:
    """A command line as typed, secrets masked: the value after a secret-named option whatever it is, and
    everything ``redact`` masks. Its secrets are learned, so later output masks them too."""
    learn(line)
    return redact(_mask(_OPTION_VALUE_RE, line))


def mask_learned(text: str) -> str:
    """Only the learned values (no pattern search): cheap enough for every per-request record."""
    if not _learned:
        return text
    with _lock:
        values = sorted(_learned, key=len, reverse=True)  # longest first: no "****1234" left of "abcd1234"
    for value in values:
        if value in text:
            text = text.replace(value, MASK)
    return text


def redact_html(text: str) -> str:
    """``redact`` for an HTML export: the values may appear HTML-escaped there."""
    text = redact(text)
    with _lock:
        values = sorted(_learned, key=len, reverse=True)
    for value in values:
        escaped = html.escape(value)
        if escaped != value and escaped in text:
            text = text.replace(escaped, MASK)
    return text


def redact_value(value: object) -> object:
    """A JSON-like value (a run.json's config, a command line) with secrets masked in every string."""
    if isinstance(value, str):
        return redact(value)
    if isinstance(value, dict):
        return {k: redact_value(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [redact_value(v) for v in value]
    return value
