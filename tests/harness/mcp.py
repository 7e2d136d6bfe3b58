"""Agent tokens and MCP calls as the tests make them, and a plugin of test tools.

Tokens are minted by the admin over the API, calls go over HTTP.
:class:`GatewayTestTools` offers tools through the real hook
(``cynode_register_mcp_tools``): :func:`gateway_world` registers it on an
app's plugin manager before the gateway's first call builds its catalog.
Its tools are named outside the built-in catalog (``*.zz_*``), except two
that must carry names of the sandbox allowlist; registered ``tryfirst``
after the built-ins, they take precedence over a built-in of that name.
"""

from __future__ import annotations

import uuid
from typing import Any

import requests
from sqlalchemy import text

from cynode_core import hookimpl
from cynode_core.orchestrator.mcp.registry import McpTool, RegisterTool, ToolCall, ToolDenied, ToolFailed
from harness.api import ApiClient
from harness.orchestrator import USER_PASSWORD, create_users, jobs_of, rows

TOOLS_CALL = "/v1/mcp/tools/call"
AGENT_TOKENS = "/v1/admin/agent-tokens"


def user_id(db: Any, handle: str) -> str:
    return str(rows(db, "SELECT id FROM users WHERE handle = :h", h=handle)[0]["id"])


def mint(api: ApiClient, admin_token: str, user: str, role: str = "pm", **fields: Any) -> dict[str, Any]:
    """``POST /v1/admin/agent-tokens`` as the admin; the 201 body (``token``, ``token_id``, ...)."""
    resp = api.post(AGENT_TOKENS, token=admin_token, json={"role": role, "user_id": user, **fields})
    assert resp.status_code == 201, resp.text
    return dict(resp.json())


def call_tool(api: ApiClient, token: str | None, tool: str, arguments: Any = None, **kwargs: Any) -> requests.Response:
    """``POST /v1/mcp/tools/call`` (``token`` None: no bearer)."""
    body: dict[str, Any] = {"tool_name": tool}
    if arguments is not None:
        body["arguments"] = arguments
    return api.send("POST", TOOLS_CALL, token=token, json=body, **kwargs)


def rpc(api: ApiClient, token: str | None, method: str, params: Any = None, *, id: Any = 1, **kwargs: Any) -> Any:
    """One JSON-RPC message to ``POST /mcp``; the raw answer."""
    message: dict[str, Any] = {"jsonrpc": "2.0", "method": method}
    if id is not None:
        message["id"] = id
    if params is not None:
        message["params"] = params
    return api.send("POST", "/mcp", token=token, json=message, **kwargs)


# -- the test plugin's tools ------------------------------------------------------------------

UUID_SCHEMA = {"type": "string", "minLength": 36, "maxLength": 36, "pattern": "^[0-9a-fA-F-]{36}$"}


def _object(properties: dict[str, Any], *required: str) -> dict[str, Any]:
    return {"type": "object", "properties": properties, "required": list(required), "additionalProperties": False}


ECHO_SCHEMA = _object(
    {
        "text": {"type": "string", "minLength": 1, "maxLength": 20},
        "count": {"type": "integer", "minimum": 1, "maximum": 5},
        "flag": {"type": "boolean"},
        "mode": {"type": "string", "enum": ["a", "b"]},
        "tags": {"type": "array", "items": {"type": "string", "maxLength": 5}, "maxItems": 2},
        "user_id": UUID_SCHEMA,
        "task_id": UUID_SCHEMA,
        "job_id": UUID_SCHEMA,
    },
    "text",
)


def echo(call: ToolCall, arguments: dict[str, Any]) -> dict[str, Any]:
    return {"arguments": arguments, "user_id": str(call.principal.user_id), "role": call.principal.role}


def write_project(call: ToolCall, arguments: dict[str, Any]) -> dict[str, Any]:
    """Creates a project (a database effect), then fails when asked to: the effect must not stay."""
    project_id = uuid.uuid4()
    call.session.execute(
        text("INSERT INTO projects (id, slug, display_name) VALUES (:id, :slug, 'zz')"),
        {"id": project_id, "slug": arguments["slug"]},
    )
    call.project_id = project_id
    if arguments.get("fail"):
        raise ToolFailed(409, "conflict", "the tool refused after writing")
    return {"project_id": str(project_id)}


