"""Structured output (``--workload structured``): requests that constrain the answer, each answer validated.

The request fields are those of vLLM's OpenAI server (checked against vLLM 0.32):

* JSON schema: ``response_format: {"type": "json_schema", "json_schema": {"name", "schema"}}`` (OpenAI's
  field, both APIs);
* regex / choice / grammar (GBNF/EBNF): ``structured_outputs: {"regex" | "choice" | "grammar": ...}``;
* ``--structured-api guided``: the older ``guided_json`` / ``guided_regex`` / ``guided_choice`` /
  ``guided_grammar`` fields. vLLM 0.32 IGNORES those silently (a free answer, no HTTP 400): a low validity
  rate is then the only sign, and the warning says so.

Ollama's APIs take a JSON schema as ``format``; its other constraints are refused before the run.

Validation (``valid`` per request; an invalid answer is counted, never a failed request): the JSON parses and
validates against its schema (``jsonschema_lite``), the regex matches the whole answer, the choice is one of
the list, a grammar's answer matches its ``check`` regex when it has one (else it is not checked).

``--structured`` names built-in sets (``json,regex,choice,grammar``) or a JSONL file, one constraint a line:
``{"prompt": "...", "json_schema": {...}}`` / ``{"regex": "..."}`` / ``{"choice": [...]}`` /
``{"grammar": "...", "check": "REGEX"}``, with optional ``"output_tokens"``. ``--structured-ratio R``: that
share of requests is constrained, spread evenly (the others are the default synthetic ones).
"""

from __future__ import annotations

import json
import re
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from benchctl.bench.llm.backends import BACKENDS
from benchctl.bench.llm.config import LlmConfig
from benchctl.bench.llm.stream import RequestResult
from benchctl.bench.llm.workloads import Session, Workload, WorkloadError
from benchctl.bench.llm.workloads.jsonschema_lite import validate

KINDS = ("json", "regex", "choice", "grammar")


@dataclass(frozen=True)
class Constraint:
    kind: str  # json | regex | choice | grammar
    prompt: str
    spec: Any  # the schema / regex / list of choices / grammar text
    check: str = ""  # grammar: a regex for the same language (its answers are validated with it)
    output_tokens: int | None = None


_PERSON = {"type": "object", "properties": {"name": {"type": "string", "maxLength": 12},
                                            "age": {"type": "integer", "minimum": 0, "maximum": 120}},
           "required": ["name", "age"], "additionalProperties": False}
_MOOD = {"type": "object", "properties": {"ok": {"type": "boolean"}, "mood": {"enum": ["happy", "sad", "calm"]}},
         "required": ["ok", "mood"], "additionalProperties": False}
BUILT_IN: dict[str, tuple[Constraint, ...]] = {
    "json": (Constraint("json", "Is the weather fine, and how do you feel? Answer in JSON.", _MOOD),
             Constraint("json", "Describe a person with a name and an age, in JSON.", _PERSON)),
    "regex": (Constraint("regex", "Give a phone number like 555-0199.", r"[0-9]{3}-[0-9]{4}"),
              Constraint("regex", "Give an e-mail address at example.com.", r"[a-z]{3,8}@example\.com")),
    "choice": (Constraint("choice", "Is this review positive, negative or neutral? 'Great food.'",
                          ["positive", "negative", "neutral"]),
               Constraint("choice", "Pick a colour.", ["red", "green", "blue"])),
    "grammar": (Constraint("grammar", "Answer yes or no: is the sky blue?", 'root ::= "yes" | "no"', "yes|no"),
                Constraint("grammar", "Give a score like 12-34.", 'root ::= digit digit "-" digit digit\n'
                           "digit ::= [0-9]", "[0-9]{2}-[0-9]{2}")),
}


