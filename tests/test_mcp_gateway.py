"""The MCP tool gateway (cynode_core/orchestrator/mcp, api/mcp.py): every pipeline step's answer and audit row.

Real parts: the app on a real PostgreSQL, tokens minted through the admin
route, tools offered by a small test plugin through the real hook
(``harness.mcp.GatewayTestTools``). Each step of mcp_contract.md 4 is
driven through ``POST /v1/mcp/tools/call``; ``POST /mcp`` (JSON-RPC, and
the real ``mcp`` SDK client) is tests/test_mcp_endpoint.py.
"""

from __future__ import annotations

import logging
import uuid
from typing import Any

import pytest
from harness.api import ApiClient
from harness.mcp import call_tool, gateway_world, mint, rpc, token
from harness.orchestrator import OrchestratorUnderTest, rows
from sqlalchemy import text


@pytest.fixture
def settings_overrides(request: pytest.FixtureRequest) -> dict[str, Any]:
    """A test's own settings through ``@pytest.mark.parametrize("settings_overrides", [...], indirect=True)``."""
    return dict(getattr(request, "param", {}))


@pytest.fixture
def world(orchestrator: OrchestratorUnderTest, api: ApiClient, caplog: pytest.LogCaptureFixture) -> dict[str, Any]:
    caplog.set_level(logging.INFO, logger="cynode_core")
    return gateway_world(orchestrator, api)


def audits(orchestrator: OrchestratorUnderTest) -> list[Any]:
    return rows(orchestrator.db, "SELECT * FROM mcp_tool_call_audit_log ORDER BY created_at, id")


def problem(resp: Any, status: int, error_type: str, detail: str | None = None) -> dict[str, Any]:
    """The REST form's problem body, checked: status, ``error_type``, ``error`` = ``detail``."""
    assert resp.status_code == status, resp.text
    assert resp.headers["Content-Type"].startswith("application/problem+json")
    body = dict(resp.json())
    assert (body["status"], body["error_type"], body["error"]) == (status, error_type, body["detail"]), body
    if detail is not None:
        assert body["detail"] == detail
    return body


def one_audit(orchestrator: OrchestratorUnderTest, decision: str, status: str, error_type: str | None) -> Any:
    [row] = audits(orchestrator)
    assert (row["decision"], row["status"], row["error_type"]) == (decision, status, error_type)
    return row


# -- step 2: the token ---------------------------------------------------------------------


def test_step2_no_bearer_or_an_invalid_one_is_401_and_leaves_no_audit_row(
    api: ApiClient, orchestrator: OrchestratorUnderTest, world: dict[str, Any]
) -> None:
    missing = call_tool(api, None, "task.zz_echo", {"text": "x"})
    body = problem(missing, 401, "missing_bearer", "authentication required")
    assert body["type"] == "urn:cynodeai:error:authentication"
    assert missing.headers["WWW-Authenticate"] == 'Bearer error="invalid_token"'
    basic = call_tool(api, None, "task.zz_echo", {"text": "x"}, headers={"Authorization": "Basic abc"})
    problem(basic, 401, "missing_bearer")

    revoked = mint(api, world["admin"], world["alice"])
    assert api.send("DELETE", f"/v1/admin/agent-tokens/{revoked['token_id']}", token=world["admin"]).status_code == 204
    expired = mint(api, world["admin"], world["alice"], ttl_seconds=60)
    with orchestrator.db.session() as session:
        session.execute(
            text("UPDATE agent_tokens SET expires_at = now() - interval '1 s' WHERE id = :id"),
            {"id": expired["token_id"]},
        )
    node = api.post(
        "/v1/nodes/register",
        json={
            "psk": orchestrator.secrets.psk,
            "capability": {"version": 1, "node": {"node_slug": "n1"}, "worker_api": {"base_url": "http://127.0.0.1:9"}},
        },
    )
    api_key = world["alice_api"].post("/v1/auth/api-keys", token=world["alice_api"].token, json={"name": "k"})
    for bad in (
        revoked["token"],
        expired["token"],
        "cyat_" + "A" * 43,
        "cyat_short",
        world["alice_api"].token,  # a user's access token
        world["admin"],
        node.json()["auth"]["node_jwt"],
        api_key.json()["key"],
    ):
        resp = call_tool(api, bad, "task.zz_echo", {"text": "x"})
        problem(resp, 401, "invalid_agent_token", "invalid or unrecognized agent token")
        assert resp.headers["WWW-Authenticate"] == 'Bearer error="invalid_token"'
    assert audits(orchestrator) == []


