"""``POST /mcp``: MCP streamable HTTP, stateless, JSON answers (cynode_core/orchestrator/api/mcp.py, mcp_rpc.py).

Raw JSON-RPC into the app on a real PostgreSQL, then the real ``mcp`` SDK
client (its streamable HTTP transport, in both connect modes) against the
app served on loopback, with a token minted through
``POST /v1/admin/agent-tokens``. The tools are the test plugin's
(``harness.mcp.GatewayTestTools``).
"""

from __future__ import annotations

import json
from typing import Any

import anyio
import httpx2
import pytest
from harness.api import ApiClient
from harness.mcp import call_tool, gateway_world, rpc, token
from harness.orchestrator import OrchestratorUnderTest, rows
from mcp import Client
from mcp.client.streamable_http import streamable_http_client

from cynode_core import __version__

LATEST = "2025-11-25"


@pytest.fixture
def world(orchestrator: OrchestratorUnderTest, api: ApiClient) -> dict[str, Any]:
    return gateway_world(orchestrator, api)


def audits(orchestrator: OrchestratorUnderTest) -> list[Any]:
    return rows(orchestrator.db, "SELECT * FROM mcp_tool_call_audit_log ORDER BY created_at, id")


def answer(resp: Any, request_id: Any = 1) -> dict[str, Any]:
    """A JSON-RPC answer: HTTP 200, JSON, no session id, the request's id."""
    assert resp.status_code == 200, resp.text
    assert resp.headers["Content-Type"] == "application/json"
    assert "Mcp-Session-Id" not in resp.headers
    body = dict(resp.json())
    assert body["jsonrpc"] == "2.0" and body["id"] == request_id, body
    return body


def error_code(resp: Any, request_id: Any = 1) -> int:
    body = answer(resp, request_id)
    assert "result" not in body
    return int(body["error"]["code"])


def test_initialize_negotiates_a_version_and_declares_tools(api: ApiClient, world: dict[str, Any]) -> None:
    pm = token(api, world)
    params = {"protocolVersion": "2025-06-18", "capabilities": {}, "clientInfo": {"name": "t", "version": "1"}}
    result = answer(rpc(api, pm, "initialize", params))["result"]
    assert result == {
        "protocolVersion": "2025-06-18",
        "capabilities": {"tools": {"listChanged": False}},
        "serverInfo": {"name": "cynode", "version": __version__},
    }
    params["protocolVersion"] = "1999-01-01"
    assert answer(rpc(api, pm, "initialize", params))["result"]["protocolVersion"] == LATEST
    assert error_code(rpc(api, pm, "initialize", {"protocolVersion": 5})) == -32602
    initialized = rpc(api, pm, "notifications/initialized", id=None)
    assert initialized.status_code == 202 and initialized.content == b""
    assert answer(rpc(api, pm, "ping", id="p-1"), "p-1")["result"] == {}


def test_tools_list_holds_what_the_role_may_call(api: ApiClient, world: dict[str, Any]) -> None:
    def listed(role: str) -> dict[str, Any]:
        tools = answer(rpc(api, token(api, world, role), "tools/list", {"cursor": "ignored"}))["result"]["tools"]
        return {tool["name"]: tool for tool in tools}

    pm, pa, sandbox = listed("pm"), listed("pa"), listed("sandbox")
    assert {"task.zz_echo", "task.zz_write", "job.zz_ids", "preference.get", "skills.get"} <= set(pm)
    assert "task.zz_bad" not in pm and "task.zz bad name" not in pm
    assert set(pm["task.zz_echo"]) == {"name", "description", "inputSchema", "annotations"}
    # MCP's readOnlyHint carries the tool's read_only: an agent may resend such a call after a transport failure.
    assert pm["task.zz_echo"]["annotations"] == {"readOnlyHint": True}
    assert pm["task.zz_write"]["annotations"] == {"readOnlyHint": False}
    assert pm["task.zz_echo"]["inputSchema"]["additionalProperties"] is False
    assert pm["task.zz_echo"]["description"] == "Echo the arguments."
    assert {"task.zz_echo", "preference.get", "skills.get"} <= set(pa)
    assert not {name for name in pa if name.startswith(("node.", "task.cancel", "task.create", "task.ready"))}
    assert "preference.get" in sandbox and not {"skills.get", "task.zz_echo"} & set(sandbox)
    assert set(sandbox) <= {"help.list", "help.get", "preference.get", "artifact.get"}


def test_tools_call_answers_the_rest_forms_result_and_problem(
    api: ApiClient, orchestrator: OrchestratorUnderTest, world: dict[str, Any]
) -> None:
    pm = token(api, world)
    ok = answer(rpc(api, pm, "tools/call", {"name": "task.zz_echo", "arguments": {"text": "hi", "x": 1}}))["result"]
    rest = call_tool(api, pm, "task.zz_echo", {"text": "hi"}).json()
    assert ok["isError"] is False and ok["structuredContent"] == rest
    assert ok["content"] == [{"type": "text", "text": json.dumps(rest)}]

    refused = answer(rpc(api, pm, "tools/call", {"name": "task.zz_echo", "arguments": {"text": ""}}))["result"]
    rest_problem = call_tool(api, pm, "task.zz_echo", {"text": ""}).json()
    assert refused["isError"] is True and refused["structuredContent"] == rest_problem
    assert refused["structuredContent"]["error_type"] == "invalid_arguments"
    assert refused["content"] == [{"type": "text", "text": "text: must not be empty"}]

    unshipped = answer(rpc(api, pm, "tools/call", {"name": "task.zz_nothing"}))["result"]
    assert unshipped["isError"] is True and unshipped["structuredContent"]["status"] == 501
    assert [(r["decision"], r["status"], r["error_type"]) for r in audits(orchestrator)] == [
        ("allow", "success", None),
        ("allow", "success", None),
        ("deny", "error", "invalid_arguments"),
        ("deny", "error", "invalid_arguments"),
        ("deny", "error", "not_implemented"),
    ]


