"""The exception tree and the one error format: RFC 9457 problem details.

Every error any cynode HTTP service returns (gateway, control plane, Worker
API), including the web framework's own 404/405/413/415/422 and unexpected
500s, goes through :func:`install_problem_handlers`.
"""

from __future__ import annotations

import json
import logging
from http import HTTPStatus
from typing import Any

from flask import Flask, Response, request
from sqlalchemy.exc import DataError, InterfaceError, OperationalError
from werkzeug.exceptions import HTTPException

log = logging.getLogger(__name__)

PROBLEM_CONTENT_TYPE = "application/problem+json"

# The type members of the contracts; statuses they do not name map to the
# nearest one (see docs/decisions.md).
_TYPE_BY_STATUS = {
    400: "urn:cynodeai:error:validation",
    401: "urn:cynodeai:error:authentication",
    403: "urn:cynodeai:error:authorization",
    404: "urn:cynodeai:error:not_found",
    405: "urn:cynodeai:error:validation",
    409: "https://cynode.ai/specs/conflict",
    413: "urn:cynodeai:error:validation",
    415: "urn:cynodeai:error:validation",
    422: "urn:cynodeai:error:validation",
    429: "urn:cynodeai:error:rate_limit",
    500: "urn:cynodeai:error:internal",
    503: "urn:cynodeai:error:unavailable",
}


class CynodeError(Exception):
    """Base of every error cynode raises on purpose; ``status`` is its HTTP code."""

    status = 500

    def __init__(self, detail: str = "", *, headers: dict[str, str] | None = None, **extra: Any):
        super().__init__(detail)
        self.detail = detail
        self.headers = headers or {}
        self.extra = extra


class BadRequest(CynodeError):
    status = 400


class Unauthorized(CynodeError):
    status = 401


class Forbidden(CynodeError):
    status = 403


class NotFound(CynodeError):
    status = 404


class Conflict(CynodeError):
    status = 409


class PayloadTooLarge(CynodeError):
    status = 413


class TooManyRequests(CynodeError):
    status = 429

    def __init__(self, detail: str, *, retry_after: int, **extra: Any):
        super().__init__(detail, headers={"Retry-After": str(max(int(retry_after), 1))}, **extra)


class ServiceUnavailable(CynodeError):
    status = 503


def problem_type(status: int) -> str:
    if status in _TYPE_BY_STATUS:
        return _TYPE_BY_STATUS[status]
    return _TYPE_BY_STATUS[500] if status >= 500 else _TYPE_BY_STATUS[400]


def problem_body(status: int, detail: str = "", **extra: Any) -> dict[str, Any]:
    try:
        title = HTTPStatus(status).phrase
    except ValueError:
        title = "Error"
    body: dict[str, Any] = {"type": problem_type(status), "title": title, "status": status}
    if detail:
        body["detail"] = detail
    body.update({k: v for k, v in extra.items() if v is not None})
    return body


def problem_response(status: int, detail: str = "", *, headers: dict[str, str] | None = None, **extra: Any) -> Response:
    resp = Response(
        json.dumps(problem_body(status, detail, **extra)) + "\n", status=status, mimetype=PROBLEM_CONTENT_TYPE
    )
    for key, value in (headers or {}).items():
        resp.headers[key] = value
    return resp


# Werkzeug's default descriptions are long HTML-ish sentences; these are ours.
_DEFAULT_DETAIL = {
    404: "No such route",
    405: "Method not allowed on this route",
    413: "Request body exceeds maximum size",
    415: "Request body must be JSON (Content-Type: application/json)",
}


def _from_http_exception(exc: HTTPException) -> Response:
    status = exc.code or 500
    if status == 422:
        # webargs/marshmallow validation: the contracts answer 400 "Invalid request body".
        messages = getattr(exc, "data", {}).get("messages") if hasattr(exc, "data") else None
        return problem_response(400, "Invalid request body", errors=_plain(messages))
    if status == 400 and getattr(exc, "data", None):
        return problem_response(400, "Invalid request body")
    detail = _DEFAULT_DETAIL.get(status, "")
    headers = {}
    if status == 405 and getattr(exc, "valid_methods", None):
        headers["Allow"] = ", ".join(exc.valid_methods)  # type: ignore[attr-defined]
    if status == 400 and not detail:
        detail = "Invalid request body"
    return problem_response(status, detail, headers=headers)


def _plain(messages: Any) -> Any:
    """Webargs nests messages under the location ("json"); clients want the fields."""
    if isinstance(messages, dict) and len(messages) == 1 and next(iter(messages)) in ("json", "query", "view_args"):
        return next(iter(messages.values()))
    return messages


def install_problem_handlers(app: Flask) -> None:
    """Route every error of ``app`` through the problem-details format."""

    @app.errorhandler(CynodeError)
    def _cynode_error(exc: CynodeError) -> Response:
        return problem_response(exc.status, exc.detail, headers=exc.headers, **exc.extra)

    @app.errorhandler(HTTPException)
    def _http_error(exc: HTTPException) -> Response:
        return _from_http_exception(exc)

    @app.errorhandler(OperationalError)
    @app.errorhandler(InterfaceError)
    def _database_down(exc: Exception) -> Response:
        # The database is away (restart, network): say so, and let clients retry.
        log.warning("database unavailable on %s %s: %s", request.method, request.path, type(exc).__name__)
        return problem_response(503, "Database unavailable, retry shortly", headers={"Retry-After": "2"})

    @app.errorhandler(DataError)
    def _unstorable_value(exc: DataError) -> Response:
        # PostgreSQL refused a value the client sent (a NUL character in
        # text or JSON, an out-of-range number): the request is at fault.
        log.info(
            "value refused by the database on %s %s: %s",
            request.method,
            request.path,
            type(getattr(exc, "orig", exc)).__name__,
        )
        return problem_response(400, "Invalid request body: a value cannot be stored (e.g. a NUL character)")

    @app.errorhandler(Exception)
    def _unexpected(exc: Exception) -> Response:
        log.exception("unhandled error on %s %s", request.method, request.path)
        return problem_response(500, "Internal error")
