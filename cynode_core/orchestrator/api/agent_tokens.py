"""``/v1/admin/agent-tokens*``: an administrator mints and revokes agent tokens (mcp_contract.md 3.2).

How tests and operators get a token of each role for the MCP gateway. The
token is shown once, in the create answer. Both routes are the admin's
alone (403 otherwise) and audited in ``auth_audit_log``.
"""

from __future__ import annotations

import uuid
from typing import Any

from flask import Response, current_app
from flask.views import MethodView
from marshmallow import fields, validate

from cynode_core.contract.errors import NotFound, NotPermitted
from cynode_core.orchestrator.api import Blueprint
from cynode_core.orchestrator.api.http import client_info
from cynode_core.orchestrator.api.schemas_common import OmitEmptySchema, RequestSchema, Timestamp
from cynode_core.orchestrator.api.tokens import current_user
from cynode_core.orchestrator.models.agents import AGENT_ROLES, INVOCATION_CLASSES
from cynode_core.orchestrator.services import agent_tokens
from cynode_core.orchestrator.services.agent_tokens import TTL_DEFAULT, TTL_MAX, TTL_MIN, Binding, TokenRequest

blp = Blueprint(
    "agent_tokens",
    __name__,
    url_prefix="/v1/admin/agent-tokens",
    description="Agent tokens for the MCP gateway, minted and revoked by the admin",
)

ADMIN_REQUIRED = "Admin required"


def _optional_id(description: str) -> fields.UUID:
    return fields.UUID(load_default=None, allow_none=True, metadata={"description": description})


class CreateAgentTokenSchema(RequestSchema):
    role = fields.String(required=True, validate=validate.OneOf(AGENT_ROLES), metadata={"example": "pm"})
    user_id = fields.UUID(required=True, metadata={"description": "an active user (not `system`)"})
    project_id = _optional_id("a project of the user")
    task_id = _optional_id("a task of the user (required for `sandbox`)")
    job_id = _optional_id("a job of that task")
    thread_id = _optional_id("a chat thread of the user")
    invocation_class = fields.String(
        load_default=None,
        allow_none=True,
        validate=validate.OneOf(INVOCATION_CLASSES),
        metadata={"description": "`pm` tokens only; default `orchestrator_initiated`"},
    )
    ttl_seconds = fields.Integer(
        strict=True,
        load_default=TTL_DEFAULT,
        metadata={"minimum": TTL_MIN, "maximum": TTL_MAX, "description": "lifetime in seconds"},
    )


class CreatedAgentTokenSchema(OmitEmptySchema):
    token = fields.String(required=True, metadata={"description": "`cyat_...`; shown only here"})
    token_id = fields.UUID(required=True)
    role = fields.String(required=True)
    user_id = fields.UUID(required=True)
    expires_at = Timestamp(required=True)


def _admin() -> str:
    """The admin's handle; 403 for anyone else."""
    user = current_user()
    if not user.is_admin:
        raise NotPermitted(ADMIN_REQUIRED)
    return f"admin:{user.handle}"


@blp.route("")
class AgentTokens(MethodView):
    @blp.operation(
        201,
        CreatedAgentTokenSchema,
        errors={400: "Malformed body, or a binding that breaks a rule", 403: "Caller is not the admin"},
        bearer="user",
    )
    @blp.arguments(CreateAgentTokenSchema)
    def post(self, body: dict[str, Any]) -> Any:
        """Mint an agent token of any role for a user (the answer is the only time it is shown)."""
        issued_by = _admin()
        binding = Binding(
            body["project_id"], body["thread_id"], body["task_id"], body["job_id"], body["invocation_class"]
        )
        request = TokenRequest(body["role"], body["user_id"], binding, body["ttl_seconds"])
        with current_app.extensions["cynode"].db.session() as session:
            minted = agent_tokens.issue(session, request, issued_by, client_info())
            row = minted.row
            return {
                "token": minted.token,
                "token_id": row.id,
                "role": row.role,
                "user_id": row.user_id,
                "expires_at": row.expires_at,
            }, 201


@blp.route("/<string:token_id>")
class AgentTokenItem(MethodView):
    @blp.operation(204, errors={403: "Caller is not the admin", 404: "No such agent token"}, bearer="user")
    def delete(self, token_id: str) -> Response:
        """Revoke an agent token at once (revoking a revoked one changes nothing)."""
        revoked_by = _admin()
        try:
            tid = uuid.UUID(token_id)
        except ValueError as exc:
            raise NotFound("No such agent token") from exc
        with current_app.extensions["cynode"].db.session() as session:
            agent_tokens.revoke_issued(session, tid, revoked_by, client_info())
        return Response(status=204)
