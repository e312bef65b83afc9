"""A small JSON-schema validator for the structured-output workload: the subset its schemas use.

``jsonschema`` is not a dependency of benchctl, and a benchmark only needs the keywords a structured-output
engine (xgrammar, outlines) turns into a grammar: ``type`` (one or a list), ``enum``, ``const``,
``properties``, ``required``, ``additionalProperties`` (bool or schema), ``items``, ``minItems``/``maxItems``,
``minLength``/``maxLength``, ``pattern``, ``minimum``/``maximum`` (and the exclusive ones), ``anyOf``,
``oneOf``, ``allOf``. Other keywords are not checked (``unsupported`` names them, so a result never claims
more than was checked).
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from typing import Any

SUPPORTED = frozenset({
    "type", "enum", "const", "properties", "required", "additionalProperties", "items", "minItems", "maxItems",
    "minLength", "maxLength", "pattern", "minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum", "anyOf",
    "oneOf", "allOf", "title", "description", "$schema", "default", "examples"})


def _is_type(value: Any, name: str) -> bool:
    # JSON's types, not Python's: a bool is not a number, 1.0 is an integer (JSON cannot tell them apart).
    if name == "object":
        return isinstance(value, dict)
    if name == "array":
        return isinstance(value, list)
    if name == "string":
        return isinstance(value, str)
    if name == "boolean":
        return isinstance(value, bool)
    if name == "null":
        return value is None
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return False
    if name == "integer":
        return isinstance(value, int) or (math.isfinite(value) and float(value).is_integer())
    return name == "number"


def validate(schema: Any, value: Any, where: str = "$") -> list[str]:
    """Why ``value`` does not satisfy ``schema`` (empty: it does)."""
    if schema is True or schema == {}:
        return []
    if schema is False:
        return [f"{where}: no value is allowed here"]
    if not isinstance(schema, Mapping):
        return [f"{where}: the schema is not an object"]
    errors: list[str] = []
    kind = schema.get("type")
    if kind is not None:
        kinds = kind if isinstance(kind, list) else [kind]
        if not any(_is_type(value, k) for k in kinds):
            return [f"{where}: expected {'/'.join(map(str, kinds))}, got {type(value).__name__}"]
    if "enum" in schema and value not in schema["enum"]:
        errors.append(f"{where}: {value!r} is not one of {schema['enum']!r}")
    if "const" in schema and value != schema["const"]:
        errors.append(f"{where}: expected {schema['const']!r}")
    if isinstance(value, dict):
        errors += _object(schema, value, where)
    elif isinstance(value, list):
        if len(value) < schema.get("minItems", 0) or len(value) > schema.get("maxItems", math.inf):
            errors.append(f"{where}: {len(value)} items is outside the allowed count")
        if "items" in schema:
            for i, item in enumerate(value):
                errors += validate(schema["items"], item, f"{where}[{i}]")
    elif isinstance(value, str):
        if len(value) < schema.get("minLength", 0) or len(value) > schema.get("maxLength", math.inf):
            errors.append(f"{where}: length {len(value)} is outside the allowed length")
        if "pattern" in schema and not re.search(schema["pattern"], value):
            errors.append(f"{where}: {value!r} does not match {schema['pattern']!r}")
    elif _is_type(value, "number"):
        errors += _bounds(schema, value, where)
    for key in ("allOf", "anyOf", "oneOf"):
        if key in schema:
            passed = sum(not validate(sub, value, where) for sub in schema[key])
            total = len(schema[key])
            ok = passed == total if key == "allOf" else passed >= 1 if key == "anyOf" else passed == 1
            if not ok:
                errors.append(f"{where}: {key} not satisfied ({passed} of {total} subschemas match)")
    return errors


def _object(schema: Mapping[str, Any], value: dict[str, Any], where: str) -> list[str]:
    errors = [f"{where}: missing {name!r}" for name in schema.get("required", []) if name not in value]
    props = schema.get("properties") or {}
    extra = schema.get("additionalProperties", True)
    for name, item in value.items():
        if name in props:
            errors += validate(props[name], item, f"{where}.{name}")
        elif extra is False:
            errors.append(f"{where}: unexpected property {name!r}")
        elif isinstance(extra, Mapping):
            errors += validate(extra, item, f"{where}.{name}")
    return errors


def _bounds(schema: Mapping[str, Any], value: float, where: str) -> list[str]:
    low, high = schema.get("minimum"), schema.get("maximum")
    xlow, xhigh = schema.get("exclusiveMinimum"), schema.get("exclusiveMaximum")
    if (low is not None and value < low) or (high is not None and value > high) or (
            xlow is not None and value <= xlow) or (xhigh is not None and value >= xhigh):
        return [f"{where}: {value!r} is out of range"]
    return []


def unsupported(schema: Any) -> set[str]:
    """Keywords of ``schema`` (at any depth) that ``validate`` does not check."""
    if not isinstance(schema, Mapping):
        return set()
    out = {key for key in schema if key not in SUPPORTED}
    for key in ("items", "additionalProperties"):
        out |= unsupported(schema.get(key))
    for sub in (schema.get("properties") or {}).values():
        out |= unsupported(sub)
    for key in ("allOf", "anyOf", "oneOf"):
        for sub in schema.get(key) or []:
            out |= unsupported(sub)
    return out


__all__ = ["unsupported", "validate"]