# -- steps 3 to 7 ----------------------------------------------------------------------------


def test_step3_db_names_are_404_and_audited(
    api: ApiClient, orchestrator: OrchestratorUnderTest, world: dict[str, Any]
) -> None:
    resp = call_tool(api, token(api, world), "db.task.get", {"task_id": world["task"]})
    problem(
        resp,
        404,
        "legacy_tool_name_removed",
        "legacy db.* tool names are not supported; use catalog names (e.g. preference.get, task.get)",
    )
    row = one_audit(orchestrator, "deny", "error", "legacy_tool_name_removed")
    assert (row["tool_name"], str(row["task_id"]), str(row["user_id"])) == (
        "db.task.get",
        world["task"],
        world["alice"],
    )
    assert (row["subject_type"], row["role_names"]) == ("agent", ["pm"])


@pytest.mark.parametrize(
    ("role", "tool", "allowed"),
    [
        ("pm", "task.zz_echo", True),
        ("pm", "node.zz_nothing", True),  # passes the allowlist, then 501
        ("pm", "memory.get", False),
        ("pm", "Task.zz_echo", False),
        ("pa", "task.zz_echo", True),
        ("pa", "task.cancel", False),
        ("pa", "task.create", False),  # ours: pm only
        ("pa", "task.ready", False),
        ("pa", "node.list", False),
        ("pa", "system_setting.get", False),
        ("pa", "web.fetch", False),
        ("sandbox", "preference.get", True),
        ("sandbox", "help.list", True),
        ("sandbox", "skills.get", False),  # the allowlist names it, the tool's scope (pm) does not admit a sandbox
        ("sandbox", "artifact.put", False),
        ("sandbox", "task.zz_echo", False),
        ("sandbox", "preference.create", False),
    ],
)
def test_step4_role_allowlists(
    api: ApiClient, orchestrator: OrchestratorUnderTest, world: dict[str, Any], role: str, tool: str, allowed: bool
) -> None:
    resp = call_tool(api, token(api, world, role), tool, {"text": "x"})
    if allowed:
        assert resp.status_code in (200, 501), resp.text
        assert audits(orchestrator)[0]["decision"] == ("allow" if resp.status_code == 200 else "deny")
    else:
        problem(resp, 403, "agent_allowlist_denied", "tool not allowed for this agent role")
        row = one_audit(orchestrator, "deny", "error", "agent_allowlist_denied")
        assert row["role_names"] == [role]


@pytest.mark.parametrize("settings_overrides", [{"mcp_disabled_tools": ["task.zz_echo"]}], indirect=True)
def test_step5_a_disabled_tool_is_403_for_every_role_and_not_listed(
    api: ApiClient, orchestrator: OrchestratorUnderTest, world: dict[str, Any]
) -> None:
    pm = token(api, world)
    problem(call_tool(api, pm, "task.zz_echo", {"text": "x"}), 403, "tool_disabled", "tool is disabled")
    one_audit(orchestrator, "deny", "error", "tool_disabled")
    listed = {t["name"] for t in rpc(api, pm, "tools/list").json()["result"]["tools"]}
    assert "task.zz_echo" not in listed and "task.zz_write" in listed


