"""``/v1/auth/*``: login, refresh, logout (docs/wire_contract.md#gateway-auth)."""

from __future__ import annotations

from typing import Any

import marshmallow as ma
from flask import Response, current_app
from flask.views import MethodView
from marshmallow import fields

from cynode_core.contract import Identity
from cynode_core.contract.errors import InvalidInput
from cynode_core.orchestrator.api import Blueprint
from cynode_core.orchestrator.api.http import client_info, per_source_limit
from cynode_core.orchestrator.api.schemas_common import RequestSchema
from cynode_core.orchestrator.api.tokens import FlaskTokenIssuer, current_user, login_session_only, verify
from cynode_core.orchestrator.services import auth

blp = Blueprint("auth", __name__, url_prefix="/v1/auth", description="User login, token refresh and logout")


class LoginSchema(RequestSchema):
    handle = fields.String(load_default="", metadata={"example": "admin"})
    password = fields.String(load_default="", metadata={"example": "s3cret-pass"})


class RefreshSchema(RequestSchema):
    refresh_token = fields.String(load_default="")


class LogoutSchema(RequestSchema):
    refresh_token = fields.String(load_default=None, allow_none=True)


class TokenPairSchema(ma.Schema):
    access_token = fields.String(required=True)
    refresh_token = fields.String(required=True)
    token_type = fields.String(required=True, metadata={"example": "Bearer"})
    expires_in = fields.Integer(required=True, metadata={"example": 900})


def _state():  # type: ignore[no-untyped-def]
    return current_app.extensions["cynode"]


def _pair_body(pair: auth.IssuedPair) -> dict[str, Any]:
    return {
        "access_token": pair.access_token,
        "refresh_token": pair.refresh_token,
        "token_type": "Bearer",
        "expires_in": int(_state().settings.access_token_ttl),
    }


def _authenticate(handle: str, password: str) -> Identity | None:
    """The ``cynode_authenticate`` plugins' answer, on the password check pool (503 when it is full)."""
    state = _state()
    return state.password_checks.run(lambda: state.pm.hook.cynode_authenticate(handle=handle, password=password))


@blp.route("/login")
class Login(MethodView):
    @blp.operation(
        200,
        TokenPairSchema,
        errors={
            400: "Malformed body or missing handle/password",
            401: "Invalid credentials",
            429: "Too many attempts for this address or user",
            503: "Too many logins waiting for a password check (see Retry-After)",
        },
    )
    @per_source_limit(auth.check_login_source)
    @blp.arguments(LoginSchema)
    def post(self, body: dict[str, str]) -> dict[str, Any]:
        """Log in with a handle and password."""
        if not body["handle"] or not body["password"]:
            raise InvalidInput("Handle and password are required")
        state = _state()
        with state.db.session() as session:
            pair = auth.login(
                session,
                _authenticate,
                state.settings,
                FlaskTokenIssuer(),
                body["handle"],
                body["password"],
                client_info(),
            )
        return _pair_body(pair)


@blp.route("/refresh")
class Refresh(MethodView):
    @blp.operation(
        200,
        TokenPairSchema,
        errors={
            400: "Malformed body or no refresh token",
            401: "Invalid, expired, rotated or revoked refresh token",
            429: "Too many refresh attempts from this address",
        },
    )
    @per_source_limit(auth.check_refresh_source)
    @blp.arguments(RefreshSchema)
    def post(self, body: dict[str, str]) -> dict[str, Any]:
        """Exchange a refresh token for a new pair (the old one stops working)."""
        token = body["refresh_token"]
        if not token:
            raise InvalidInput("Refresh token is required")
        state = _state()
        with state.db.session() as session:
            pair = auth.refresh(session, FlaskTokenIssuer(), token, verify(token, "refresh"), client_info())
        return _pair_body(pair)


@blp.route("/logout")
class Logout(MethodView):
    @blp.operation(
        204, errors={400: "Malformed body", 403: "Called with an API key (revoke the key instead)"}, bearer="user"
    )
    @login_session_only
    @blp.arguments(LogoutSchema)
    def post(self, body: dict[str, str | None]) -> Response:
        """End the session of this access token (and of the given refresh token)."""
        user = current_user()
        with _state().db.session() as session:
            auth.logout(session, user.id, user.login_family(), body.get("refresh_token"), client_info())
        return Response(status=204)
