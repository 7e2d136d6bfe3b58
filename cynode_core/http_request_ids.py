"""Request ids on a Flask app: every request is bound to one, and every answer echoes it."""

from __future__ import annotations

from typing import Any

from flask import Flask, g, request

from cynode_core.logs import REQUEST_ID_HEADER, accept_request_id, bind_request_id, unbind_request_id


def install_request_id(app: Flask) -> None:
    """Bind each request of ``app`` to a request id (the caller's ``X-Request-Id`` when valid) and echo it.

    Install before any other ``before_request`` hook, so every response carries it.
    """

    @app.before_request
    def _bind_request_id() -> None:
        rid = accept_request_id(request.headers.get(REQUEST_ID_HEADER))
        g.cynode_request_id = rid
        g.cynode_request_id_token = bind_request_id(rid)

    @app.after_request
    def _echo_request_id(response: Any) -> Any:
        rid = g.get("cynode_request_id")
        if rid:
            response.headers[REQUEST_ID_HEADER] = rid
        return response

    @app.teardown_request
    def _unbind_request_id(_exc: BaseException | None) -> None:
        token = g.pop("cynode_request_id_token", None)
        if token is not None:
            unbind_request_id(token)