@pytest.mark.parametrize("settings_overrides", [{"mcp_calls_per_minute": 3}], indirect=True)
def test_step6_the_per_token_rate_is_429_with_retry_after(
    api: ApiClient, orchestrator: OrchestratorUnderTest, world: dict[str, Any]
) -> None:
    pm, other = token(api, world), token(api, world)
    assert [call_tool(api, pm, "task.zz_echo", {"text": "x"}).status_code for _ in range(3)] == [200] * 3
    resp = call_tool(api, pm, "task.zz_echo", {"text": "x"})
    problem(resp, 429, "rate_limited")
    assert 1 <= int(resp.headers["Retry-After"]) <= 60
    assert call_tool(api, other, "task.zz_echo", {"text": "x"}).status_code == 200  # per token
    assert [(r["decision"], r["error_type"]) for r in audits(orchestrator)][-2:] == [
        ("deny", "rate_limited"),
        ("allow", None),
    ]


def test_step7_an_unshipped_name_is_501_and_bad_registrations_were_refused(
    api: ApiClient, orchestrator: OrchestratorUnderTest, world: dict[str, Any], caplog: pytest.LogCaptureFixture
) -> None:
    pm = token(api, world)
    for name in ("task.zz_nothing", "task.zz_bad"):
        body = problem(call_tool(api, pm, name, {}), 501, "not_implemented", "tool routing not implemented")
        assert body["type"] == "urn:cynodeai:error:not_implemented"
    assert [r["error_type"] for r in audits(orchestrator)] == ["not_implemented"] * 2
    refused = [r.getMessage() for r in caplog.records if r.levelno == logging.ERROR and "refused" in r.getMessage()]
    assert any("task.zz_bad" in m and "maxLength" in m for m in refused), refused
    assert any("task.zz bad name" in m for m in refused), refused
    # The first registration of a name is kept: the echo, not the crash registered after it.
    assert call_tool(api, pm, "task.zz_echo", {"text": "x"}).json()["role"] == "pm"


# -- step 8: arguments -------------------------------------------------------------------------


def test_step8_unknown_keys_and_nulls_are_dropped(api: ApiClient, world: dict[str, Any]) -> None:
    resp = call_tool(api, token(api, world), "task.zz_echo", {"text": "hi", "surprise": {"x": 1}, "mode": None})
    assert resp.status_code == 200, resp.text
    assert resp.json() == {"arguments": {"text": "hi"}, "user_id": world["alice"], "role": "pm"}


@pytest.mark.parametrize(
    ("arguments", "detail"),
    [
        ({}, "text required"),
        ({"text": ""}, "text: must not be empty"),
        ({"text": "x" * 21}, "text: must be at most 20 characters"),
        ({"text": 5}, "text: must be a string"),
        ({"text": "x", "count": "2"}, "count: must be an integer"),
        ({"text": "x", "count": 2.0}, "count: must be an integer"),
        ({"text": "x", "count": True}, "count: must be an integer"),
        ({"text": "x", "count": 6}, "count: must be at most 5"),
        ({"text": "x", "count": 0}, "count: must be at least 1"),
        ({"text": "x", "flag": "yes"}, "flag: must be true or false"),
        ({"text": "x", "mode": "c"}, "mode: must be one of a, b"),
        ({"text": "x", "tags": ["a", "b", "c"]}, "tags: must have at most 2 items"),
        ({"text": "x", "tags": ["toolong"]}, "tags[0]: must be at most 5 characters"),
        ({"text": "x", "task_id": "not-a-uuid-but-exactly-36-characters"}, "task_id: must be a UUID"),
        ({"text": "a\x00b"}, "text: must not hold a NUL character"),
    ],
)
def test_step8_arguments_that_break_the_schema_are_400(
    api: ApiClient, orchestrator: OrchestratorUnderTest, world: dict[str, Any], arguments: dict[str, Any], detail: str
) -> None:
    body = problem(call_tool(api, token(api, world), "task.zz_echo", arguments), 400, "invalid_arguments", detail)
    assert body["type"] == "urn:cynodeai:error:validation" and detail in body["errors"].values()
    one_audit(orchestrator, "deny", "error", "invalid_arguments")


