"""The admin's agent-token routes (cynode_core/orchestrator/api/agent_tokens.py, services/agent_tokens.py).

``POST /v1/admin/agent-tokens`` and ``DELETE /v1/admin/agent-tokens/{id}``
in the app on a real PostgreSQL; a token's effect is checked on the MCP
gateway itself (``POST /mcp`` ``ping``), and its row and audit rows in the
database. Also: agent tokens are refused on user and node routes, and
``cynode admin agent-token`` does the same from the command line.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import os
import re
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner
from harness.api import ApiClient
from harness.mcp import AGENT_TOKENS, gateway_world, mint, rpc, user_id
from harness.orchestrator import USER_PASSWORD, OrchestratorUnderTest, rows
from harness.processes import clean_environ

from cynode_core.cli import main

TOKEN = re.compile(r"cyat_[A-Za-z0-9_-]{43}")


@pytest.fixture
def people(orchestrator: OrchestratorUnderTest, api: ApiClient) -> dict[str, Any]:
    """alice (with a task and its job) and bob, and the admin's access token."""
    return gateway_world(orchestrator, api)


def works(api: ApiClient, token: str) -> bool:
    return bool(rpc(api, token, "ping").status_code == 200)


def test_the_admin_mints_a_pm_token_shown_once_stored_as_its_hash(
    api: ApiClient, orchestrator: OrchestratorUnderTest, people: dict[str, Any]
) -> None:
    resp = api.post(AGENT_TOKENS, token=people["admin"], json={"role": "pm", "user_id": people["alice"]})
    assert resp.status_code == 201, resp.text
    body = resp.json()
    assert set(body) == {"token", "token_id", "role", "user_id", "expires_at"}
    assert TOKEN.fullmatch(body["token"]) and (body["role"], body["user_id"]) == ("pm", people["alice"])
    expires = dt.datetime.fromisoformat(body["expires_at"].replace("Z", "+00:00"))
    assert abs((expires - dt.datetime.now(dt.UTC)).total_seconds() - 3600) < 60
    [row] = rows(orchestrator.db, "SELECT * FROM agent_tokens WHERE id = :id", id=body["token_id"])
    assert bytes(row["token_hash"]) == hashlib.sha256(body["token"].encode()).digest()
    assert (row["issued_by"], row["invocation_class"], row["role"]) == ("admin:admin", "orchestrator_initiated", "pm")
    [audit] = rows(orchestrator.db, "SELECT * FROM auth_audit_log WHERE event_type = 'agent_token_issued'")
    assert (str(audit["user_id"]), audit["reason"], audit["success"]) == (people["alice"], "pm", True)
    assert body["token"] not in str(audit)
    assert works(api, body["token"])


def test_a_sandbox_token_binds_a_task_and_its_job(
    api: ApiClient, orchestrator: OrchestratorUnderTest, people: dict[str, Any]
) -> None:
    made = mint(api, people["admin"], people["alice"], "sandbox", task_id=people["task"], job_id=people["job"])
    [row] = rows(orchestrator.db, "SELECT * FROM agent_tokens WHERE id = :id", id=made["token_id"])
    assert (str(row["task_id"]), str(row["job_id"]), row["invocation_class"]) == (people["task"], people["job"], None)
    pm = mint(api, people["admin"], people["alice"], invocation_class="user_gateway_session", ttl_seconds=60)
    [row] = rows(orchestrator.db, "SELECT * FROM agent_tokens WHERE id = :id", id=pm["token_id"])
    assert row["invocation_class"] == "user_gateway_session"
    assert row["expires_at"] - row["created_at"] < dt.timedelta(seconds=62)