def _entry(obj: Any, where: str) -> Constraint:
    if not isinstance(obj, dict) or not isinstance(obj.get("prompt"), str):
        raise WorkloadError(f"{where}: expected an object with a 'prompt' string and one constraint")
    out = obj.get("output_tokens")
    if out is not None and (isinstance(out, bool) or not isinstance(out, int) or out < 1):
        raise WorkloadError(f"{where}: output_tokens must be a whole number >= 1")
    found = [k for k in ("json_schema", "schema", "regex", "choice", "grammar") if k in obj]
    if len(found) != 1:
        raise WorkloadError(f"{where}: give exactly one of json_schema, regex, choice, grammar")
    key, spec = found[0], obj[found[0]]
    if key in ("json_schema", "schema"):
        if not isinstance(spec, dict):
            raise WorkloadError(f"{where}: the JSON schema must be an object")
        return Constraint("json", obj["prompt"], spec, output_tokens=out)
    if key == "choice":
        if not (isinstance(spec, list) and spec and all(isinstance(c, str) for c in spec)):
            raise WorkloadError(f"{where}: choice must be a non-empty list of strings")
        return Constraint("choice", obj["prompt"], list(spec), output_tokens=out)
    check = obj.get("check", "")
    for pattern in ([spec] if key == "regex" else []) + ([check] if check else []):
        try:
            re.compile(str(pattern))
        except (re.error, TypeError) as exc:
            raise WorkloadError(f"{where}: not a regular expression: {exc}") from None
    if not isinstance(spec, str) or not isinstance(check, str):
        raise WorkloadError(f"{where}: {key} must be a string")
    return Constraint(key, obj["prompt"], spec, check, out)


def load_constraints(spec: str) -> list[Constraint]:
    """Built-in sets (``json,regex``) or every line of a JSONL file (WorkloadError names a bad line)."""
    names = [n.strip() for n in spec.split(",") if n.strip()]
    if names and all(n in BUILT_IN for n in names):
        return [c for n in names for c in BUILT_IN[n]]
    path = Path(spec).expanduser()
    if not path.is_file():
        raise WorkloadError(f"--structured {spec}: neither built-in sets ({', '.join(KINDS)}) nor a file")
    out = []
    for lineno, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        if line.strip():
            try:
                obj = json.loads(line)
            except json.JSONDecodeError as exc:
                raise WorkloadError(f"{path} line {lineno}: not JSON: {exc.msg}") from None
            out.append(_entry(obj, f"{path} line {lineno}"))
    if not out:
        raise WorkloadError(f"{path}: no constraints in it")
    return out


def request_fields(c: Constraint, api: str, backend: str) -> dict[str, Any]:
    """The body fields asking the server for ``c``."""
    if backend.startswith("ollama"):
        return {"format": c.spec}  # only JSON reaches here (prepare refuses the rest)
    if api == "guided":
        return {f"guided_{c.kind}": c.spec}
    if c.kind == "json":
        return {"response_format": {"type": "json_schema", "json_schema": {"name": "benchctl", "schema": c.spec}}}
    return {"structured_outputs": {c.kind: c.spec}}


def check(c: Constraint, text: str) -> bool | None:
    """Whether ``text`` meets ``c`` (None: it cannot be checked -- a grammar without a ``check`` regex)."""
    if c.kind == "json":
        try:
            value = json.loads(text)
        except ValueError:
            return False
        return not validate(c.spec, value)
    if c.kind == "choice":
        return text in c.spec
    pattern = c.spec if c.kind == "regex" else c.check
    return re.fullmatch(pattern, text) is not None if pattern else None