def test_step8_upstreams_required_id_messages(api: ApiClient, world: dict[str, Any]) -> None:
    pm = token(api, world)
    problem(call_tool(api, pm, "job.zz_ids", {"job_id": world["job"]}), 400, "invalid_arguments", "task_id required")
    problem(call_tool(api, pm, "job.zz_ids", {"task_id": "x"}), 400, "invalid_arguments", "task_id required")
    problem(
        call_tool(api, pm, "job.zz_ids", {"task_id": world["task"], "job_id": 7}),
        400,
        "invalid_arguments",
        "job_id required",
    )
    assert call_tool(api, pm, "job.zz_ids", {"task_id": world["task"], "job_id": world["job"]}).status_code == 200


# -- step 9: scoping ----------------------------------------------------------------------------


def test_step9_user_id_must_be_the_tokens_user(
    api: ApiClient, orchestrator: OrchestratorUnderTest, world: dict[str, Any]
) -> None:
    pm = token(api, world)
    ok = call_tool(api, pm, "task.zz_echo", {"text": "x", "user_id": world["alice"]})
    assert ok.status_code == 200 and ok.json()["arguments"]["user_id"] == world["alice"]
    resp = call_tool(api, pm, "task.zz_echo", {"text": "x", "user_id": world["bob"]})
    problem(resp, 403, "scope_mismatch", "user_id does not match the agent's user")
    row = audits(orchestrator)[-1]
    assert (row["decision"], row["error_type"], str(row["user_id"])) == ("deny", "scope_mismatch", world["alice"])


def test_step9_a_bound_token_takes_only_its_task_and_job(
    api: ApiClient, orchestrator: OrchestratorUnderTest, world: dict[str, Any]
) -> None:
    bound = token(api, world, "pm", task_id=world["task"], job_id=world["job"])
    other = str(uuid.uuid4())
    assert call_tool(api, bound, "task.zz_echo", {"text": "x", "task_id": world["task"]}).status_code == 200
    problem(
        call_tool(api, bound, "task.zz_echo", {"text": "x", "task_id": other}),
        403,
        "scope_mismatch",
        "task_id does not match the agent's task",
    )
    problem(
        call_tool(api, bound, "task.zz_echo", {"text": "x", "job_id": other}),
        403,
        "scope_mismatch",
        "job_id does not match the agent's job",
    )
    # The audit row names the token's binding, not the argument.
    assert {str(r["task_id"]) for r in audits(orchestrator)} == {world["task"]}
    assert {str(r["job_id"]) for r in audits(orchestrator)} == {world["job"]}


def test_step9_a_tools_refusal_of_anothers_object_reads_as_not_found(
    api: ApiClient, orchestrator: OrchestratorUnderTest, world: dict[str, Any]
) -> None:
    pm = token(api, world)
    body = problem(call_tool(api, pm, "task.zz_deny", {"task_id": world["task"]}), 404, "not_found", "not found")
    assert body["type"] == "urn:cynodeai:error:not_found"
    row = one_audit(orchestrator, "deny", "error", "scope_mismatch")
    assert str(row["task_id"]) == world["task"]
    problem(
        call_tool(api, pm, "task.zz_deny", {"task_id": world["task"], "status": 403}),
        403,
        "scope_mismatch",
        "not yours",
    )


# -- steps 10 and 11: execution -------------------------------------------------------------------


def test_step10_a_failure_rolls_the_tools_effect_back_and_is_audited_allow_error(
    api: ApiClient, orchestrator: OrchestratorUnderTest, world: dict[str, Any]
) -> None:
    pm = token(api, world)
    problem(
        call_tool(api, pm, "task.zz_write", {"slug": "zz-failed", "fail": True}),
        409,
        "conflict",
        "the tool refused after writing",
    )
    assert rows(orchestrator.db, "SELECT id FROM projects WHERE slug = 'zz-failed'") == []
    row = one_audit(orchestrator, "allow", "error", "conflict")
    assert row["project_id"] is not None  # what the tool recorded, although its effect went
    problem(call_tool(api, pm, "task.zz_crash", {}), 500, "internal_error", "internal error")
    problem(call_tool(api, pm, "task.zz_list", {}), 500, "internal_error")
    assert [(r["decision"], r["error_type"]) for r in audits(orchestrator)][1:] == [("allow", "internal_error")] * 2