@pytest.mark.parametrize(
    ("fields", "detail"),
    [
        ({"role": "admin"}, "Invalid request body"),
        ({"user_id": "not-a-uuid"}, "Invalid request body"),
        ({"ttl_seconds": 59}, "ttl_seconds must be a whole number from 60 to 86400"),
        ({"ttl_seconds": 86_401}, "ttl_seconds must be a whole number from 60 to 86400"),
        ({"ttl_seconds": "600"}, "Invalid request body"),
        ({"ttl_seconds": 600.0}, "Invalid request body"),
        ({"invocation_class": "chat"}, "Invalid request body"),
        ({"role": "sandbox"}, "a sandbox token needs task_id"),
        ({"role": "pa", "invocation_class": "orchestrator_initiated"}, "invocation_class is for pm tokens only"),
        ({"job_id": "<job>"}, "job_id needs task_id"),
        ({"task_id": "<other task>"}, "task_id is not a task of the user"),
        ({"task_id": "00000000-0000-4000-8000-000000000000"}, "task_id is not a task of the user"),
        ({"project_id": "<other project>"}, "project_id is not a project of the user"),
        ({"thread_id": "00000000-0000-4000-8000-000000000000"}, "thread_id is not a thread of the user"),
    ],
)
def test_a_request_that_breaks_a_rule_is_400_and_mints_nothing(
    api: ApiClient, orchestrator: OrchestratorUnderTest, people: dict[str, Any], fields: dict[str, Any], detail: str
) -> None:
    bob = ApiClient.in_process(orchestrator.app)
    bob.login("bob", USER_PASSWORD, expect=200)
    bob_task = bob.create_command("echo bob")
    bob_project = rows(orchestrator.db, "SELECT project_id FROM tasks WHERE id = :id", id=bob_task)[0]["project_id"]
    stand_in = {"<job>": people["job"], "<other task>": bob_task, "<other project>": str(bob_project)}
    body = {"role": "pm", "user_id": people["alice"], **{k: stand_in.get(v, v) for k, v in fields.items()}}
    resp = api.post(AGENT_TOKENS, token=people["admin"], json=body)
    assert resp.status_code == 400, resp.text
    assert resp.headers["Content-Type"].startswith("application/problem+json")
    assert resp.json()["detail"] == detail
    assert rows(orchestrator.db, "SELECT id FROM agent_tokens") == []


def test_the_user_must_be_active_and_not_system(
    api: ApiClient, orchestrator: OrchestratorUnderTest, people: dict[str, Any]
) -> None:
    system = user_id(orchestrator.db, "system")
    with orchestrator.db.session() as session:
        from cynode_core.orchestrator.services import accounts

        accounts.set_active(session, "bob", False)
    for who in (system, people["bob"], "00000000-0000-4000-8000-000000000000"):
        resp = api.post(AGENT_TOKENS, token=people["admin"], json={"role": "pm", "user_id": who})
        assert resp.status_code == 400 and resp.json()["detail"] == "user_id must name an active user (not system)"


def test_only_the_admin_mints_and_revokes(api: ApiClient, people: dict[str, Any]) -> None:
    made = mint(api, people["admin"], people["alice"])
    alice = people["alice_api"]
    assert (
        alice.post(AGENT_TOKENS, token=alice.token, json={"role": "pm", "user_id": people["alice"]}).status_code == 403
    )
    assert alice.send("DELETE", f"{AGENT_TOKENS}/{made['token_id']}", token=alice.token).status_code == 403
    assert api.post(AGENT_TOKENS, json={"role": "pm", "user_id": people["alice"]}).status_code == 401
    # An agent token is no user credential: the admin routes refuse it as they refuse any bad token.
    resp = api.post(AGENT_TOKENS, token=made["token"], json={"role": "pm", "user_id": people["alice"]})
    assert resp.status_code == 401 and resp.json()["detail"] == "Invalid or expired token"
    assert works(api, made["token"])


def test_revoking_stops_the_token_at_once_is_idempotent_and_audited_once(
    api: ApiClient, orchestrator: OrchestratorUnderTest, people: dict[str, Any]
) -> None:
    made = mint(api, people["admin"], people["alice"])
    other = mint(api, people["admin"], people["alice"])
    path = f"{AGENT_TOKENS}/{made['token_id']}"
    assert api.send("DELETE", path, token=people["admin"]).status_code == 204
    assert not works(api, made["token"]) and works(api, other["token"])
    assert api.send("DELETE", path, token=people["admin"]).status_code == 204
    revoked = rows(orchestrator.db, "SELECT * FROM auth_audit_log WHERE event_type = 'agent_token_revoked'")
    assert len(revoked) == 1 and made["token_id"] in revoked[0]["reason"]
    [row] = rows(orchestrator.db, "SELECT revoked_reason FROM agent_tokens WHERE id = :id", id=made["token_id"])
    assert row["revoked_reason"] == "revoked by admin:admin"
    for unknown in ("00000000-0000-4000-8000-000000000000", "not-a-uuid"):
        resp = api.send("DELETE", f"{AGENT_TOKENS}/{unknown}", token=people["admin"])
        assert resp.status_code == 404 and resp.json()["detail"] == "No such agent token"


