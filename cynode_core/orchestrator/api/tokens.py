"""JWTs (flask-jwt-extended, HS256, issuer ``cynodeai``), personal API keys, and the route guards.

Three token types, told apart by the ``token_type`` claim: ``access`` (user
routes), ``refresh`` (only ``/v1/auth/refresh``) and ``node`` (control
plane). Access and refresh tokens carry ``sid``, the session family, checked
against the database on every request so logout and revocation bite at once;
a node token's ``jti`` must be the one its node's row keeps from the latest
registration, checked the same way. User routes also take a personal API
key (``cyk_...``, services/api_keys) in place of an access token, checked
against the database the same way; routes that manage the login itself
(logout, the keys) are :func:`login_session_only`.
"""

from __future__ import annotations

import datetime as dt
import functools
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from flask import current_app, g, request
from flask_jwt_extended import create_access_token, create_refresh_token, decode_token

from cynode_core.contract.errors import NotAuthenticated, NotPermitted
from cynode_core.orchestrator.api.http import client_info
from cynode_core.orchestrator.services import api_keys
from cynode_core.orchestrator.services.auth import IssuedPair, live_user
from cynode_core.orchestrator.services.nodes import node_jwt_current

MISSING_HEADER = "Missing authorization header"
INVALID_TOKEN = "Invalid or expired token"
LOGIN_SESSION_REQUIRED = "This needs a login session; an API key cannot do it"


def _cynode():  # type: ignore[no-untyped-def]
    return current_app.extensions["cynode"]


class FlaskTokenIssuer:
    """Signs user token pairs inside a request (the app holds the key)."""

    def user_pair(self, user_id: uuid.UUID, handle: str, family_id: uuid.UUID) -> IssuedPair:
        settings = _cynode().settings
        now = dt.datetime.now(dt.UTC)
        common = {"user_id": str(user_id), "sid": str(family_id)}
        access = create_access_token(
            identity=str(user_id),
            additional_claims={**common, "token_type": "access", "handle": handle},
            expires_delta=dt.timedelta(seconds=settings.access_token_ttl),
        )
        refresh = create_refresh_token(
            identity=str(user_id),
            additional_claims={**common, "token_type": "refresh"},
            expires_delta=dt.timedelta(seconds=settings.refresh_token_ttl),
        )
        return IssuedPair(access, refresh, now + dt.timedelta(seconds=settings.refresh_token_ttl))


def node_token(node_id: uuid.UUID, node_slug: str, jwt_id: uuid.UUID) -> tuple[str, dt.datetime]:
    """A node JWT whose ``jti`` is the registration's ``jwt_id`` (the one its row keeps)."""
    ttl = _cynode().settings.node_token_ttl
    token = create_access_token(
        identity=str(node_id),
        additional_claims={"token_type": "node", "node_id": str(node_id), "node_slug": node_slug, "jti": str(jwt_id)},
        expires_delta=dt.timedelta(seconds=ttl),
    )
    return token, dt.datetime.now(dt.UTC) + dt.timedelta(seconds=ttl)


def verify(token: str, token_type: str) -> dict[str, Any] | None:
    """The claims of a valid token of ``token_type``, else ``None``."""
    try:
        claims = decode_token(token)
    except Exception:  # noqa: BLE001 - every decoding failure means "not a valid token"
        return None
    if claims.get("token_type") != token_type:
        return None
    return claims


def bearer_token() -> str:
    """The token of ``Authorization: Bearer <t>`` (scheme case-insensitive), or 401."""
    header = request.headers.get("Authorization", "")
    scheme, _, token = header.partition(" ")
    token = token.strip()
    if scheme.lower() != "bearer" or not token:
        raise NotAuthenticated(MISSING_HEADER)
    return token


def _uuid_claim(claims: dict[str, Any], name: str) -> uuid.UUID:
    try:
        return uuid.UUID(str(claims.get(name)))
    except ValueError as exc:
        raise NotAuthenticated(INVALID_TOKEN) from exc


@dataclass(frozen=True)
class CurrentUser:
    """The caller of a user route: a login session (``family_id``) or a personal API key (``api_key_id``)."""

    id: uuid.UUID
    handle: str
    family_id: uuid.UUID | None = None
    api_key_id: uuid.UUID | None = None

    @property
    def is_admin(self) -> bool:
        return self.handle == "admin"

    def login_family(self) -> uuid.UUID:
        """The session family of a caller who logged in; 403 for one who came with an API key."""
        if self.family_id is None:
            raise NotPermitted(LOGIN_SESSION_REQUIRED)
        return self.family_id


@dataclass(frozen=True)
class CurrentNode:
    id: uuid.UUID
    slug: str


def _guard(admit: Callable[[str], None]) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """A view decorator: a bearer token that ``admit(token)`` lets through (it raises to refuse)."""

    def decorate(view: Callable[..., Any]) -> Callable[..., Any]:
        @functools.wraps(view)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            admit(bearer_token())
            return view(*args, **kwargs)

        return wrapper

    return decorate


def _claims(token: str, token_type: str) -> dict[str, Any]:
    claims = verify(token, token_type)
    if claims is None:
        raise NotAuthenticated(INVALID_TOKEN)
    return claims


def _admit_user(token: str) -> None:
    if api_keys.is_api_key(token):
        _admit_api_key(token)
        return
    claims = _claims(token, "access")
    user_id, family_id = _uuid_claim(claims, "user_id"), _uuid_claim(claims, "sid")
    with _cynode().db.read() as session:
        user = live_user(session, user_id, family_id)
        if user is None:
            raise NotAuthenticated(INVALID_TOKEN)
        g.current_user = CurrentUser(user.id, user.handle, family_id=family_id)


def _admit_api_key(key: str) -> None:
    # Refused exactly as a bad JWT is: the answer does not say whether the key exists.
    with _cynode().db.session() as session:
        found = api_keys.user_for_key(session, key, client_info())
        if found is None:
            raise NotAuthenticated(INVALID_TOKEN)
        g.current_user = CurrentUser(found.user.id, found.user.handle, api_key_id=found.key_id)


def _admit_node(token: str) -> None:
    claims = _claims(token, "node")
    node_id, jwt_id = _uuid_claim(claims, "node_id"), _uuid_claim(claims, "jti")
    with _cynode().db.read() as session:
        if not node_jwt_current(session, node_id, jwt_id):
            raise NotAuthenticated(INVALID_TOKEN)
    g.current_node = CurrentNode(node_id, str(claims.get("node_slug", "")))


# Let through only a valid access token of a live session of an active user, or a live API key of one.
require_user = _guard(_admit_user)
# Let through only a valid node token.
require_node = _guard(_admit_node)


def login_session_only(view: Callable[..., Any]) -> Callable[..., Any]:
    """A view decorator, below the user guard: 403 for a caller who came with an API key."""

    @functools.wraps(view)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        current_user().login_family()
        return view(*args, **kwargs)

    return wrapper


def current_user() -> CurrentUser:
    return g.current_user


def current_node() -> CurrentNode:
    return g.current_node