def deny(call: ToolCall, arguments: dict[str, Any]) -> dict[str, Any]:
    call.task_id = uuid.UUID(arguments["task_id"])
    if arguments.get("status") == 403:
        raise ToolDenied(403, "scope_mismatch", "not yours")
    raise ToolDenied(404, "scope_mismatch", "this task belongs to someone else")


def crash(call: ToolCall, arguments: dict[str, Any]) -> dict[str, Any]:
    raise RuntimeError("a bug in a tool")


def not_an_object(call: ToolCall, arguments: dict[str, Any]) -> Any:
    return ["not", "an", "object"]


TEST_TOOLS = [
    McpTool("task.zz_echo", "Echo the arguments.", ECHO_SCHEMA, echo),
    McpTool(
        "task.zz_write",
        "Write a project; fail when asked to.",
        _object({"slug": {"type": "string", "maxLength": 50}, "fail": {"type": "boolean"}}, "slug"),
        write_project,
        read_only=False,
    ),
    McpTool(
        "task.zz_deny",
        "Refuse as scoping does.",
        _object({"task_id": UUID_SCHEMA, "status": {"type": "integer", "minimum": 400, "maximum": 599}}, "task_id"),
        deny,
    ),
    McpTool("task.zz_crash", "Fail with a bug.", _object({}), crash),
    McpTool("task.zz_list", "Answer a list.", _object({}), not_an_object),
    McpTool(
        "job.zz_ids", "Need ids.", _object({"task_id": UUID_SCHEMA, "job_id": UUID_SCHEMA}, "task_id", "job_id"), echo
    ),
    # The sandbox allowlist names exact tools; these test tools borrow two of its names.
    McpTool(
        "preference.get", "A tool for every role.", _object({"key": {"type": "string", "maxLength": 10}}), echo, "both"
    ),
    McpTool("skills.get", "A pm-scoped tool a sandbox's allowlist names.", _object({}), echo, "pm"),
    # Refused at registration: a free string without maxLength, a name MCP does not allow, a repeat.
    McpTool("task.zz_bad", "Bad schema.", _object({"text": {"type": "string"}}), echo),
    McpTool("task.zz bad name", "Bad name.", _object({}), echo),
    McpTool("task.zz_echo", "Registered again.", _object({}), crash),
]


class GatewayTestTools:
    @hookimpl(tryfirst=True)
    def cynode_register_mcp_tools(self, register: RegisterTool) -> None:
        for tool in TEST_TOOLS:
            register(tool)


# -- a world to call tools in ------------------------------------------------------------------


def gateway_world(orchestrator: Any, api: ApiClient) -> dict[str, Any]:
    """The test tools registered; alice (with a task and its job) and bob; the admin's access token."""
    orchestrator.app.extensions["cynode"].pm.register(GatewayTestTools(), name="mcp-gateway-test-tools")
    create_users(orchestrator.db, "alice", "bob")
    alice = ApiClient.in_process(orchestrator.app)
    alice.login("alice", USER_PASSWORD, expect=200)
    task = alice.create_command("echo hi")
    admin = api.login("admin", orchestrator.secrets.admin_password, expect=200).json()["access_token"]
    return {
        "alice": user_id(orchestrator.db, "alice"),
        "bob": user_id(orchestrator.db, "bob"),
        "task": task,
        "job": str(jobs_of(orchestrator.db, task)[0]["id"]),
        "admin": admin,
        "alice_api": alice,
    }


def token(api: ApiClient, world: dict[str, Any], role: str = "pm", who: str = "alice", **binding: Any) -> str:
    """A new token of ``who`` in ``role`` (a sandbox token is bound to alice's task)."""
    if role == "sandbox":
        binding.setdefault("task_id", world["task"])
    return str(mint(api, world["admin"], world[who], role, **binding)["token"])
