"""Tool input schemas: the subset of agents_contract.md 3.2 they must keep to, and their validators.

A schema the gateway publishes is also a grammar a small model decodes
under, so it may use only: ``type`` (one of object, string, integer,
boolean, array), ``properties``, ``required``, ``additionalProperties:
false`` (on every object), ``enum``, ``const``, ``minLength``,
``maxLength``, ``minimum``, ``maximum``, ``items``, ``maxItems``, and
``pattern`` for simple anchored character classes (UUIDs). Every free
string has a ``maxLength`` (an anchored pattern without open repeats, an
``enum`` or a ``const`` bounds it too) and every array a ``maxItems``.
Anything else (``$ref``, ``format``, ``oneOf``, ``anyOf``, ``allOf``,
``patternProperties``, a list of types, annotations such as
``description``) is refused: what an argument means belongs in the tool's
description.

:func:`validator` compiles a checked schema once; an ``integer`` there is a
JSON integer only (``5.0`` and ``true`` are not).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from jsonschema import Draft202012Validator, validators
from jsonschema.exceptions import SchemaError
from jsonschema.protocols import Validator

TYPES = ("object", "string", "integer", "boolean", "array")
_KEYWORDS_OF_TYPE: dict[str, set[str]] = {
    "object": {"properties", "required", "additionalProperties"},
    "string": {"enum", "const", "minLength", "maxLength", "pattern"},
    "integer": {"enum", "const", "minimum", "maximum"},
    "boolean": {"const", "enum"},
    "array": {"items", "maxItems"},
}
# An anchored pattern of literals, classes and bounded repeats: no *, +, ?, {n,}, groups or alternatives.
_OPEN_PATTERN = re.compile(r"[*+?|()]|\{\d*,\}")


def _integer(_checker: Any, instance: Any) -> bool:
    return isinstance(instance, int) and not isinstance(instance, bool)


_StrictValidator = validators.extend(
    Draft202012Validator, type_checker=Draft202012Validator.TYPE_CHECKER.redefine("integer", _integer)
)


def subset_problems(schema: Any) -> list[str]:
    """What in ``schema`` falls outside the subset (empty: it may be published); the root must be an object."""
    if not isinstance(schema, Mapping) or schema.get("type") != "object":
        return ["the schema must be an object schema (type: object)"]
    problems = _problems(schema, "")
    if not problems:
        try:
            Draft202012Validator.check_schema(dict(schema))
        except SchemaError as exc:
            problems.append(f"not a valid JSON Schema: {exc.message}")
    return problems


def validator(schema: Mapping[str, Any]) -> Validator:
    """The validator of a schema :func:`subset_problems` found nothing in."""
    return _StrictValidator(dict(schema))  # type: ignore[no-any-return]


def _problems(schema: Any, where: str) -> list[str]:
    at = where or "the root"
    if not isinstance(schema, Mapping):
        return [f"{at}: a schema must be an object"]
    kind = schema.get("type")
    if kind not in TYPES:
        return [f"{at}: type must be one of {', '.join(TYPES)}"]
    unknown = set(schema) - _KEYWORDS_OF_TYPE[kind] - {"type"}
    if unknown:
        return [f"{at}: keyword(s) outside the subset for {kind}: {', '.join(sorted(map(str, unknown)))}"]
    if kind == "object":
        return _object_problems(schema, where)
    if kind == "array":
        if "maxItems" not in schema or "items" not in schema:
            return [f"{at}: an array needs items and maxItems"]
        return _problems(schema["items"], f"{where}[]")
    if kind == "string":
        return _string_problems(schema, at)
    return []


def _object_problems(schema: Mapping[str, Any], where: str) -> list[str]:
    at = where or "the root"
    if schema.get("additionalProperties") is not False:
        return [f"{at}: an object needs additionalProperties: false"]
    properties = schema.get("properties", {})
    if not isinstance(properties, Mapping):
        return [f"{at}: properties must be an object"]
    required = schema.get("required", [])
    if not isinstance(required, list) or any(name not in properties for name in required):
        return [f"{at}: required must list declared properties"]
    problems: list[str] = []
    for name, child in properties.items():
        problems += _problems(child, f"{where}.{name}" if where else str(name))
    return problems


def _string_problems(schema: Mapping[str, Any], at: str) -> list[str]:
    pattern = schema.get("pattern")
    if pattern is not None:
        if not isinstance(pattern, str) or not (pattern.startswith("^") and pattern.endswith("$")):
            return [f"{at}: a pattern must be anchored (^...$)"]
        if _OPEN_PATTERN.search(pattern.replace("\\\\", "")):
            return [f"{at}: a pattern may hold only character classes and bounded repeats"]
        try:
            re.compile(pattern)
        except re.error:
            return [f"{at}: the pattern does not compile"]
    if "maxLength" not in schema and not {"enum", "const", "pattern"} & set(schema):
        return [f"{at}: a free string needs maxLength"]
    return []
