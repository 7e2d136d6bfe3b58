"""Request-level rules shared by every orchestrator route: JSON-only bodies, client identity, database outages."""

from __future__ import annotations

import functools
import ipaddress
import logging
import threading
from collections.abc import Callable
from typing import Any

from flask import Flask, Response, current_app, request
from sqlalchemy.exc import DataError, InterfaceError, OperationalError
from sqlalchemy.orm import Session
from webargs import core
from webargs.flaskparser import FlaskParser
from werkzeug.exceptions import UnsupportedMediaType

from cynode_core.http_limits import decode_json_body
from cynode_core.http_problems import problem_response
from cynode_core.orchestrator.services.audit import ClientInfo
from cynode_core.orchestrator.settings import IPNetwork, OrchestratorSettings

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address

log = logging.getLogger(__name__)


def is_json_mimetype(mimetype: str) -> bool:
    return mimetype == "application/json" or (mimetype.startswith("application/") and mimetype.endswith("+json"))


class JsonBodyParser(FlaskParser):
    """Bodies are JSON (read by ``decode_json_body``) or nothing: another content type is 415, not ignored."""

    def _raw_load_json(self, req: Any) -> Any:
        data = req.get_data(cache=True)
        if not data.strip():
            return core.missing
        if req.mimetype and not is_json_mimetype(req.mimetype):
            raise UnsupportedMediaType()  # answered with the JSON-only detail
        return decode_json_body(data)


_EXTENSIONS_LOCK = threading.Lock()


def app_extension(name: str, make: Callable[[Any], Any]) -> Any:
    """``current_app.extensions[name]``, made with ``make(state)`` on first use (one per app, across threads)."""
    extensions = current_app.extensions
    with _EXTENSIONS_LOCK:
        found = extensions.get(name)
        if found is None:
            found = extensions[name] = make(extensions["cynode"])
    return found


def install_request_guards(app: Flask) -> None:
    @app.after_request
    def _no_store(response):  # type: ignore[no-untyped-def]
        # Tokens and task output must not be cached by intermediaries.
        response.headers.setdefault("Cache-Control", "no-store")
        return response


def client_info() -> ClientInfo:
    return ClientInfo(ip=client_address(), user_agent=request.headers.get("User-Agent"))


def _ip(text: str) -> IPAddress | None:
    """An address as a proxy writes it: bare, ``[v6]`` or with a port (``1.2.3.4:5``, ``[v6]:5``)."""
    text = text.strip()
    if text.startswith("["):
        text = text[1:].partition("]")[0]
    elif text.count(":") == 1:
        text = text.partition(":")[0]
    try:
        address = ipaddress.ip_address(text)
    except ValueError:
        return None
    mapped = getattr(address, "ipv4_mapped", None)
    return mapped or address


def _trusted(address: IPAddress | None, proxies: tuple[IPNetwork, ...]) -> bool:
    return address is not None and any(address in network for network in proxies)


def client_address() -> str | None:
    """The caller's address (docs/wire_contract.md#login-throttling).

    The TCP peer, unless ``trust_forwarded_for`` is on and the peer is one of
    ``trusted_proxies``: then ``X-Forwarded-For`` (every header line, as one
    list) is read from the right, past the trusted proxies, and the first
    address outside them is the client; when every hop is trusted, the
    leftmost. An entry that is not an address stops the walk at the proxy
    that wrote it. Without the header, ``X-Real-IP`` from a trusted proxy.
    """
    settings = current_app.extensions["cynode"].settings
    peer = request.remote_addr
    proxies = settings.trusted_proxies
    if not settings.trust_forwarded_for or not _trusted(_ip(peer or ""), proxies):
        return peer
    hops = [hop for line in request.headers.getlist("X-Forwarded-For") for hop in line.split(",") if hop.strip()]
    if not hops:
        real = _ip(request.headers.get("X-Real-IP", ""))
        return str(real) if real is not None else peer
    client = _ip(peer or "")
    for hop in reversed(hops):
        address = _ip(hop)
        if address is None:
            break
        client = address
        if not _trusted(address, proxies):
            break
    return str(client) if client is not None else peer


def per_source_limit(
    check: Callable[[Session, OrchestratorSettings, ClientInfo], None],
) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """A view decorator: ``check`` the caller's address (429 past a limit) before the body is read."""

    def decorate(view: Callable[..., Any]) -> Callable[..., Any]:
        @functools.wraps(view)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            state = current_app.extensions["cynode"]
            with state.db.session() as session:
                check(session, state.settings, client_info())
            return view(*args, **kwargs)

        return wrapper

    return decorate


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
