"""llm-sim's structured output and prefix cache.

Structured output: a request constrained the ways vLLM's OpenAI server accepts -- ``response_format``
(``json_schema`` / ``json_object``), ``structured_outputs: {json|regex|choice|grammar}``, the older
``guided_json|guided_regex|guided_choice|guided_grammar``, and Ollama's ``format`` (a schema or "json") --
is answered with output that meets the constraint: an instance of the JSON schema, a string the regex
matches whole, one of the choices, a sentence of the GBNF grammar. ``--invalid-rate F`` makes that share of
constrained answers break it on purpose (truncated JSON, a string outside the regex / choices / grammar),
so a client's validation can be checked against the truth (``constraint`` / ``invalid`` in the request's
``llmsim`` object).

Prefix cache: prompts are cut into blocks of ``BLOCK`` words (a chat's messages joined with their roles);
each full block is keyed by the hash of everything up to its end (as vLLM's block hashes chain), and a
request's hits are the tokens of its leading blocks already cached. Counted with vLLM's names:
``vllm:prefix_cache_queries_total`` (prompt tokens) and ``vllm:prefix_cache_hits_total``.
"""

from __future__ import annotations

import hashlib
import importlib
import json
import random
import re
import sys
from collections import OrderedDict
from typing import Any

from benchctl.llmsim.model import BadRequest, Plan, count_words

# Python's own regex parser (``re._parser`` since 3.11, ``sre_parse`` before): the tree a string is built from.
_sre: Any = importlib.import_module("re._parser" if sys.version_info >= (3, 11) else "sre_parse")
BLOCK = 16  # words per prefix-cache block
CAPACITY = 200_000  # blocks kept (least recently used dropped first)


def constraint_of(body: dict[str, Any]) -> tuple[str, Any] | None:
    """(kind, spec) of a request's output constraint, or None for a free request."""
    fmt = body.get("response_format")
    if isinstance(fmt, dict):
        if fmt.get("type") == "json_schema" and isinstance(fmt.get("json_schema"), dict):
            return "json", fmt["json_schema"].get("schema") or {}
        if fmt.get("type") == "json_object":
            return "json", {"type": "object"}
    so = body.get("structured_outputs")
    if isinstance(so, dict):
        for kind in ("json", "regex", "choice", "grammar"):
            if so.get(kind) is not None:
                return kind, so[kind]
    for kind in ("json", "regex", "choice", "grammar"):
        if body.get(f"guided_{kind}") is not None:
            return kind, body[f"guided_{kind}"]
    ollama = body.get("format")
    if isinstance(ollama, dict) or ollama == "json":
        return "json", ollama if isinstance(ollama, dict) else {"type": "object"}
    return None


def answer(kind: str, spec: Any, rng: random.Random, invalid: bool) -> str:
    """Output meeting the constraint (or, ``invalid``, breaking it)."""
    if kind == "json":
        text = json.dumps(instance(spec if isinstance(spec, dict) else {}, rng))
        return text[:-1] if invalid else text  # truncated: no longer parses
    if kind == "choice":
        return "none-of-these" if invalid else str(rng.choice(list(spec) or [""]))
    text = regex_sample(str(spec), rng) if kind == "regex" else grammar_sample(str(spec))
    return "!" + text + "!" if invalid else text


def pieces(text: str) -> list[str]:
    """The answer in 'tokens' of up to 4 characters (a real tokenizer's pieces are that short)."""
    return [text[i:i + 4] for i in range(0, len(text), 4)] or [""]