class StructuredSession(Session):
    workload: StructuredWorkload

    def body(self, r: RequestResult) -> dict[str, Any]:
        wl, cfg = self.workload, self.workload.cfg
        c = wl.constraint_of(r.index)
        if c is None:
            return super().body(r)
        r.constraint, r.keep_text = c.kind, True
        # No forced length (min_tokens/ignore_eos): a constrained answer must be free to end where it is complete.
        body = BACKENDS[cfg.backend].body(cfg.model, (("user", c.prompt),), c.output_tokens or cfg.output_tokens,
                                          False)
        return {**body, **request_fields(c, cfg.structured_api, cfg.backend)}

    def done(self, r: RequestResult) -> None:
        c = self.workload.constraint_of(r.index)
        if c is not None and r.ok:
            r.valid = check(c, r.text)
        # Only an invalid answer's start is kept (the point's examples): a long run must not hold every answer.
        r.text = r.text[:200] if r.valid is False else ""


class StructuredWorkload(Workload):
    name = "structured"

    def __init__(self, cfg: LlmConfig) -> None:
        super().__init__(cfg)
        if not 0.0 < cfg.structured_ratio <= 1.0:
            raise WorkloadError("--structured-ratio must be within (0, 1]")
        self.constraints = load_constraints(cfg.structured)

    async def prepare(self, url: str, headers: dict[str, str]) -> list[str]:
        if self.cfg.backend.startswith("ollama") and any(c.kind != "json" for c in self.constraints):
            raise WorkloadError("Ollama constrains output with a JSON schema only (--structured json)")
        kinds = Counter(c.kind for c in self.constraints)
        return [f"structured: {sum(kinds.values())} constraints ({', '.join(f'{n} {k}' for k, n in kinds.items())}),"
                f" {self.cfg.structured_ratio:.0%} of requests constrained, via "
                f"{'guided_*' if self.cfg.structured_api == 'guided' else 'response_format / structured_outputs'}"]

    def constraint_of(self, index: int) -> Constraint | None:
        """Request ``index``'s constraint: ``ratio`` of the requests, spread evenly, cycling the set."""
        ratio = self.cfg.structured_ratio
        nth = int((index + 1) * ratio + 1e-9)
        if nth == int(index * ratio + 1e-9):
            return None
        return self.constraints[(nth - 1) % len(self.constraints)]

    def session(self) -> Session:
        return StructuredSession(self)

    def point_metrics(self, measured: list[RequestResult], t0: float | None) -> dict[str, Any]:
        out = super().point_metrics(measured, t0)
        by_kind: dict[str, Counter[str]] = {}
        refused: dict[str, dict[str, Any]] = {}
        for r in measured:
            if not r.constraint:
                continue
            counts = by_kind.setdefault(r.constraint, Counter())
            if r.ok:
                counts["valid" if r.valid else "invalid" if r.valid is False else "unchecked"] += 1
            else:
                counts["failed"] += 1
                if r.http_status == 400:
                    seen = refused.setdefault(r.constraint, {"count": 0, "message": r.error[:200]})
                    seen["count"] += 1
        total = sum(by_kind.values(), Counter())
        judged = total["valid"] + total["invalid"]
        examples = [{"constraint": r.constraint, "text": r.text} for r in measured if r.valid is False][:3]
        out["structured"] = {"constrained": sum(total.values()), **{k: total[k] for k in (
            "valid", "invalid", "unchecked", "failed")}, "by_kind": {k: dict(v) for k, v in by_kind.items()},
            "refused": refused, "invalid_examples": examples}
        out["validity_rate"] = total["valid"] / judged if judged else None
        return out

    def warnings(self, metrics: Mapping[str, Any]) -> list[str]:
        info = metrics.get("structured") or {}
        # No counts in the text: the kind says each warning once per run, and the counts are in run.json.
        said = [f"the server refused {kind} constraints (HTTP 400): {r['message']}"
                for kind, r in (info.get("refused") or {}).items()]
        rate = metrics.get("validity_rate")
        if rate is not None and rate < 0.5:
            said.append(f"only {rate:.0%} of the constrained answers were valid: a server that ignores the request "
                        "field answers freely (vLLM >= 0.10 ignores guided_*: --structured-api structured_outputs; "
                        "older servers need --structured-api guided), or --output-tokens cut the answers short")
        return said


WORKLOAD = StructuredWorkload
