"""The MCP tool gateway's two routes: ``POST /v1/mcp/tools/call`` and ``POST /mcp`` (mcp_contract.md 2).

Both take only agent tokens (``Authorization: Bearer cyat_...``): a user's
access token, an API key or a node token is 401 ``invalid_agent_token``
here. Both run the same pipeline (``mcp.pipeline``). Errors are problem
details with two more members, ``error`` (the detail again, for
upstream-shaped clients) and ``error_type`` (the audit's value); a 401
carries ``WWW-Authenticate: Bearer error="invalid_token"``. On ``/mcp`` a
tool call's refusal is an ``isError`` result holding that same object,
while what comes before JSON-RPC (the token, the protocol version header,
``Accept``, the body) is answered as on the REST form.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import marshmallow as ma
from flask import Response, request
from flask.views import MethodView
from marshmallow import fields, validate

from cynode_core.http_limits import decode_json_body
from cynode_core.http_problems import PROBLEM_CONTENT_TYPE, problem_body, problem_response
from cynode_core.logs import current_request_id
from cynode_core.orchestrator.api import BEARER, Blueprint
from cynode_core.orchestrator.api.http import app_extension, is_json_mimetype
from cynode_core.orchestrator.api.mcp_rpc import SUPPORTED_VERSIONS, McpRpc, has_control_characters
from cynode_core.orchestrator.api.schemas_common import ProblemSchema, RequestSchema
from cynode_core.orchestrator.mcp.pipeline import Gateway, Refusal
from cynode_core.orchestrator.services.agent_tokens import Principal

blp = Blueprint(
    "mcp",
    __name__,
    description="The MCP tool gateway, for agents with an agent token: the REST form (upstream's) and `POST /mcp` "
    "(MCP streamable HTTP, stateless, JSON answers only)",
)

PROTOCOL_VERSION_HEADER = "MCP-Protocol-Version"
CHALLENGE = 'Bearer error="invalid_token"'
NOT_IMPLEMENTED_TYPE = "urn:cynodeai:error:not_implemented"
INVALID_BODY = "Invalid request body"

_CALL_ERRORS = {
    400: "`Invalid request body`, or `invalid_arguments`",
    401: "`missing_bearer` or `invalid_agent_token`",
    403: "`agent_allowlist_denied`, `tool_disabled` or `scope_mismatch`",
    404: "`legacy_tool_name_removed`, or `not_found`",
    409: "`conflict`",
    413: "Body over the cap, or `too_large`",
    415: "Body is not JSON",
    429: "`rate_limited`, with `Retry-After`",
    500: "`internal_error`",
    501: "`not_implemented`: no such tool is shipped",
    503: "`service_unavailable`",
}


def gateway() -> Gateway:
    """This app's gateway; its catalog is built on first use."""
    return app_extension("cynode_mcp", Gateway)  # type: ignore[no-any-return]


def problem_of(refusal: Refusal) -> dict[str, Any]:
    """The problem object of a refusal (mcp_contract.md 9)."""
    extra: dict[str, Any] = {"error": refusal.detail, "error_type": refusal.error_type}
    if refusal.status == 501:
        extra["type"] = NOT_IMPLEMENTED_TYPE
    if refusal.errors:
        extra["errors"] = dict(refusal.errors)
    return problem_body(refusal.status, refusal.detail, **extra)


def refusal_response(refusal: Refusal) -> Response:
    response = Response(json.dumps(problem_of(refusal)) + "\n", status=refusal.status, mimetype=PROBLEM_CONTENT_TYPE)
    if refusal.status == 401:
        response.headers["WWW-Authenticate"] = CHALLENGE
    if refusal.retry_after is not None:
        response.headers["Retry-After"] = str(refusal.retry_after)
    return response


def _bearer() -> str | None:
    scheme, _, token = request.headers.get("Authorization", "").partition(" ")
    return token.strip() if scheme.lower() == "bearer" and token.strip() else None


def _authenticated() -> Principal | Response:
    found = gateway().authenticate(_bearer())
    return refusal_response(found) if isinstance(found, Refusal) else found


def _json_answer(body: Any, status: int = 200) -> Response:
    return Response(json.dumps(body), status=status, mimetype="application/json")


def _no_control_characters(value: str) -> None:
    if has_control_characters(value):
        raise ma.ValidationError("Must not hold control characters.")


class ToolCallSchema(RequestSchema):
    tool_name = fields.String(
        required=True,
        validate=[validate.Length(min=1), _no_control_characters],
        metadata={"example": "task.get", "description": "a tool of the catalog"},
    )
    arguments = fields.Dict(
        load_default=None,
        allow_none=True,
        metadata={"description": "the tool's arguments (absent or `null`: none); a JSON string is refused"},
    )


