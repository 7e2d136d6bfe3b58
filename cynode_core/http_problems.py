"""RFC 9457 problem details: the one error format of every cynode HTTP surface.

``install_problem_handlers`` routes a Flask app's errors through it: the
domain errors of ``cynode_core.contract.errors`` (mapped to a status here,
and only here), the web framework's own 404/405/413/415/422, and unexpected
exceptions (500). Both the orchestrator and the node's Worker API install it;
what only one of them needs (the orchestrator's database-outage answer) it
adds itself.
"""

from __future__ import annotations

import json
import logging
from http import HTTPStatus
from typing import Any

from flask import Flask, Response, request
from werkzeug.exceptions import HTTPException

from cynode_core.contract import errors
from cynode_core.contract.errors import CynodeError

log = logging.getLogger(__name__)

PROBLEM_CONTENT_TYPE = "application/problem+json"

# The problem types of docs/wire_contract.md#error-types; statuses it does
# not name map to the nearest one (see docs/decisions.md).
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

# Domain error -> HTTP status: the one place that knows both.
_STATUS_BY_ERROR: tuple[tuple[type[CynodeError], int], ...] = (
    (errors.InvalidInput, 400),
    (errors.NotAuthenticated, 401),
    (errors.NotPermitted, 403),
    (errors.NotFound, 404),
    (errors.Conflict, 409),
    (errors.TooLarge, 413),
    (errors.RangeNotSatisfiable, 416),
    (errors.RateLimited, 429),
    (errors.Unavailable, 503),
    (errors.JobNotStarted, 500),
)


def status_of(exc: CynodeError) -> int | None:
    """The HTTP status a domain error is answered with; ``None`` for one no surface planned for."""
    for cls, status in _STATUS_BY_ERROR:
        if isinstance(exc, cls):
            return status
    return None


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


def error_response(exc: CynodeError) -> Response:
    """The problem response of a domain error, with the headers its kind calls for."""
    status = status_of(exc)
    if status is None:
        # A domain error no surface planned for: its words are internal, keep them in the log.
        log.error("unmapped %s: %s", type(exc).__name__, exc.detail)
        return problem_response(500, "Internal error")
    headers: dict[str, str] = {}
    if isinstance(exc, (errors.RateLimited, errors.Unavailable)) and exc.retry_after is not None:
        headers["Retry-After"] = str(exc.retry_after)
    if isinstance(exc, errors.RangeNotSatisfiable):
        headers["Content-Range"] = f"bytes */{exc.size}"
    if isinstance(exc, errors.NotAuthenticated) and exc.challenge:
        headers["WWW-Authenticate"] = exc.challenge
    return problem_response(status, exc.detail, headers=headers, **exc.extra)


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
        # webargs/marshmallow validation: 400 "Invalid request body" (docs/wire_contract.md#errors).
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
        return error_response(exc)

    @app.errorhandler(HTTPException)
    def _http_error(exc: HTTPException) -> Response:
        return _from_http_exception(exc)

    @app.errorhandler(Exception)
    def _unexpected(exc: Exception) -> Response:
        log.exception("unhandled error on %s %s", request.method, request.path)
        return problem_response(500, "Internal error")
