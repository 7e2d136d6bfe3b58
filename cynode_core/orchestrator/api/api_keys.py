"""``/v1/auth/api-keys*``: a user's personal API keys: create, list, revoke (docs/wire_contract.md#api-keys).

Managing keys takes a login session: a caller who came with an API key gets
403, so a leaked key cannot make itself a successor.
"""

from __future__ import annotations

import uuid
from typing import Any

import marshmallow as ma
from flask import Response, current_app
from flask.views import MethodView
from marshmallow import fields

from cynode_core.contract.errors import NotFound
from cynode_core.orchestrator.api import Blueprint
from cynode_core.orchestrator.api.http import client_info
from cynode_core.orchestrator.api.schemas_common import OmitEmptySchema, RequestSchema, Timestamp
from cynode_core.orchestrator.api.tokens import current_user, login_session_only
from cynode_core.orchestrator.models import ApiKey
from cynode_core.orchestrator.services import api_keys

blp = Blueprint(
    "api_keys",
    __name__,
    url_prefix="/v1/auth/api-keys",
    description="Personal API keys: static bearer keys for clients that cannot log in",
)

API_KEY_ONLY = "Called with an API key (keys are managed with a login session)"


class CreateApiKeySchema(RequestSchema):
    name = fields.String(
        load_default="",
        metadata={"example": "my editor", "description": f"1 to {api_keys.NAME_MAX_CHARS} characters"},
    )
    expires_in_days = fields.Integer(
        strict=True,
        load_default=None,
        allow_none=True,
        metadata={
            "example": 30,
            "minimum": 1,
            "maximum": api_keys.EXPIRES_MAX_DAYS,
            "description": "days until the key stops working; absent: never",
        },
    )


class ApiKeySchema(OmitEmptySchema):
    id = fields.UUID(required=True)
    name = fields.String(required=True)
    prefix = fields.String(required=True, metadata={"description": "the key's first 12 characters"})
    created_at = Timestamp(required=True)
    expires_at = Timestamp()
    last_used_at = Timestamp(metadata={"description": "moves at most once a minute"})
    revoked_at = Timestamp()


class CreatedApiKeySchema(OmitEmptySchema):
    id = fields.UUID(required=True)
    name = fields.String(required=True)
    key = fields.String(
        required=True, metadata={"description": "the key, sent as `Authorization: Bearer <key>`; shown only here"}
    )
    prefix = fields.String(required=True)
    created_at = Timestamp(required=True)
    expires_at = Timestamp()


class ApiKeyListSchema(ma.Schema):
    data = fields.List(fields.Nested(ApiKeySchema), required=True)


def _state():  # type: ignore[no-untyped-def]
    return current_app.extensions["cynode"]


@blp.route("")
class ApiKeys(MethodView):
    @blp.operation(
        201,
        CreatedApiKeySchema,
        errors={
            400: "Malformed body, bad name or bad expires_in_days",
            403: API_KEY_ONLY,
            409: f"Already {api_keys.MAX_LIVE_KEYS} live keys",
        },
        bearer="user",
    )
    @login_session_only
    @blp.arguments(CreateApiKeySchema)
    def post(self, body: dict[str, Any]) -> Any:
        """Make a key; the answer is the only time the key is shown."""
        with _state().db.session() as session:
            new = api_keys.create(session, current_user().id, body["name"], body["expires_in_days"], client_info())
            row = new.row
            return {
                "id": row.id,
                "name": row.name,
                "key": new.key,
                "prefix": row.prefix,
                "created_at": row.created_at,
                "expires_at": row.expires_at,
            }, 201

    @blp.operation(200, ApiKeyListSchema, errors={403: API_KEY_ONLY}, bearer="user")
    @login_session_only
    def get(self) -> Any:
        """My keys, newest first, revoked and expired ones included (never the keys themselves)."""
        with _state().db.session() as session:
            keys: list[ApiKey] = api_keys.list_keys(session, current_user().id)
            return {"data": keys}


@blp.route("/<string:key_id>")
class ApiKeyItem(MethodView):
    @blp.operation(204, errors={403: API_KEY_ONLY, 404: "No such key (or not yours)"}, bearer="user")
    @login_session_only
    def delete(self, key_id: str) -> Response:
        """Revoke a key at once (revoking a revoked key changes nothing)."""
        try:
            kid = uuid.UUID(key_id)
        except ValueError as exc:
            raise NotFound("No such API key") from exc
        with _state().db.session() as session:
            api_keys.revoke(session, current_user().id, kid, client_info())
        return Response(status=204)
