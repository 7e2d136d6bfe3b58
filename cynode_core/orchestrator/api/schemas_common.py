"""Schema pieces every blueprint uses: timestamps, omitted empties, problem details."""

from __future__ import annotations

import datetime as dt
import re
from typing import Any

import marshmallow as ma
from marshmallow import fields

from cynode_core.contract.errors import InvalidInput


def rfc3339(value: dt.datetime | None) -> str | None:
    """RFC 3339, UTC, second precision, ``Z`` suffix (docs/wire_contract.md#conventions)."""
    if value is None:
        return None
    if value.tzinfo is None:
        value = value.replace(tzinfo=dt.UTC)
    return value.astimezone(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def int_param(
    value: str | None, default: int, low: int, high: int, error: str = "Invalid limit, offset, or cursor"
) -> int:
    """A paging parameter: ``default`` when absent, else ASCII digits within ``low..high`` (400 ``error``)."""
    if value is None or value == "":
        return default
    # ASCII digits only: str.isdigit() also accepts "²" and lstrip("-") let "--5" through, and int() fails on both.
    if not re.fullmatch(r"-?[0-9]+", value.strip()):
        raise InvalidInput(error)
    number = int(value.strip())
    if not low <= number <= high:
        raise InvalidInput(error)
    return number


class Timestamp(fields.Field):
    """A datetime dumped in the RFC 3339 form of docs/wire_contract.md#conventions."""

    def _serialize(self, value: Any, attr: str | None, obj: Any, **kwargs: Any) -> str | None:
        return rfc3339(value)

    def _deserialize(self, value: Any, attr: str | None, data: Any, **kwargs: Any) -> dt.datetime:
        try:
            parsed = dt.datetime.fromisoformat(str(value).replace("Z", "+00:00"))
        except ValueError as exc:
            raise ma.ValidationError("Not an RFC 3339 timestamp.") from exc
        return parsed if parsed.tzinfo else parsed.replace(tzinfo=dt.UTC)


class PageQuerySchema(ma.Schema):
    """The paging parameters of a list: ``limit``, ``offset`` or ``cursor`` (read with :func:`int_param`)."""

    class Meta:
        unknown = ma.EXCLUDE

    limit = fields.String(load_default=None)
    offset = fields.String(load_default=None)
    cursor = fields.String(load_default=None)


class OmitEmptySchema(ma.Schema):
    """Leaves out keys whose value is ``None`` (never ``null``: docs/wire_contract.md#conventions)."""

    @ma.post_dump
    def _drop_none(self, data: dict[str, Any], **kwargs: Any) -> dict[str, Any]:
        return {k: v for k, v in data.items() if v is not None}


class RequestSchema(ma.Schema):
    """Request bodies ignore unknown keys (docs/wire_contract.md#conventions)."""

    class Meta:
        unknown = ma.EXCLUDE


class IncludeUnknownSchema(ma.Schema):
    """A versioned node payload, kept whole: keys not declared here are kept as they came."""

    class Meta:
        unknown = ma.INCLUDE


class ProblemSchema(ma.Schema):
    """RFC 9457 problem details."""

    type = fields.String(required=True, metadata={"example": "urn:cynodeai:error:validation"})
    title = fields.String(required=True)
    status = fields.Integer(required=True)
    detail = fields.String()
    instance = fields.String()
    errors = fields.Raw(metadata={"description": "field-level messages of a validation error"})
