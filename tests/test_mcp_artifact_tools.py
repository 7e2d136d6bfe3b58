"""The MCP artifact tools in the app on a real PostgreSQL: ``artifact.put``, ``.get``, ``.list`` (mcp_contract.md 6, 7).

They act as the token's user through the artifact service: a PM token
writes and reads alice's files, another user's are not found, a sandbox
token reaches only its task's project and its user's files and records its
job, content over 4 MiB is 413; every call is audited.
"""

from __future__ import annotations

import base64
import hashlib
from typing import Any

import pytest
from harness.api import ApiClient
from harness.mcp import call_tool, gateway_world, token
from harness.orchestrator import OrchestratorUnderTest, rows


@pytest.fixture
def world(orchestrator: OrchestratorUnderTest, api: ApiClient) -> dict[str, Any]:
    return gateway_world(orchestrator, api)


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def test_put_get_and_list_as_the_tokens_user(
    api: ApiClient, world: dict[str, Any], orchestrator: OrchestratorUnderTest
) -> None:
    pm = token(api, world)
    put = call_tool(
        api,
        pm,
        "artifact.put",
        {"scope": "user", "path": "notes/a.md", "content_bytes_base64": b64(b"# a\n"), "content_type": "text/markdown"},
    )
    assert put.status_code == 200, put.text
    made = put.json()
    assert (made["status"], made["path"], made["scope_level"], made["size_bytes"]) == (
        "success",
        "notes/a.md",
        "user",
        4,
    )
    again = call_tool(
        api, pm, "artifact.put", {"scope": "user", "path": "notes/a.md", "content_bytes_base64": b64(b"# a, v2\n")}
    )
    assert again.json()["artifact_id"] == made["artifact_id"]  # upsert by scope and path
    got = call_tool(api, pm, "artifact.get", {"scope": "user", "path": "/notes//a.md"})
    assert got.status_code == 200, got.text
    body = got.json()
    assert base64.b64decode(body["content_bytes_base64"]) == b"# a, v2\n"
    assert body["checksum_sha256"] == hashlib.sha256(b"# a, v2\n").hexdigest()
    listed = call_tool(api, pm, "artifact.list", {"scope": "user"}).json()
    assert [a["path"] for a in listed["artifacts"]] == ["notes/a.md"]
    bob = token(api, world, who="bob")
    assert call_tool(api, bob, "artifact.get", {"scope": "user", "path": "notes/a.md"}).status_code == 404
    refused = call_tool(api, bob, "artifact.list", {"scope": "user", "user_id": world["alice"]})
    assert refused.status_code == 403 and refused.json()["error_type"] == "scope_mismatch"
    audit = rows(orchestrator.db, "SELECT tool_name, decision, status FROM mcp_tool_call_audit_log ORDER BY created_at")
    assert [(r["tool_name"], r["status"]) for r in audit][:4] == [
        ("artifact.put", "success"),
        ("artifact.put", "success"),
        ("artifact.get", "success"),
        ("artifact.list", "success"),
    ]


def test_a_sandbox_token_reaches_its_tasks_project_and_its_users_files_only(
    api: ApiClient, world: dict[str, Any], orchestrator: OrchestratorUnderTest
) -> None:
    sandbox = token(api, world, "sandbox", job_id=world["job"])
    [task] = rows(orchestrator.db, "SELECT project_id FROM tasks WHERE id = :t", t=world["task"])
    project = str(task["project_id"])
    pm = token(api, world)
    put = call_tool(
        api,
        pm,
        "artifact.put",
        {
            "scope": "project",
            "project_id": project,
            "path": "shared.txt",
            "content_bytes_base64": b64(b"for the agent"),
        },
    )
    assert put.status_code == 200, put.text
    got = call_tool(api, sandbox, "artifact.get", {"scope": "project", "project_id": project, "path": "shared.txt"})
    assert got.status_code == 200 and base64.b64decode(got.json()["content_bytes_base64"]) == b"for the agent"
    elsewhere = call_tool(api, sandbox, "artifact.get", {"scope": "global", "path": "shared.txt"})
    assert elsewhere.status_code == 403 and elsewhere.json()["error_type"] == "scope_mismatch"
    for tool in ("artifact.put", "artifact.list"):  # not on the sandbox allowlist
        denied = call_tool(api, sandbox, tool, {"scope": "user", "path": "x", "content_bytes_base64": ""})
        assert denied.status_code == 403 and denied.json()["error_type"] == "agent_allowlist_denied"


def test_content_over_4_mib_is_413(api: ApiClient, world: dict[str, Any]) -> None:
    pm = token(api, world)
    big = b64(b"x" * (4 * 1024 * 1024 + 3))
    refused = call_tool(api, pm, "artifact.put", {"scope": "user", "path": "big.bin", "content_bytes_base64": big})
    assert refused.status_code in (400, 413), refused.text  # over the published maxLength, or over the decoded cap
    assert call_tool(api, pm, "artifact.get", {"scope": "user", "path": "big.bin"}).status_code == 404