def test_step11_success_commits_the_effect_with_its_audit_row(
    api: ApiClient, orchestrator: OrchestratorUnderTest, world: dict[str, Any]
) -> None:
    made = mint(api, world["admin"], world["alice"], invocation_class="user_gateway_session")
    resp = call_tool(api, made["token"], "task.zz_write", {"slug": "zz-made"}, headers={"X-Request-Id": "req-mcp-1"})
    assert resp.status_code == 200 and resp.headers["Content-Type"] == "application/json"
    [project] = rows(orchestrator.db, "SELECT id FROM projects WHERE slug = 'zz-made'")
    assert resp.json() == {"project_id": str(project["id"])}
    row = one_audit(orchestrator, "allow", "success", None)
    assert (str(row["project_id"]), str(row["subject_id"]), row["request_id"]) == (
        str(project["id"]),
        made["token_id"],
        "req-mcp-1",
    )
    assert (row["invocation_class"], row["tool_name"], row["run_id"], row["group_ids"]) == (
        "user_gateway_session",
        "task.zz_write",
        None,
        None,
    )
    assert row["duration_ms"] is not None and row["duration_ms"] >= 0


def test_a_failing_audit_insert_commits_nothing_and_answers_500(
    api: ApiClient, orchestrator: OrchestratorUnderTest, world: dict[str, Any]
) -> None:
    with orchestrator.db.session() as session:
        session.execute(
            text(
                "CREATE FUNCTION zz_refuse() RETURNS trigger LANGUAGE plpgsql AS "
                "$$ BEGIN RAISE EXCEPTION 'audit refused by the test'; END $$"
            )
        )
        session.execute(
            text(
                "CREATE TRIGGER zz_refuse BEFORE INSERT ON mcp_tool_call_audit_log "
                "FOR EACH ROW WHEN (NEW.tool_name = 'task.zz_write') EXECUTE FUNCTION zz_refuse()"
            )
        )
    problem(call_tool(api, token(api, world), "task.zz_write", {"slug": "zz-unaudited"}), 500, "internal_error")
    assert rows(orchestrator.db, "SELECT id FROM projects WHERE slug = 'zz-unaudited'") == []
    assert audits(orchestrator) == []


def test_the_audit_keeps_a_long_tool_name_cut_and_never_the_arguments(
    api: ApiClient, orchestrator: OrchestratorUnderTest, world: dict[str, Any]
) -> None:
    name = "task." + "x" * 500
    problem(call_tool(api, token(api, world), name, {"text": "secret-argument"}), 501, "not_implemented")
    row = one_audit(orchestrator, "deny", "error", "not_implemented")
    assert row["tool_name"] == name[:200]
    assert "secret-argument" not in str(row)


# -- step 1: the REST body --------------------------------------------------------------------------


@pytest.mark.parametrize(
    "body",
    [
        {},
        {"tool_name": ""},
        {"tool_name": 5},
        {"tool_name": "task.zz_echo", "arguments": '{"text": "x"}'},
        {"tool_name": "task.zz_echo", "arguments": ["text"]},
        {"tool_name": "task.zz\x00echo"},
        [],
    ],
)
def test_step1_a_malformed_body_is_400_before_the_token_and_not_audited(
    api: ApiClient, orchestrator: OrchestratorUnderTest, world: dict[str, Any], body: Any
) -> None:
    resp = api.send("POST", "/v1/mcp/tools/call", token=token(api, world), json=body)
    assert resp.status_code == 400 and resp.json()["detail"] == "Invalid request body", resp.text
    assert audits(orchestrator) == []


def test_step1_null_or_absent_arguments_mean_none(api: ApiClient, world: dict[str, Any]) -> None:
    pm = token(api, world)
    for body in ({"tool_name": "task.zz_crash"}, {"tool_name": "task.zz_crash", "arguments": None}):
        resp = api.send("POST", "/v1/mcp/tools/call", token=pm, json=body)
        assert resp.status_code == 500 and resp.json()["error_type"] == "internal_error"  # it ran
    assert api.send("GET", "/v1/mcp/tools/call", token=pm).status_code == 405
