"""Request-level rules shared by every route: JSON-only bodies, client identity."""

from __future__ import annotations

from typing import Any

from flask import Flask, current_app, request
from webargs import core
from webargs.flaskparser import FlaskParser

from cynode_core.errors import CynodeError
from cynode_core.services.auth import ClientInfo


class UnsupportedMediaType(CynodeError):
    status = 415


def is_json_mimetype(mimetype: str) -> bool:
    return mimetype == "application/json" or (mimetype.startswith("application/") and mimetype.endswith("+json"))


class JsonBodyParser(FlaskParser):
    """Bodies are JSON or nothing: another content type is 415, not silently ignored."""

    def _raw_load_json(self, req: Any) -> Any:
        data = req.get_data(cache=True)
        if not data.strip():
            return core.missing
        if req.mimetype and not is_json_mimetype(req.mimetype):
            raise UnsupportedMediaType("Request body must be JSON (Content-Type: application/json)")
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
