"""``POST /mcp``'s JSON-RPC 2.0 messages (mcp_contract.md 2.2), decoded and encoded with the SDK's ``mcp.types``.

Stateless: no session id is issued and ``initialize`` only negotiates the
protocol version; every request carries its agent token. One message per
request: a batch is -32600. ``initialize``, ``ping``, ``tools/list`` and
``tools/call`` are answered; any other method (a ``server/discover`` probe
included) is -32601, so a client falls back to the ``initialize``
handshake. A tool call runs the gateway's pipeline exactly as the REST
form does; a refusal or failure is an ``isError`` result whose
``structuredContent`` is the REST form's problem object.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import mcp.types as types
from mcp.types.version import HANDSHAKE_PROTOCOL_VERSIONS, LATEST_HANDSHAKE_VERSION
from pydantic import BaseModel, ValidationError

from cynode_core import __version__
from cynode_core.orchestrator.mcp.pipeline import Gateway, Outcome, Refusal
from cynode_core.orchestrator.services.agent_tokens import Principal

SUPPORTED_VERSIONS = HANDSHAKE_PROTOCOL_VERSIONS
SERVER_NAME = "cynode"

Problem = Callable[[Refusal], dict[str, Any]]


def _dump(model: BaseModel) -> dict[str, Any]:
    return model.model_dump(mode="json", by_alias=True, exclude_unset=True, exclude_none=True)


def _error(request_id: Any, code: int, message: str) -> dict[str, Any]:
    error = types.JSONRPCError(jsonrpc="2.0", id=request_id, error=types.ErrorData(code=code, message=message))
    return error.model_dump(mode="json", by_alias=True, exclude_unset=True)


def _id_of(message: Any) -> Any:
    """The id of a message that is not valid JSON-RPC, when it has a usable one (else null)."""
    found = message.get("id") if isinstance(message, dict) else None
    return found if isinstance(found, str) or (isinstance(found, int) and not isinstance(found, bool)) else None


def has_control_characters(text: str) -> bool:
    """Whether a tool name holds a control character (NUL included), which no tool name has."""
    return any(ord(c) < 0x20 or 0x7F <= ord(c) < 0xA0 for c in text)


class McpRpc:
    """The answers of one authenticated principal's messages."""

    def __init__(self, gateway: Gateway, principal: Principal, problem: Problem, request_id: str | None) -> None:
        self.gateway, self.principal, self.problem, self.request_id = gateway, principal, problem, request_id

    def answer(self, message: Any) -> dict[str, Any] | None:
        """The JSON-RPC answer to ``message``; ``None`` for a notification or a response (HTTP 202)."""
        if isinstance(message, list):
            return _error(None, types.INVALID_REQUEST, "batches are not supported")
        try:
            parsed = types.jsonrpc_message_adapter.validate_python(message, by_name=False)
        except ValidationError:
            return _error(_id_of(message), types.INVALID_REQUEST, "not a JSON-RPC 2.0 request")
        if not isinstance(parsed, types.JSONRPCRequest):
            return None
        methods: dict[str, Callable[[dict[str, Any]], BaseModel]] = {
            "initialize": self._initialize,
            "ping": lambda _params: types.EmptyResult(),
            "tools/list": self._list_tools,
            "tools/call": self._call_tool,
        }
        method = methods.get(parsed.method)
        if method is None:
            return _error(parsed.id, types.METHOD_NOT_FOUND, f"method not found: {parsed.method[:100]}")
        try:
            result = method(parsed.params or {})
        except (ValidationError, ValueError) as exc:
            return _error(parsed.id, types.INVALID_PARAMS, _params_message(exc))
        return types.JSONRPCResponse(jsonrpc="2.0", id=parsed.id, result=_dump(result)).model_dump(
            mode="json", by_alias=True
        )

    def _initialize(self, params: dict[str, Any]) -> BaseModel:
        asked = types.InitializeRequestParams.model_validate(params).protocol_version
        return types.InitializeResult(
            protocol_version=asked if asked in SUPPORTED_VERSIONS else LATEST_HANDSHAKE_VERSION,
            capabilities=types.ServerCapabilities(tools=types.ToolsCapability(list_changed=False)),
            server_info=types.Implementation(name=SERVER_NAME, version=__version__),
        )

    def _list_tools(self, _params: dict[str, Any]) -> BaseModel:
        listed = [
            types.Tool(
                name=t.name,
                description=t.description,
                input_schema=dict(t.input_schema),
                annotations=types.ToolAnnotations(read_only_hint=t.read_only),
            )
            for t in self.gateway.tools_for(self.principal)
        ]
        return types.ListToolsResult(tools=listed)

    def _call_tool(self, params: dict[str, Any]) -> BaseModel:
        asked = types.CallToolRequestParams.model_validate(params)
        if not asked.name or has_control_characters(asked.name):
            raise ValueError("name must be a non-empty tool name")
        outcome = self.gateway.call(self.principal, asked.name, asked.arguments or {}, self.request_id)
        return self._result(outcome)

    def _result(self, outcome: Outcome) -> types.CallToolResult:
        if outcome.refusal is None:
            text, structured = outcome.text, outcome.result
        else:
            structured = self.problem(outcome.refusal)
            text = outcome.refusal.detail
        return types.CallToolResult(
            content=[types.TextContent(type="text", text=text)],
            structured_content=structured,
            is_error=outcome.refusal is not None,
        )


def _params_message(exc: Exception) -> str:
    if isinstance(exc, ValidationError):
        errors = exc.errors(include_input=False)
        if not errors:
            return "invalid params"
        where = ".".join(str(part) for part in errors[0]["loc"])
        return f"invalid params: {where}: {errors[0]['msg']}"
    return f"invalid params: {exc}"
