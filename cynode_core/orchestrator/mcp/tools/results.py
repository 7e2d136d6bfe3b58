"""What every built-in tool answers with: JSON results, pages of lists, and domain errors as tool failures.

Results follow mcp_contract.md 7: timestamps in RFC 3339 seconds UTC,
``null`` values left out, lists in pages (``limit`` default 50, at most
200; ``cursor`` a decimal offset). A service's domain error becomes a
:class:`ToolFailed` with the status and audit ``error_type`` of
mcp_contract.md 4 step 10.
"""

from __future__ import annotations

import datetime as dt
import re
import uuid
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, TypeVar

from sqlalchemy import Select
from sqlalchemy.orm import Session

from cynode_core.contract.errors import (
    Conflict,
    CynodeError,
    InvalidInput,
    NotFound,
    NotPermitted,
    RateLimited,
    TooLarge,
    Unavailable,
)
from cynode_core.contract.job import format_time
from cynode_core.orchestrator.mcp.registry import ToolDenied, ToolFailed
from cynode_core.orchestrator.mcp.tools.schema import MAX_LIMIT, MAX_OFFSET

DEFAULT_LIMIT = 50
T = TypeVar("T")

# Most specific first: the first class an error is an instance of decides.
_FAILURES: tuple[tuple[type[CynodeError], int, str], ...] = (
    (NotFound, 404, "not_found"),
    (Conflict, 409, "conflict"),
    (InvalidInput, 400, "invalid_arguments"),
    (TooLarge, 413, "too_large"),
    (RateLimited, 429, "rate_limited"),
    (Unavailable, 503, "service_unavailable"),
    (NotPermitted, 403, "forbidden"),
)


def to_json(value: Any) -> Any:
    """``value`` as a tool result: datetimes in RFC 3339 seconds UTC, UUIDs as strings, ``None`` members left out."""
    if isinstance(value, Mapping):
        return {str(k): to_json(v) for k, v in value.items() if v is not None}
    if isinstance(value, list | tuple):
        return [to_json(v) for v in value]
    if isinstance(value, dt.datetime):
        return format_time(value)
    if isinstance(value, uuid.UUID):
        return str(value)
    return value


def invalid_arguments(detail: str) -> ToolDenied:
    """An argument the schema lets through but the tool refuses (step 8 of the pipeline: audited as a denial)."""
    return ToolDenied(400, "invalid_arguments", detail)


@contextmanager
def service_errors() -> Iterator[None]:
    """Turn a service's domain error into the tool failure of its kind (404, 409, 400, 413, 429, 503, 403)."""
    try:
        yield
    except CynodeError as exc:
        for kind, status, error_type in _FAILURES:
            if isinstance(exc, kind):
                wait = getattr(exc, "retry_after", None)
                detail = exc.detail or error_type.replace("_", " ")
                raise ToolFailed(status, error_type, detail, retry_after=int(wait) if wait else None) from exc
        raise


@dataclass(frozen=True)
class Page:
    """The window of a list a call asks for: ``limit`` items from ``offset``."""

    limit: int
    offset: int

    @classmethod
    def of(cls, arguments: Mapping[str, Any]) -> Page:
        """Read ``limit``, ``offset`` and ``cursor`` (a decimal offset that wins over ``offset``)."""
        limit = arguments.get("limit")
        limit = DEFAULT_LIMIT if limit is None else min(max(int(limit), 1), MAX_LIMIT)
        cursor = str(arguments.get("cursor") or "").strip()
        if cursor:
            if not re.fullmatch(r"[0-9]{1,10}", cursor) or int(cursor) > MAX_OFFSET:
                raise invalid_arguments("invalid cursor")
            return cls(limit, int(cursor))
        return cls(limit, min(max(int(arguments.get("offset") or 0), 0), MAX_OFFSET))

    def rows(self, session: Session, query: Select[Any]) -> tuple[list[Any], int | None]:
        """This page of what ``query`` selects (ordered by the caller) and the offset of the next page."""
        found = list(session.scalars(query.offset(self.offset).limit(self.limit + 1)))
        return found[: self.limit], (self.offset + self.limit if len(found) > self.limit else None)

    def window(self, items: Sequence[T]) -> tuple[list[T], int | None]:
        """This page of ``items`` and the offset of the next page (None on the last)."""
        end = self.offset + self.limit
        return list(items[self.offset : end]), (end if len(items) > end else None)


def next_page(next_offset: int | None) -> dict[str, Any]:
    """The members that point at the next page: ``next_offset`` and ``next_cursor`` (none on the last page)."""
    return {} if next_offset is None else {"next_offset": next_offset, "next_cursor": str(next_offset)}