@pytest.mark.parametrize(
    "params",
    [{}, {"name": ""}, {"name": 5}, {"name": "task.zz_echo", "arguments": '{"text": "x"}'}, {"name": "a\x00b"}],
)
def test_tools_call_with_bad_params_is_32602_and_not_audited(
    api: ApiClient, orchestrator: OrchestratorUnderTest, world: dict[str, Any], params: dict[str, Any]
) -> None:
    assert error_code(rpc(api, token(api, world), "tools/call", params)) == -32602
    assert audits(orchestrator) == []


def test_other_methods_batches_and_non_requests(api: ApiClient, world: dict[str, Any]) -> None:
    pm = token(api, world)
    for method in ("server/discover", "resources/list", "prompts/list", "logging/setLevel"):
        assert error_code(rpc(api, pm, method, id=7), 7) == -32601
    batch = api.send("POST", "/mcp", token=pm, json=[{"jsonrpc": "2.0", "id": 1, "method": "ping"}])
    assert error_code(batch, None) == -32600
    for message, request_id in (({"id": 3, "method": "ping"}, 3), ({"jsonrpc": "1.0", "id": "x"}, "x"), (5, None)):
        assert error_code(api.send("POST", "/mcp", token=pm, json=message), request_id) == -32600
    response = api.send("POST", "/mcp", token=pm, json={"jsonrpc": "2.0", "id": 9, "result": {}})
    assert response.status_code == 202


def test_http_level_refusals_come_before_json_rpc(
    api: ApiClient, orchestrator: OrchestratorUnderTest, world: dict[str, Any]
) -> None:
    pm = token(api, world)
    for bad in (None, world["alice_api"].token):
        resp = rpc(api, bad, "tools/list")
        assert resp.status_code == 401 and resp.headers["WWW-Authenticate"] == 'Bearer error="invalid_token"'
        assert resp.headers["Content-Type"].startswith("application/problem+json")
        assert resp.json()["error_type"] in ("missing_bearer", "invalid_agent_token")
    for method in ("GET", "DELETE"):
        resp = api.send(method, "/mcp", token=pm)
        assert resp.status_code == 405 and "POST" in resp.headers["Allow"]
    version = rpc(api, pm, "ping", headers={"MCP-Protocol-Version": "2099-01-01"})
    assert version.status_code == 400 and "Unsupported MCP-Protocol-Version" in version.json()["detail"]
    assert answer(rpc(api, pm, "ping", headers={"MCP-Protocol-Version": "2025-06-18"}))["result"] == {}
    assert rpc(api, pm, "ping", headers={"Accept": "text/event-stream"}).status_code == 406
    assert rpc(api, pm, "ping", headers={"Accept": "application/json, text/event-stream"}).status_code == 200
    plain = api.send("POST", "/mcp", token=pm, data=b'{"jsonrpc":"2.0","id":1,"method":"ping"}')
    assert plain.status_code == 415
    for body in (b"{", b"", b'"\\ud800"', b"[" * 100 + b"]" * 100):
        resp = api.send("POST", "/mcp", token=pm, data=body, headers={"Content-Type": "application/json"})
        assert resp.status_code == 400 and resp.json()["detail"] == "Invalid request body", body
    assert audits(orchestrator) == []


# -- the official SDK client over loopback -----------------------------------------------------


async def _session(url: str, bearer: str, mode: str) -> tuple[Any, Any, Any]:
    http = httpx2.AsyncClient(headers={"Authorization": f"Bearer {bearer}"}, timeout=30)
    async with http, Client(streamable_http_client(f"{url}/mcp", http_client=http), mode=mode) as client:
        listed = await client.list_tools()
        ok = await client.call_tool("task.zz_echo", {"text": "from the sdk", "count": 2})
        refused = await client.call_tool("task.zz_echo", {"text": "x" * 30})
    return listed, ok, refused


@pytest.mark.parametrize("mode", ["auto", "legacy"])
def test_the_mcp_sdk_client_lists_and_calls_tools(
    live_orchestrator: str, orchestrator: OrchestratorUnderTest, world: dict[str, Any], mode: str
) -> None:
    http = ApiClient(live_orchestrator)
    minted = http.post(
        "/v1/admin/agent-tokens", token=world["admin"], json={"role": "pm", "user_id": world["alice"]}
    ).json()
    listed, ok, refused = anyio.run(_session, live_orchestrator, minted["token"], mode)
    names = {tool.name for tool in listed.tools}
    assert {"task.zz_echo", "task.zz_write"} <= names and "task.zz_bad" not in names
    assert ok.is_error is False
    assert ok.structured_content == {
        "arguments": {"text": "from the sdk", "count": 2},
        "user_id": world["alice"],
        "role": "pm",
    }
    assert refused.is_error is True and refused.structured_content["error_type"] == "invalid_arguments"
    assert refused.content[0].text == "text: must be at most 20 characters"
    found = audits(orchestrator)
    assert [(r["tool_name"], r["decision"], r["status"]) for r in found] == [
        ("task.zz_echo", "allow", "success"),
        ("task.zz_echo", "deny", "error"),
    ]
    assert {str(r["subject_id"]) for r in found} == {minted["token_id"]}