def instance(schema: dict[str, Any], rng: random.Random) -> Any:
    """A value valid against ``schema`` (the subset structured-output engines compile)."""
    if "const" in schema:
        return schema["const"]
    if schema.get("enum"):
        return rng.choice(schema["enum"])
    for key in ("anyOf", "oneOf", "allOf"):
        if schema.get(key):
            return instance(schema[key][0], rng)
    kind = schema.get("type", "object" if "properties" in schema else "null")
    if isinstance(kind, list):
        kind = next((k for k in kind if k != "null"), "null")
    if kind == "object":
        return {name: instance(sub, rng) for name, sub in (schema.get("properties") or {}).items()}
    if kind == "array":
        n = max(schema.get("minItems", 1), 0)
        return [instance(schema.get("items") or {}, rng) for _ in range(min(n, schema.get("maxItems", n)))]
    if kind == "string":
        if "pattern" in schema:
            return regex_sample(schema["pattern"], rng)
        low, high = schema.get("minLength", 0), schema.get("maxLength", 8)
        return ("sample" * (low // 6 + 2))[: max(low, min(high, 6))]
    if kind in ("integer", "number"):
        low = schema.get("minimum", schema.get("exclusiveMinimum", -1) + 1)
        high = schema.get("maximum", schema.get("exclusiveMaximum", low + 101) - 1)
        value = rng.randint(int(low), max(int(low), int(high)))
        return value if kind == "integer" else float(value)
    return True if kind == "boolean" else None


def _in_class(items: list[tuple[Any, Any]], ch: str) -> bool:
    for op, av in items:
        name = str(op)
        if (name == "LITERAL" and chr(av) == ch) or (name == "RANGE" and av[0] <= ord(ch) <= av[1]):
            return True
        if name == "CATEGORY" and re.fullmatch({"CATEGORY_DIGIT": r"\d", "CATEGORY_WORD": r"\w",
                                                "CATEGORY_SPACE": r"\s"}.get(str(av), "(?!)"), ch):
            return True
    return False


def _sample(tree: Any, rng: random.Random, out: list[str]) -> None:
    for op, av in tree:
        name = str(op)
        if name == "LITERAL":
            out.append(chr(av))
        elif name in ("NOT_LITERAL", "ANY"):
            out.append("x" if name == "ANY" or av != ord("x") else "y")
        elif name == "IN":
            negate = any(str(o) == "NEGATE" for o, _ in av)
            items = [(o, a) for o, a in av if str(o) != "NEGATE"]
            out.append(next(c for c in "ax0_ -.@Z9" + "".join(map(chr, range(33, 127)))
                            if _in_class(items, c) != negate))
        elif name in ("MAX_REPEAT", "MIN_REPEAT", "POSSESSIVE_REPEAT"):
            low, high, sub = av
            for _ in range(rng.randint(low, min(high, low + 3))):
                _sample(sub, rng, out)
        elif name == "SUBPATTERN":
            _sample(av[-1], rng, out)
        elif name == "BRANCH":
            _sample(rng.choice(av[1]), rng, out)
        elif name != "AT":  # anchors produce nothing; back-references and look-arounds are not sampled
            raise ValueError(f"llm-sim cannot sample regex element {name}")


def regex_sample(pattern: str, rng: random.Random) -> str:
    """A string ``pattern`` matches whole."""
    out: list[str] = []
    _sample(_sre.parse(pattern), rng, out)
    return "".join(out)


_GBNF_TOKEN = re.compile(r'\s*("(?:\\.|[^"\\])*"|\[(?:\\.|[^\]\\])*\]|[A-Za-z_][\w-]*|::=|[|()*+?])')


def grammar_sample(grammar: str) -> str:
    """The shortest-path sentence of a GBNF grammar from ``root``: first alternatives, optional parts left
    out, ``+`` once; literals, character classes (their first character), rule references and groups."""
    rules: dict[str, list[str]] = {}
    for line in re.split(r"\n(?=\s*[A-Za-z_][\w-]*\s*::=)", grammar.strip()):
        name, _, body = line.partition("::=")
        rules[name.strip()] = _GBNF_TOKEN.findall(body)

    def alternative(tokens: list[str], i: int, depth: int) -> tuple[str, int]:
        out = []
        while i < len(tokens) and tokens[i] not in ("|", ")"):
            tok, i = tokens[i], i + 1
            if tok == "(":
                text, i = alternative(tokens, i, depth)
                while i < len(tokens) and tokens[i] == "|":  # the group's other alternatives are skipped
                    _, i = alternative(tokens, i + 1, depth)
                i += 1  # ")"
            elif tok.startswith('"'):
                text = json.loads(tok)
            elif tok.startswith("["):
                text = regex_sample(tok, random.Random(0))
            else:
                text = expand(tok, depth + 1)
            if i < len(tokens) and tokens[i] in ("*", "?", "+"):
                text, i = ("" if tokens[i] in "*?" else text), i + 1
            out.append(text)
        return "".join(out), i

    def expand(rule: str, depth: int) -> str:
        if depth > 50 or rule not in rules:
            raise ValueError(f"llm-sim cannot expand grammar rule {rule!r}")
        return alternative(rules[rule], 0, depth)[0]

    return expand("root", 0)


class PrefixCache:
    """Chained block hashes of recent prompts; ``query`` counts a prompt's cached leading tokens and caches
    its blocks."""

    def __init__(self) -> None:
        self.blocks: OrderedDict[int, None] = OrderedDict()
        self.queries = 0
        self.hits = 0

    def query(self, words: list[str]) -> int:
        key, hit, missed = 0, 0, False
        for start in range(0, len(words) - BLOCK + 1, BLOCK):
            key = hash((key, tuple(words[start:start + BLOCK])))
            if not missed and key in self.blocks:
                hit += BLOCK
                self.blocks.move_to_end(key)
            else:
                missed = True
                self.blocks[key] = None
        while len(self.blocks) > CAPACITY:
            self.blocks.popitem(last=False)
        self.queries += len(words)
        self.hits += hit
        return hit


def prompt_words(body: dict[str, Any], chat: bool) -> list[str]:
    """The words a prompt is made of (a chat's messages in order, each led by its role)."""
    if not chat:
        prompt = body.get("prompt")
        return prompt.split() if isinstance(prompt, str) else []
    words: list[str] = []
    for m in body.get("messages") or []:
        if isinstance(m, dict) and isinstance(m.get("content"), str) and m["content"].split():
            first, *rest = m["content"].split()
            words += [f"<{m.get('role')}>{first}", *rest]  # the role in the key, not in the token count
    return words


def shape(plan: Plan, body: dict[str, Any], chat: bool, cache: PrefixCache, rng: random.Random,
          invalid_rate: float, prefill_ms_per_1k: float = 0.0) -> None:
    """The workload side of a request: its prefix-cache hits, the messages it carried (so a client's
    multi-turn history can be checked against the truth), and a structured answer meeting its constraint
    (or, for ``invalid_rate`` of them, breaking it). BadRequest when a constraint cannot be honoured."""
    words = prompt_words(body, chat)
    plan.extra["prefix_hit_tokens"] = hits = cache.query(words)
    plan.prefill_ms = prefill_ms_per_1k * max(0, len(words) - hits) / 1000.0
    if chat and isinstance(body.get("messages"), list):
        plan.extra["messages"] = [
            {"role": m.get("role"), "words": count_words(m.get("content")),
             "sha1": hashlib.sha1(str(m.get("content")).encode()).hexdigest()[:12]}
            for m in body["messages"] if isinstance(m, dict)]
    constraint = constraint_of(body)
    if constraint is None:
        return
    kind, spec = constraint
    invalid = rng.random() < invalid_rate
    try:
        text = answer(kind, spec, rng, invalid)
    except (ValueError, TypeError, KeyError, IndexError, re.error) as exc:
        raise BadRequest(f"llm-sim cannot honour this {kind} constraint: {exc}") from None
    parts = pieces(text)
    cut = plan.finish_reason == "length" and len(parts) > plan.output_tokens  # max_tokens ends it first
    plan.pieces = parts[: plan.output_tokens] if cut else parts
    plan.output_tokens, plan.finish_reason = len(plan.pieces), "length" if cut else "stop"
    plan.extra.update(constraint=kind, invalid=invalid or cut)


__all__ = ["BLOCK", "PrefixCache", "answer", "constraint_of", "grammar_sample", "instance", "pieces",
           "prompt_words", "regex_sample", "shape"]
