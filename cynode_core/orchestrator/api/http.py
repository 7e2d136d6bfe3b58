"""Request-level rules shared by every orchestrator route: JSON-only bodies, client identity, database outages."""

from __future__ import annotations

import logging
from typing import Any

from flask import Flask, Response, current_app, request
from sqlalchemy.exc import DataError, InterfaceError, OperationalError
from webargs import core
from webargs.flaskparser import FlaskParser
from werkzeug.exceptions import UnsupportedMediaType

from cynode_core.http_problems import problem_response
from cynode_core.orchestrator.services.auth import ClientInfo

log = logging.getLogger(__name__)


def is_json_mimetype(mimetype: str) -> bool:
    return mimetype == "application/json" or (mimetype.startswith("application/") and mimetype.endswith("+json"))


class JsonBodyParser(FlaskParser):
    """Bodies are JSON or nothing: another content type is 415, not silently ignored."""

    def _raw_load_json(self, req: Any) -> Any:
        data = req.get_data(cache=True)
        if not data.strip():
            return core.missing
        if req.mimetype and not is_json_mimetype(req.mimetype):
            raise UnsupportedMediaType()  # answered with the JSON-only detail
        return core.parse_json(data)


def install_request_guards(app: Flask) -> None:
    @app.after_request
    def _no_store(response):  # type: ignore[no-untyped-def]
        # Tokens and task output must not be cached by intermediaries.
        response.headers.setdefault("Cache-Control", "no-store")
        return response


def client_info() -> ClientInfo:
    return ClientInfo(ip=client_address(), user_agent=request.headers.get("User-Agent"))


def client_address() -> str | None:
    """The caller's address; ``X-Forwarded-For`` only when the operator trusts a proxy."""
    settings = current_app.extensions["cynode"].settings
    if settings.trust_forwarded_for:
        forwarded = request.headers.get("X-Forwarded-For", "")
        first = forwarded.split(",")[0].strip()
        if first:
            return first[:64]
        real = request.headers.get("X-Real-IP", "").strip()
        if real:
            return real[:64]
    return request.remote_addr


def install_database_outage_handlers(app: Flask) -> None:
    """Answer database trouble as the client's to retry (503) or the client's value (400), never a 500."""

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
