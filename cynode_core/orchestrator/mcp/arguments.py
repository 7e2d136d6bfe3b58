"""A call's arguments against its tool's input schema (mcp_contract.md 4, step 8).

Top-level keys the schema does not declare are dropped, not refused (a
model may add a key; upstream ignores them too), and so are keys whose
value is ``null`` (a model's way of leaving an optional argument out). The
rest is validated with ``jsonschema``; every failure is named by its
argument path in words a model can act on. A required ``task_id`` or
``job_id`` that is missing or not a UUID reads as upstream's
``task_id required`` / ``job_id required``. Strings holding a NUL
character are refused here, since PostgreSQL text cannot store one.
"""

from __future__ import annotations

import itertools
import logging
import re
from collections.abc import Iterator, Mapping
from typing import Any

from jsonschema.exceptions import ValidationError
from jsonschema.protocols import Validator

log = logging.getLogger(__name__)

# Upstream's messages for its required scoped ids (handlers.go, ValidateRequiredScopedIds).
SCOPED_IDS = ("task_id", "job_id")
_SAMPLE_UUID = "7c1e4b2a-3f5d-4e6a-9b8c-1d2e3f4a5b6c"
_TYPE_WORDS = {
    "object": "an object",
    "string": "a string",
    "integer": "an integer",
    "boolean": "true or false",
    "array": "an array",
}
MAX_MESSAGES = 20


class InvalidArguments(Exception):
    """The arguments break the schema: ``detail`` names the first failure, ``errors`` each path's message."""

    def __init__(self, detail: str, errors: dict[str, str]) -> None:
        super().__init__(detail)
        self.detail = detail
        self.errors = errors


def checked(schema: Mapping[str, Any], check: Validator, arguments: Mapping[str, Any]) -> dict[str, Any]:
    """The arguments the tool gets: declared keys with a value, valid against ``schema`` (else InvalidArguments)."""
    declared = schema.get("properties", {})
    kept = {key: value for key, value in arguments.items() if key in declared and value is not None}
    dropped = [key for key in arguments if key not in declared]
    if dropped:
        log.debug("MCP arguments dropped: %s", ", ".join(repr(key[:40]) for key in dropped[:10]))
    found = [(path, f"{path}: must not hold a NUL character") for path, value in _strings(kept, "") if "\x00" in value]
    required = set(schema.get("required", []))
    found += [_message(error, required) for error in itertools.islice(check.iter_errors(kept), MAX_MESSAGES)]
    # In the schema's order of arguments, as upstream checks task_id before job_id.
    order = {name: index for index, name in enumerate(declared)}
    errors: dict[str, str] = {}
    for path, message in sorted(found, key=lambda pair: (order.get(_top(pair[0]), len(order)), pair[0])):
        errors.setdefault(path, message)
    if errors:
        raise InvalidArguments(next(iter(errors.values())), errors)
    return kept


def _strings(value: Any, path: str) -> Iterator[tuple[str, str]]:
    """Every string in ``value`` with its path (the depth is bounded by the body decoder)."""
    if isinstance(value, str):
        yield path, value
    elif isinstance(value, Mapping):
        for key, child in value.items():
            yield from _strings(child, f"{path}.{key}" if path else str(key))
    elif isinstance(value, list):
        for index, child in enumerate(value):
            yield from _strings(child, f"{path}[{index}]")


def _top(path: str) -> str:
    """The argument a path starts with."""
    return re.split(r"[.\[]", path, maxsplit=1)[0]


def _path(parts: Any) -> str:
    text = ""
    for part in parts:
        text += f"[{part}]" if isinstance(part, int) else (f".{part}" if text else str(part))
    return text


def _message(error: ValidationError, required: set[str]) -> tuple[str, str]:
    """The path an error is about and what to say of it."""
    path = _path(error.absolute_path)
    kind, limit = error.validator, error.validator_value
    if kind == "required":
        missing = next((name for name in limit if name not in error.instance), str(limit))
        path = f"{path}.{missing}" if path else str(missing)
        return path, f"{path} required"
    if path in SCOPED_IDS and path in required:
        return path, f"{path} required"
    if kind == "type":
        said = _TYPE_WORDS.get(limit, str(limit)) if isinstance(limit, str) else "of another type"
        return path, f"{path}: must be {said}"
    if kind == "maxLength":
        return path, f"{path}: must be at most {limit} characters"
    if kind == "minLength":
        return path, f"{path}: must not be empty" if limit == 1 else f"{path}: must be at least {limit} characters"
    if kind == "maximum":
        return path, f"{path}: must be at most {limit}"
    if kind == "minimum":
        return path, f"{path}: must be at least {limit}"
    if kind == "maxItems":
        return path, f"{path}: must have at most {limit} items"
    if kind == "enum":
        return path, f"{path}: must be one of {', '.join(map(str, limit))}"
    if kind == "const":
        return path, f"{path}: must be {limit}"
    if kind == "pattern":
        return path, f"{path}: must be a UUID" if re.fullmatch(limit, _SAMPLE_UUID) else f"{path}: has the wrong form"
    if kind == "additionalProperties":
        return path, f"{path or 'arguments'}: unknown member"
    return path, f"{path or 'arguments'}: invalid"