class ToolResultSchema(ma.Schema):
    """The tool's result object, as the tool answers it."""


class McpProblemSchema(ProblemSchema):
    """Problem details with the gateway's two extension members (mcp_contract.md 9)."""

    error = fields.String(metadata={"description": "the detail again, for upstream-shaped clients"})
    error_type = fields.String(metadata={"description": "the audit's value, e.g. `agent_allowlist_denied`"})


def _operation(status: int, schema: Any, errors: dict[int, str]) -> Callable[[Any], Any]:
    """A view's success answer and its problem answers, documented with :class:`McpProblemSchema`."""

    def decorate(view: Any) -> Any:
        for code in sorted(errors, reverse=True):
            view = blp.alt_response(
                code, description=errors[code], schema=McpProblemSchema, content_type=PROBLEM_CONTENT_TYPE
            )(view)
        return blp.doc(security=BEARER)(blp.response(status, schema)(view))

    return decorate


@blp.route("/v1/mcp/tools/call")
class ToolCallView(MethodView):
    @_operation(200, ToolResultSchema, _CALL_ERRORS)
    @blp.arguments(ToolCallSchema)
    def post(self, body: dict[str, Any]) -> Response:
        """Call one tool with an agent token (upstream's REST form)."""
        principal = _authenticated()
        if isinstance(principal, Response):
            return principal
        outcome = gateway().call(principal, body["tool_name"], body["arguments"] or {}, current_request_id())
        if outcome.refusal is not None:
            return refusal_response(outcome.refusal)
        return Response(outcome.text, mimetype="application/json")


_RPC_MESSAGE = {
    "type": "object",
    "required": ["jsonrpc", "method"],
    "properties": {
        "jsonrpc": {"type": "string", "enum": ["2.0"]},
        "id": {"oneOf": [{"type": "string"}, {"type": "integer"}]},
        "method": {"type": "string", "example": "tools/list"},
        "params": {"type": "object"},
    },
}
_RPC_ANSWER = {
    "type": "object",
    "required": ["jsonrpc"],
    "properties": {
        "jsonrpc": {"type": "string", "enum": ["2.0"]},
        "id": {"nullable": True, "oneOf": [{"type": "string"}, {"type": "integer"}]},
        "result": {"type": "object"},
        "error": {"type": "object", "properties": {"code": {"type": "integer"}, "message": {"type": "string"}}},
    },
}
_RPC_DOC = {
    "requestBody": {"required": True, "content": {"application/json": {"schema": _RPC_MESSAGE}}},
    "responses": {
        "200": {
            "description": "The JSON-RPC answer: a `result`, or an `error` (-32600 a batch or not JSON-RPC, "
            "-32601 another method, -32602 bad params); a tool's refusal is a result with `isError: true`",
            "content": {"application/json": {"schema": _RPC_ANSWER}},
        },
        "202": {"description": "A notification (or a response) was received; no body"},
    },
}


@blp.route("/mcp")
class McpEndpoint(MethodView):
    @_operation(
        200,
        None,
        {
            400: f"`{INVALID_BODY}`, or an `{PROTOCOL_VERSION_HEADER}` this server does not speak",
            401: "`missing_bearer` or `invalid_agent_token`, before any JSON-RPC",
            406: "`Accept` does not allow `application/json`",
            413: "Body over the cap",
            415: "Body is not JSON",
        },
    )
    @blp.doc(**_RPC_DOC)
    def post(self) -> Response:
        """One JSON-RPC 2.0 message of MCP: `initialize`, `ping`, `tools/list`, `tools/call` (a JSON-RPC answer)."""
        principal = _authenticated()
        if isinstance(principal, Response):
            return principal
        refused = _refused_transport()
        if refused is not None:
            return refused
        try:
            message = decode_json_body(request.get_data(cache=False))
        except ValueError:
            return problem_response(400, INVALID_BODY)
        answer = McpRpc(gateway(), principal, problem_of, current_request_id()).answer(message)
        return Response(status=202) if answer is None else _json_answer(answer)


def _refused_transport() -> Response | None:
    """What the streamable HTTP transport refuses before the body is read: version, ``Accept``, content type."""
    version = request.headers.get(PROTOCOL_VERSION_HEADER)
    if version is not None and version.strip() not in SUPPORTED_VERSIONS:
        return problem_response(
            400, f"Unsupported {PROTOCOL_VERSION_HEADER} (supported: {', '.join(SUPPORTED_VERSIONS)})"
        )
    accept = request.accept_mimetypes
    if accept and accept.quality("application/json") <= 0:
        return problem_response(406, "Accept must allow application/json")
    if not request.mimetype or not is_json_mimetype(request.mimetype):
        return problem_response(415, "Request body must be JSON (Content-Type: application/json)")
    return None
