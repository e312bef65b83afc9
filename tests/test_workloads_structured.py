"""Structured output: the JSON-schema validator, constraint sets and files, request fields, answer checks,
llm-sim's constrained answers, and a run against llm-sim whose validity matches the server's truth."""

from __future__ import annotations

import itertools
import json
import random
import re
from pathlib import Path

import pytest

from benchctl.bench.llm.workloads import WorkloadError
from benchctl.bench.llm.workloads.jsonschema_lite import unsupported, validate
from benchctl.bench.llm.workloads.structured import (
    BUILT_IN,
    Constraint,
    StructuredWorkload,
    check,
    load_constraints,
    request_fields,
)
from benchctl.llmsim import SimConfig, running
from benchctl.llmsim.structured import answer, constraint_of, grammar_sample, regex_sample
from tests.workloads_util import run_workload, workload_config

SCHEMA = {"type": "object", "properties": {
    "name": {"type": "string", "maxLength": 5, "pattern": "^[a-z]+$"},
    "age": {"type": "integer", "minimum": 0, "maximum": 120},
    "tags": {"type": "array", "items": {"enum": ["a", "b"]}, "maxItems": 2},
    "score": {"type": ["number", "null"], "exclusiveMaximum": 1},
    "kind": {"anyOf": [{"const": "x"}, {"type": "boolean"}]}},
    "required": ["name", "age"], "additionalProperties": False}


def test_validator_accepts_and_refuses_the_subset() -> None:
    assert validate(SCHEMA, {"name": "bob", "age": 30, "tags": ["a"], "score": None, "kind": True}) == []
    assert validate(SCHEMA, {"name": "bob", "age": 30.0}) == []  # JSON cannot tell 30.0 from 30
    bad = {
        "missing": {"name": "bob"},
        "type": {"name": "bob", "age": "30"},
        "bool is no integer": {"name": "bob", "age": True},
        "range": {"name": "bob", "age": 121},
        "length": {"name": "bobbyy", "age": 1},
        "pattern": {"name": "Bob", "age": 1},
        "extra": {"name": "bob", "age": 1, "x": 1},
        "items": {"name": "bob", "age": 1, "tags": ["c"]},
        "count": {"name": "bob", "age": 1, "tags": ["a", "b", "a"]},
        "exclusive": {"name": "bob", "age": 1, "score": 1},
        "anyOf": {"name": "bob", "age": 1, "kind": "y"},
    }
    for why, value in bad.items():
        assert validate(SCHEMA, value), why
    assert unsupported({"type": "object", "properties": {"a": {"format": "date"}}}) == {"format"}


def test_answers_are_checked_against_their_constraint() -> None:
    json_c = Constraint("json", "p", SCHEMA)
    assert check(json_c, '{"name": "bob", "age": 3}') is True
    assert check(json_c, '{"name": "bob", "age": 3') is False  # truncated: does not parse
    assert check(Constraint("regex", "p", r"\d{3}"), "123") is True
    assert check(Constraint("regex", "p", r"\d{3}"), "1234") is False  # the whole answer must match
    assert check(Constraint("choice", "p", ["yes", "no"]), "no") is True
    assert check(Constraint("choice", "p", ["yes", "no"]), "No") is False
    assert check(Constraint("grammar", "p", 'root ::= "a"', "a"), "a") is True
    assert check(Constraint("grammar", "p", 'root ::= "a"'), "a") is None  # no check regex: not checkable


def test_constraint_sets_files_and_request_fields(tmp_path: Path) -> None:
    assert [c.kind for c in load_constraints("choice,regex")] == ["choice", "choice", "regex", "regex"]
    good = tmp_path / "c.jsonl"
    good.write_text(json.dumps({"prompt": "p", "json_schema": SCHEMA}) + "\n\n" +
                    json.dumps({"prompt": "q", "grammar": 'root ::= "x"', "check": "x", "output_tokens": 9}) + "\n")
    one, two = load_constraints(str(good))
    assert one.kind == "json" and two.kind == "grammar" and two.check == "x" and two.output_tokens == 9
    for line, why in ((json.dumps({"prompt": "p"}), "exactly one"), ("{", "not JSON"),
                      (json.dumps({"prompt": "p", "regex": "[0-9"}), "not a regular expression"),
                      (json.dumps({"prompt": "p", "choice": []}), "non-empty list")):
        bad = tmp_path / "bad.jsonl"
        bad.write_text(line + "\n")
        with pytest.raises(WorkloadError, match=why):
            load_constraints(str(bad))
    with pytest.raises(WorkloadError, match="neither built-in"):
        load_constraints("jsn")
    regex = Constraint("regex", "p", "a+")
    assert request_fields(regex, "structured_outputs", "openai") == {"structured_outputs": {"regex": "a+"}}
    assert request_fields(regex, "guided", "openai-chat") == {"guided_regex": "a+"}
    json_c = Constraint("json", "p", SCHEMA)
    assert request_fields(json_c, "structured_outputs", "openai")["response_format"]["json_schema"]["schema"] == SCHEMA
    assert request_fields(json_c, "structured_outputs", "ollama-chat") == {"format": SCHEMA}


