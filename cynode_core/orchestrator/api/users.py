"""``/v1/users/*``: the caller's record and admin session revocation (docs/wire_contract.md#users)."""

from __future__ import annotations

import uuid
from typing import Any

from flask import Response, current_app
from flask.views import MethodView
from marshmallow import fields

from cynode_core.contract.errors import InvalidInput, NotFound, NotPermitted
from cynode_core.orchestrator.api import Blueprint
from cynode_core.orchestrator.api.schemas_common import OmitEmptySchema
from cynode_core.orchestrator.api.tokens import current_user
from cynode_core.orchestrator.models import User
from cynode_core.orchestrator.services import accounts

blp = Blueprint("users", __name__, url_prefix="/v1/users", description="Users")


class UserSchema(OmitEmptySchema):
    id = fields.UUID(required=True)
    handle = fields.String(required=True)
    email = fields.String()
    is_active = fields.Boolean(required=True)


@blp.route("/me")
class Me(MethodView):
    @blp.operation(200, UserSchema, bearer="user")
    def get(self) -> Any:
        """The logged-in user."""
        with current_app.extensions["cynode"].db.session() as session:
            return session.get(User, current_user().id)


@blp.route("/<string:user_id>/revoke_sessions")
class RevokeSessions(MethodView):
    @blp.operation(
        204, errors={400: "Not a user id", 403: "Caller is not the admin", 404: "No such user"}, bearer="user"
    )
    def post(self, user_id: str) -> Response:
        """End every session of a user (admin only)."""
        if not current_user().is_admin:
            raise NotPermitted("Admin required")
        try:
            uid = uuid.UUID(user_id)
        except ValueError as exc:
            raise InvalidInput("invalid user id") from exc
        with current_app.extensions["cynode"].db.session() as session:
            if session.get(User, uid) is None:
                raise NotFound("User not found")
            accounts.revoke_sessions(session, uid, reason=f"revoked by {current_user().handle}")
        return Response(status=204)
