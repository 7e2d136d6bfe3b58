"""The pieces the built-in tools' input schemas are made of, in the subset of agents_contract.md 3.2.

Every schema is an object with ``additionalProperties: false``; every free
string has a ``maxLength`` and every array a ``maxItems`` (a small model
decoding under the schema could otherwise keep generating); ``pattern`` is
used for UUIDs only. No ``description``, ``default`` or ``format``: what an
argument means is said in the tool's description, which ``help.get`` shows
with a table made from the schema.
"""

from __future__ import annotations

from typing import Any

UUID_PATTERN = "^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$"
# The largest offset a list accepts (PostgreSQL's OFFSET is a bigint; a page that far is empty anyway).
MAX_OFFSET = 2**31 - 1
MAX_LIMIT = 200

UUID: dict[str, Any] = {"type": "string", "minLength": 36, "maxLength": 36, "pattern": UUID_PATTERN}
BOOLEAN: dict[str, Any] = {"type": "boolean"}


def text(max_length: int, min_length: int = 0) -> dict[str, Any]:
    """A free string of at most ``max_length`` characters."""
    out: dict[str, Any] = {"type": "string", "maxLength": max_length}
    if min_length:
        out["minLength"] = min_length
    return out


def one_of(*values: str) -> dict[str, Any]:
    return {"type": "string", "enum": list(values)}


def integer(minimum: int, maximum: int) -> dict[str, Any]:
    return {"type": "integer", "minimum": minimum, "maximum": maximum}


def array(items: dict[str, Any], max_items: int) -> dict[str, Any]:
    return {"type": "array", "items": items, "maxItems": max_items}


# ``limit`` (default 50), ``offset``; ``cursor`` is a decimal offset and wins over ``offset``.
PAGE: dict[str, dict[str, Any]] = {
    "limit": integer(1, MAX_LIMIT),
    "offset": integer(0, MAX_OFFSET),
    "cursor": text(10),
}
# ``limit`` and ``offset`` only (lists that upstream pages without a cursor).
LIMIT_OFFSET: dict[str, dict[str, Any]] = {k: PAGE[k] for k in ("limit", "offset")}


def arguments(properties: dict[str, dict[str, Any]] | None = None, *required: str) -> dict[str, Any]:
    """A tool's input schema: an object of ``properties`` (their order is generation order)."""
    out: dict[str, Any] = {"type": "object", "properties": dict(properties or {}), "additionalProperties": False}
    if required:
        out["required"] = list(required)
    return out