def test_an_expired_token_and_one_of_a_disabled_user_stop_working(
    api: ApiClient, orchestrator: OrchestratorUnderTest, people: dict[str, Any]
) -> None:
    expiring = mint(api, people["admin"], people["alice"], ttl_seconds=60)
    bobs = mint(api, people["admin"], people["bob"])
    assert works(api, expiring["token"]) and works(api, bobs["token"])
    with orchestrator.db.session() as session:
        from sqlalchemy import text

        session.execute(
            text("UPDATE agent_tokens SET expires_at = now() - interval '1 second' WHERE id = :id"),
            {"id": expiring["token_id"]},
        )
        from cynode_core.orchestrator.services import accounts

        accounts.set_active(session, "bob", False)
    assert not works(api, expiring["token"]) and not works(api, bobs["token"])


def test_agent_tokens_are_refused_on_user_and_node_routes(api: ApiClient, people: dict[str, Any]) -> None:
    made = mint(api, people["admin"], people["alice"])
    for method, path in (
        ("GET", "/v1/users/me"),
        ("GET", "/v1/tasks"),
        ("GET", f"/v1/tasks/{people['task']}"),
        ("GET", "/v1/auth/api-keys"),
        ("GET", "/v1/nodes/config"),
        ("POST", "/v1/nodes/capability"),
    ):
        resp = api.send(method, path, token=made["token"], json={} if method == "POST" else None)
        assert resp.status_code == 401, (path, resp.text)
        assert resp.json()["detail"] == "Invalid or expired token", path
    chat = api.post("/v1/chat/completions", token=made["token"], json={"messages": [{"role": "user", "content": "x"}]})
    assert chat.status_code == 401


# -- the command line -----------------------------------------------------------------------


@pytest.fixture
def cynode(database_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Any:
    """``cynode <args>`` in-process against this test's database."""
    for key in list(os.environ):
        if key not in clean_environ():
            monkeypatch.delenv(key)
    env = {"CYNODE_DATABASE_URL": database_url, "CYNODE_HOME": str(tmp_path / "cli-home")}
    runner = CliRunner()
    return lambda *args: runner.invoke(main, list(args), env=env, catch_exceptions=False)


def test_the_cli_creates_and_revokes_a_token(
    cynode: Any, api: ApiClient, orchestrator: OrchestratorUnderTest, people: dict[str, Any]
) -> None:
    made = cynode("admin", "agent-token", "create", "--role", "sandbox", "--user", "alice", "--task", people["task"])
    assert made.exit_code == 0, made.output
    token = TOKEN.search(made.output)
    assert token is not None and works(api, token.group())
    [row] = rows(orchestrator.db, "SELECT * FROM agent_tokens")
    assert (row["role"], str(row["task_id"]), row["issued_by"]) == ("sandbox", people["task"], "admin:cli")
    assert str(row["id"]) in made.output
    refused = cynode("admin", "agent-token", "create", "--role", "sandbox", "--user", "alice")
    assert refused.exit_code != 0 and "a sandbox token needs task_id" in refused.output
    unknown = cynode("admin", "agent-token", "create", "--role", "pm", "--user", "nobody")
    assert unknown.exit_code != 0 and "no user 'nobody'" in unknown.output
    revoked = cynode("admin", "agent-token", "revoke", str(row["id"]))
    assert revoked.exit_code == 0 and not works(api, token.group())
    assert cynode("admin", "agent-token", "revoke", "00000000-0000-4000-8000-000000000000").exit_code != 0