def test_ratio_spreads_constrained_requests_evenly() -> None:
    wl = StructuredWorkload(workload_config(workload="structured", structured_ratio=0.25))
    constrained = [i for i in range(100) if wl.constraint_of(i) is not None]
    assert len(constrained) == 25 and all(b - a == 4 for a, b in itertools.pairwise(constrained))
    every = StructuredWorkload(workload_config(workload="structured"))
    assert all(every.constraint_of(i) is not None for i in range(10))
    with pytest.raises(WorkloadError, match="structured-ratio"):
        workload_config(workload="structured", structured_ratio=0.0)


def test_llmsim_answers_meet_the_built_in_constraints() -> None:
    rng = random.Random(3)
    for constraints in BUILT_IN.values():
        for c in constraints:
            for _ in range(5):
                assert check(c, answer(c.kind, c.spec, rng, False)) in (True, None), c
                assert check(c, answer(c.kind, c.spec, rng, True)) is False, c
    for pattern in (r"[a-z]{3,8}@example\.com", r"(ab|cd)+x?\d*", r"[^0-9]\w\s."):
        assert re.fullmatch(pattern, regex_sample(pattern, rng)), pattern
    assert grammar_sample('root ::= ("a" | "b") tail+\ntail ::= [x-z] "!"?') == "ax"
    assert constraint_of({"guided_choice": ["a"]}) == ("choice", ["a"])
    assert constraint_of({"response_format": {"type": "json_object"}}) == ("json", {"type": "object"})
    assert constraint_of({"prompt": "free"}) is None


def test_run_against_llmsim_validity_matches_the_truth() -> None:
    with running(SimConfig(ttft_ms=2, itl_ms=1, invalid_rate=0.3, seed=5)) as sim:
        cfg = workload_config(workload="structured", requests=40, output_tokens=64)
        outcome, metrics = run_workload(sim.url, cfg)
    results = outcome.results
    assert len(results) == 40 and all(r.ok for r in results)
    for r in results:  # the client's verdict is the server's truth (llm-sim broke these on purpose)
        assert r.server_truth is not None and r.constraint == r.server_truth["constraint"]
        assert r.valid is (not r.server_truth["invalid"]), r
    invalid = sum(bool(r.server_truth and r.server_truth["invalid"]) for r in results)
    info = metrics["structured"]
    assert 0 < invalid < 40 and info["invalid"] == invalid and info["valid"] == 40 - invalid
    assert metrics["validity_rate"] == pytest.approx((40 - invalid) / 40)
    assert set(info["by_kind"]) == {"json", "regex", "choice", "grammar"} and info["failed"] == 0
    assert all(e["text"] for e in info["invalid_examples"])
    records = [r.to_record(outcome.t0) for r in results]
    assert all(rec["constraint"] and rec["valid"] in (True, False) for rec in records)


def test_a_refused_constraint_is_a_failure_and_said_once(tmp_path: Path) -> None:
    spec = tmp_path / "backref.jsonl"
    spec.write_text(json.dumps({"prompt": "p", "regex": r"(a)\1"}) + "\n")  # llm-sim cannot sample it: HTTP 400
    with running(SimConfig(ttft_ms=1, itl_ms=1)) as sim:
        cfg = workload_config(workload="structured", structured=str(spec), requests=4)
        _, metrics = run_workload(sim.url, cfg)
    assert metrics["failed"] == 4 and metrics["structured"]["refused"]["regex"]["count"] == 4
    warnings = StructuredWorkload(cfg).warnings(metrics)
    assert len(warnings) == 1 and "refused regex constraints (HTTP 400): " in warnings[0]
    assert metrics["validity_rate"] is None  # nothing was answered: no rate, not 0 %
