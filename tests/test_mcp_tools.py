"""The built-in MCP tools (mcp_contract.md 7): their schemas, result shapes and scoping.

Each tool is taken from the app's plugin manager (``cynode_register_mcp_tools``)
and called as the gateway calls it: its arguments checked against its
published input schema (unknown keys dropped), then its handler run with a
real :class:`ToolCall` (a principal resolved from a minted agent token, a
session on the test's own PostgreSQL database, the app's state). Rows are
read back from the database.
"""

from __future__ import annotations

import datetime as dt
import json
import re
import uuid
from dataclasses import dataclass
from typing import Any

import jsonschema
import pytest
from harness.orchestrator import create_users, jobs_of, rows, task_status
from sqlalchemy import text

from cynode_core import hookimpl
from cynode_core.orchestrator.mcp.arguments import InvalidArguments
from cynode_core.orchestrator.mcp.arguments import checked as checked_arguments
from cynode_core.orchestrator.mcp.catalog import catalog_of
from cynode_core.orchestrator.mcp.registry import McpTool, ToolCall, ToolDenied, ToolError, ToolFailed
from cynode_core.orchestrator.mcp.schemas import subset_problems
from cynode_core.orchestrator.mcp.tools import builtin_tools
from cynode_core.orchestrator.mcp.tools.schema import UUID_PATTERN
from cynode_core.orchestrator.models import Node, Project
from cynode_core.orchestrator.services import agent_tokens
from cynode_core.orchestrator.services.agent_tokens import Binding, Principal
from cynode_core.orchestrator.services.tasks import default_project

CATALOG = (
    "help.list",
    "help.get",
    "task.create",
    "task.ready",
    "task.get",
    "task.list",
    "task.result",
    "task.logs",
    "task.cancel",
    "job.get",
    "project.list",
    "project.get",
    "node.list",
    "node.get",
    "artifact.put",
    "artifact.get",
    "artifact.list",
)
TIMESTAMP = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ")
# The schema subset of agents_contract.md 3.2.
ALLOWED_KEYWORDS = set(
    "type properties required additionalProperties enum const minLength maxLength minimum maximum items maxItems "
    "pattern".split()
)
TASK_RESPONSE_KEYS = ["id", "task_id", "status", "planning_state", "task_name", "prompt", "summary"]
COMMAND = {"prompt": "echo hi", "input_mode": "commands"}


def registered(state: Any) -> dict[str, McpTool]:
    """The tools of the gateway's catalog (what the app's plugins registered and the gateway accepted)."""
    return {tool.name: tool for tool in catalog_of(state.pm)}


@dataclass
class Agent:
    """An agent token's principal, calling tools as the gateway does."""

    orchestrator: Any
    principal: Principal
    token: str = ""
    # Another app on the same database (one with more plugins); default: the orchestrator's.
    app: Any = None

    @property
    def state(self) -> Any:
        return (self.app or self.orchestrator.app).extensions["cynode"]

    def call(self, name: str, checked: bool = True, **arguments: Any) -> dict[str, Any]:
        return self.traced(name, checked, **arguments)[0]

    def traced(self, name: str, checked: bool = True, **arguments: Any) -> tuple[dict[str, Any], ToolCall]:
        """The result and the call (with what it recorded for the audit row); ``checked=False`` skips the schema."""
        catalog = catalog_of(self.state.pm)
        tool = catalog.get(name)
        assert tool is not None, name
        if checked:
            arguments = checked_arguments(tool.input_schema, catalog.validator(name), arguments)
        with self.orchestrator.db.session() as session:
            call = ToolCall(self.principal, session, self.state, request_id="req-mcp-tools")
            result = tool.handler(call, arguments)
        json.dumps(result)  # a result is plain JSON
        return result, call

    def refused(self, name: str, checked: bool = True, **arguments: Any) -> ToolError:
        with pytest.raises(ToolError) as caught:
            self.call(name, checked, **arguments)
        return caught.value


@pytest.fixture
def user_ids(orchestrator: Any) -> dict[str, uuid.UUID]:
    create_users(orchestrator.db, "alice", "bob")
    found = rows(orchestrator.db, "SELECT handle, id FROM users WHERE handle IN ('alice', 'bob')")
    return {r["handle"]: r["id"] for r in found}


def agent_of(orchestrator: Any, user_id: uuid.UUID, role: str = "pm", **binding: Any) -> Agent:
    """An agent with a freshly minted token of ``role`` for ``user_id``."""
    with orchestrator.db.session() as session:
        minted = agent_tokens.mint(
            session,
            role=role,  # type: ignore[arg-type]
            user_id=user_id,
            lifetime_seconds=600,
            issued_by="admin:test",
            binding=Binding(invocation_class="orchestrator_initiated" if role == "pm" else None, **binding),
        )
    with orchestrator.db.session() as session:
        principal = agent_tokens.resolve(session, minted.token)
    assert principal is not None
    return Agent(orchestrator, principal, minted.token)


@pytest.fixture
def alice(orchestrator: Any, user_ids: dict[str, uuid.UUID]) -> Agent:
    return agent_of(orchestrator, user_ids["alice"])


@pytest.fixture
def bob(orchestrator: Any, user_ids: dict[str, uuid.UUID]) -> Agent:
    return agent_of(orchestrator, user_ids["bob"])


def denied(error: ToolError, status: int, error_type: str) -> None:
    assert isinstance(error, ToolDenied), error
    assert (error.status, error.error_type) == (status, error_type), error.detail


def failed(error: ToolError, status: int, error_type: str) -> None:
    assert isinstance(error, ToolFailed), error
    assert (error.status, error.error_type) == (status, error_type), error.detail


def store_result(orchestrator: Any, job_id: str, stdout: str, stderr: str) -> None:
    """What a node's report leaves on a job: its RunJobResponse, the job completed."""
    body = {"version": 1, "job_id": job_id, "status": "completed", "exit_code": 0, "stdout": stdout, "stderr": stderr}
    with orchestrator.db.session() as session:
        session.execute(
            text("UPDATE jobs SET status = 'completed', result = CAST(:r AS jsonb), ended_at = now() WHERE id = :id"),
            {"r": json.dumps(body), "id": job_id},
        )


# -- the catalog and its schemas ------------------------------------------------------------------


def test_the_catalog_is_registered_through_the_hook_with_its_scopes(orchestrator: Any) -> None:
    tools = registered(orchestrator.app.extensions["cynode"])
    assert tuple(t.name for t in builtin_tools()) == CATALOG
    assert set(CATALOG) <= set(tools)
    assert {n for n in CATALOG if tools[n].scope == "both"} == {"help.list", "help.get", "artifact.get"}
    assert {tools[n].scope for n in CATALOG if n not in ("help.list", "help.get", "artifact.get")} == {"pm"}
    changing = {n for n in CATALOG if not tools[n].read_only}
    assert changing == {"task.create", "task.ready", "task.cancel", "artifact.put"}
    assert all(tools[n].description.strip() for n in CATALOG)


def _walk(node: dict[str, Any], where: str) -> None:
    """Every keyword of the agents_contract.md 3.2 subset only; closed objects, bounded strings and arrays."""
    assert set(node) <= ALLOWED_KEYWORDS, f"{where}: {set(node) - ALLOWED_KEYWORDS}"
    kind = node["type"]
    assert kind in ("object", "string", "integer", "boolean", "array"), where
    if "pattern" in node:
        assert node["pattern"] == UUID_PATTERN, where
    if kind == "object":
        assert node["additionalProperties"] is False, where
        assert set(node.get("required", [])) <= set(node["properties"]), where
        for name, prop in node["properties"].items():
            _walk(prop, f"{where}.{name}")
    elif kind == "string" and "enum" not in node and "const" not in node:
        assert isinstance(node.get("maxLength"), int), f"{where}: a free string needs maxLength"
    elif kind == "array":
        assert isinstance(node.get("maxItems"), int), f"{where}: an array needs maxItems"
        _walk(node["items"], f"{where}[]")
    elif kind == "integer":
        assert isinstance(node.get("minimum"), int) and isinstance(node.get("maximum"), int), where


def test_every_published_schema_keeps_to_the_subset_and_is_closed() -> None:
    for tool in builtin_tools():
        jsonschema.Draft202012Validator.check_schema(tool.input_schema)
        assert subset_problems(tool.input_schema) == [], tool.name
        _walk(dict(tool.input_schema), tool.name)


def test_the_schemas_have_the_contract_s_arguments_and_lengths() -> None:
    schemas = {t.name: t.input_schema for t in builtin_tools()}

    def props(name: str) -> dict[str, Any]:
        return dict(schemas[name]["properties"])

    create = props("task.create")
    assert list(create) == [
        "prompt",
        "task_name",
        "input_mode",
        "use_inference",
        "use_sba",
        "project_id",
        "attachments",
    ]
    assert (create["prompt"]["minLength"], create["prompt"]["maxLength"]) == (1, 2000)
    assert create["task_name"]["maxLength"] == 128
    assert create["input_mode"]["enum"] == ["prompt", "script", "commands"]
    assert create["attachments"]["maxItems"] == 16 and create["attachments"]["items"]["maxLength"] == 2048
    assert schemas["task.create"]["required"] == ["prompt"]
    for name in ("task.ready", "task.get", "task.result", "task.logs", "task.cancel"):
        assert schemas[name]["required"] == ["task_id"] and props(name)["task_id"]["pattern"] == UUID_PATTERN
    assert set(props("task.list")) == {"limit", "offset", "cursor", "status", "user_id"}
    assert props("task.list")["status"]["enum"] == [
        "queued",
        "running",
        "completed",
        "failed",
        "canceled",
        "superseded",
    ]
    assert props("task.list")["limit"] == {"type": "integer", "minimum": 1, "maximum": 200}
    assert props("task.logs")["stream"]["enum"] == ["stdout", "stderr", "all"]
    assert schemas["job.get"]["required"] == ["job_id"]
    assert (
        set(props("project.list")) == {"q", "limit", "offset", "user_id"}
        and props("project.list")["q"]["maxLength"] == 100
    )
    assert (
        set(props("project.get")) == {"project_id", "slug", "user_id"}
        and props("project.get")["slug"]["maxLength"] == 200
    )
    assert set(props("node.list")) == {"limit", "offset", "cursor"}
    assert props("node.get")["node_slug"]["maxLength"] == 200 and schemas["node.get"]["required"] == ["node_slug"]
    assert props("help.get") == {
        "topic": {"type": "string", "maxLength": 100},
        "path": {"type": "string", "maxLength": 200},
    }
    assert props("help.list") == {}


# -- tasks -----------------------------------------------------------------------------------------


def test_task_create_makes_a_draft_with_no_job_in_the_token_s_project(
    orchestrator: Any, user_ids: dict[str, uuid.UUID]
) -> None:
    with orchestrator.db.session() as session:
        team = Project(slug="team-x", display_name="Team X")
        session.add(team)
        session.flush()
        team_id = team.id
    agent = agent_of(orchestrator, user_ids["alice"], project_id=team_id)
    body = {**COMMAND, "task_name": "Say Hi", "attachments": ["notes.txt", "notes.txt"], "use_sba": False}
    created, call = agent.traced("task.create", **body, unknown_key="dropped")
    assert set(created) == {*TASK_RESPONSE_KEYS, "created_at", "updated_at", "attachments", "project_id"}
    assert (created["status"], created["planning_state"], created["task_name"]) == ("queued", "draft", "say-hi")
    assert created["attachments"] == ["notes.txt"]
    assert TIMESTAMP.fullmatch(created["created_at"]) and TIMESTAMP.fullmatch(created["updated_at"])
    assert jobs_of(orchestrator.db, created["id"]) == []
    [row] = rows(orchestrator.db, "SELECT * FROM tasks WHERE id = :id", id=created["id"])
    assert (row["created_by"], row["project_id"], row["planning_state"]) == (user_ids["alice"], team_id, "draft")
    assert row["request_id"] == "req-mcp-tools"
    assert (call.task_id, call.project_id) == (uuid.UUID(created["id"]), team_id)


def test_task_create_project_rules(orchestrator: Any, alice: Agent, user_ids: dict[str, uuid.UUID]) -> None:
    with orchestrator.db.session() as session:
        own = default_project(session, user_ids["alice"])
        others = default_project(session, user_ids["bob"])
    # No project on the token and none asked for: the user's default project.
    plain = alice.call("task.create", **COMMAND)
    assert rows(orchestrator.db, "SELECT project_id FROM tasks WHERE id = :id", id=plain["id"])[0]["project_id"] == own
    chosen = alice.call("task.create", **COMMAND, project_id=str(own))
    assert rows(orchestrator.db, "SELECT project_id FROM tasks WHERE id = :id", id=chosen["id"])[0]["project_id"] == own
    for foreign in (others, uuid.uuid4()):
        error = alice.refused("task.create", **COMMAND, project_id=str(foreign))
        denied(error, 400, "invalid_arguments")
        assert error.detail == "Invalid project_id"
    assert len(rows(orchestrator.db, "SELECT id FROM tasks")) == 2


def test_task_create_takes_long_prompts_up_to_its_limit(orchestrator: Any, alice: Agent) -> None:
    # The published schema says 2000; a caller that is not held to it may send up to 65,536.
    with pytest.raises(InvalidArguments):
        alice.call("task.create", prompt="x" * 2001)
    long = alice.call("task.create", checked=False, prompt="x" * 65_536, input_mode="commands")
    assert len(long["prompt"]) == 65_536
    denied(alice.refused("task.create", checked=False, prompt="x" * 65_537), 400, "invalid_arguments")
    denied(alice.refused("task.create", checked=False, prompt=""), 400, "invalid_arguments")
    assert len(rows(orchestrator.db, "SELECT id FROM tasks")) == 1


def test_task_ready_queues_exactly_one_job_and_refuses_a_canceled_draft(
    orchestrator: Any, alice: Agent, bob: Agent
) -> None:
    draft = alice.call("task.create", **COMMAND)
    denied(bob.refused("task.ready", task_id=draft["id"]), 404, "scope_mismatch")
    assert jobs_of(orchestrator.db, draft["id"]) == []
    made, call = alice.traced("task.ready", task_id=draft["id"])
    assert (made["id"], made["status"], made["planning_state"]) == (draft["id"], "queued", "ready")
    assert call.task_id == uuid.UUID(draft["id"])
    [job] = jobs_of(orchestrator.db, draft["id"])
    assert job["payload"]["command"] == ["sh", "-c", "echo hi"]
    again = alice.call("task.ready", task_id=draft["id"])
    assert again["planning_state"] == "ready" and len(jobs_of(orchestrator.db, draft["id"])) == 1

    other = alice.call("task.create", **COMMAND)
    assert alice.call("task.cancel", task_id=other["id"]) == {"task_id": other["id"], "canceled": True}
    error = alice.refused("task.ready", task_id=other["id"])
    failed(error, 409, "conflict")
    assert error.detail == "task is not in a runnable state"
    assert jobs_of(orchestrator.db, other["id"]) == []
    failed(alice.refused("task.ready", task_id=str(uuid.uuid4())), 404, "not_found")


def test_task_get_shows_the_api_status_and_only_to_its_creator(
    orchestrator: Any, alice: Agent, bob: Agent, user_ids: dict[str, uuid.UUID]
) -> None:
    created = alice.call("task.create", **COMMAND, task_name="mine")
    assert task_status(orchestrator.db, created["id"]) == "pending"
    got, call = alice.traced("task.get", task_id=created["id"])
    assert list(got) == [*TASK_RESPONSE_KEYS, "created_by", "project_id", "created_at", "updated_at"]
    assert (got["status"], got["planning_state"], got["task_name"], got["summary"]) == (
        "queued",
        "draft",
        "mine",
        "mine",
    )
    assert got["created_by"] == str(user_ids["alice"]) and str(call.project_id) == got["project_id"]
    error = bob.refused("task.get", task_id=created["id"])
    denied(error, 404, "scope_mismatch")
    assert error.detail == "not found"
    failed(alice.refused("task.get", task_id=str(uuid.uuid4())), 404, "not_found")
    # An administrator's agent gets no admin rights: it does not see alice's task either.
    admin = agent_of(orchestrator, rows(orchestrator.db, "SELECT id FROM users WHERE handle = 'admin'")[0]["id"])
    denied(admin.refused("task.get", task_id=created["id"]), 404, "scope_mismatch")


def test_task_list_pages_and_filters_the_user_s_own_tasks(orchestrator: Any, alice: Agent, bob: Agent) -> None:
    made = [alice.call("task.create", **COMMAND, task_name=f"t{i}")["id"] for i in range(3)]
    bob.call("task.create", **COMMAND)
    first = alice.call("task.list", limit=2)
    assert [t["id"] for t in first["tasks"]] == made[::-1][:2]
    assert (first["next_offset"], first["next_cursor"]) == (2, "2")
    assert all(t["planning_state"] == "draft" and t["status"] == "queued" for t in first["tasks"])
    rest = alice.call("task.list", limit=2, cursor=first["next_cursor"], offset=0)
    assert [t["id"] for t in rest["tasks"]] == made[:1] and "next_cursor" not in rest
    alice.call("task.cancel", task_id=made[0])
    assert [t["id"] for t in alice.call("task.list", status="canceled")["tasks"]] == [made[0]]
    assert len(alice.call("task.list")["tasks"]) == 3
    assert alice.call("task.list", user_id=str(alice.principal.user_id))["tasks"]
    denied(alice.refused("task.list", cursor="two"), 400, "invalid_arguments")
    denied(alice.refused("task.list", cursor="9999999999"), 400, "invalid_arguments")


def test_task_result_and_logs_show_the_jobs_output(orchestrator: Any, alice: Agent, bob: Agent) -> None:
    created = alice.call("task.create", **COMMAND)
    empty = alice.call("task.result", task_id=created["id"])
    assert empty == {"task_id": created["id"], "status": "queued", "planning_state": "draft", "jobs": []}
    alice.call("task.ready", task_id=created["id"])
    [job] = jobs_of(orchestrator.db, created["id"])
    store_result(orchestrator, str(job["id"]), "hello\n", "careful\n")
    result = alice.call("task.result", task_id=created["id"])
    [shown] = result["jobs"]
    assert (shown["id"], shown["status"]) == (str(job["id"]), "completed")
    assert json.loads(shown["result"])["stdout"] == "hello\n"
    assert TIMESTAMP.fullmatch(shown["ended_at"]) and "started_at" not in shown
    assert alice.call("task.result", task_id=created["id"], offset=1)["jobs"] == []
    assert alice.call("task.logs", task_id=created["id"]) == {
        "task_id": created["id"],
        "stdout": "hello\n",
        "stderr": "careful\n",
    }
    assert alice.call("task.logs", task_id=created["id"], stream="stderr")["stdout"] == ""
    for name in ("task.result", "task.logs"):
        denied(bob.refused(name, task_id=created["id"]), 404, "scope_mismatch")


def test_task_cancel_cancels_through_the_rest_code_path_and_only_one_s_own(
    orchestrator: Any, alice: Agent, bob: Agent
) -> None:
    created = alice.call("task.create", **COMMAND)
    alice.call("task.ready", task_id=created["id"])
    denied(bob.refused("task.cancel", task_id=created["id"]), 404, "scope_mismatch")
    assert task_status(orchestrator.db, created["id"]) == "pending"
    answer, call = alice.traced("task.cancel", task_id=created["id"])
    assert answer == {"task_id": created["id"], "canceled": True}
    assert call.task_id == uuid.UUID(created["id"])
    assert task_status(orchestrator.db, created["id"]) == "canceled"
    assert [j["status"] for j in jobs_of(orchestrator.db, created["id"])] == ["canceled"]
    assert alice.call("task.get", task_id=created["id"])["status"] == "canceled"


# -- jobs, projects, nodes -------------------------------------------------------------------------


def test_job_get_shows_a_job_of_one_s_own_task(orchestrator: Any, alice: Agent, bob: Agent) -> None:
    created = alice.call("task.create", **COMMAND)
    alice.call("task.ready", task_id=created["id"])
    [job] = jobs_of(orchestrator.db, created["id"])
    got, call = alice.traced("job.get", job_id=str(job["id"]))
    assert list(got) == ["id", "task_id", "status", "payload", "created_at", "updated_at"]
    assert (got["task_id"], got["status"]) == (created["id"], "queued")
    assert json.loads(got["payload"])["command"] == ["sh", "-c", "echo hi"]
    assert (call.job_id, call.task_id) == (job["id"], uuid.UUID(created["id"]))
    store_result(orchestrator, str(job["id"]), "out", "")
    assert json.loads(alice.call("job.get", job_id=str(job["id"]))["result"])["stdout"] == "out"
    denied(bob.refused("job.get", job_id=str(job["id"])), 404, "scope_mismatch")
    failed(alice.refused("job.get", job_id=str(uuid.uuid4())), 404, "not_found")


def test_projects_are_the_user_s_authorized_set_only(
    orchestrator: Any, alice: Agent, bob: Agent, user_ids: dict[str, uuid.UUID]
) -> None:
    with orchestrator.db.session() as session:
        session.add(Project(slug="team-y", display_name="Team Y", description="shared"))
        others = default_project(session, user_ids["bob"])
    listed = alice.call("project.list")
    [project] = listed["projects"]
    assert listed["next_cursor"] == ""
    assert (project["slug"], project["display_name"], project["is_active"]) == (
        f"default-{user_ids['alice']}",
        "Default Project",
        True,
    )
    assert set(project) == {"id", "slug", "display_name", "is_active", "created_at", "updated_at"}
    assert TIMESTAMP.fullmatch(project["created_at"])
    assert alice.call("project.list", q="default")["projects"] == [project]
    assert alice.call("project.list", q="team")["projects"] == []
    assert alice.call("project.list", q="%")["projects"] == []
    assert alice.call("project.list", offset=1)["projects"] == []
    by_id, call = alice.traced("project.get", project_id=project["id"])
    assert by_id == project and str(call.project_id) == project["id"]
    assert alice.call("project.get", slug=project["slug"]) == project
    denied(alice.refused("project.get", project_id=str(others)), 404, "scope_mismatch")
    denied(alice.refused("project.get", slug="team-y"), 404, "scope_mismatch")
    failed(alice.refused("project.get", slug="nope"), 404, "not_found")
    denied(alice.refused("project.get"), 400, "invalid_arguments")
    denied(alice.refused("project.get", project_id=project["id"], slug=project["slug"]), 400, "invalid_arguments")


def _nodes(orchestrator: Any, count: int) -> None:
    now = dt.datetime.now(dt.UTC)
    with orchestrator.db.session() as session:
        for i in range(count):
            session.add(
                Node(
                    node_slug=f"node-{i:03d}",
                    status="active",
                    worker_api_target_url=f"http://10.0.0.{i % 250}:12090",
                    worker_api_url_override="http://override:1",
                    worker_api_bearer_token="ciphertext-secret",
                    config_version="01J0000000000000000000000",
                    last_seen_at=now,
                )
            )


def test_nodes_are_shown_without_their_token_or_address(orchestrator: Any, alice: Agent) -> None:
    _nodes(orchestrator, 1)
    node = alice.call("node.get", node_slug="node-000")
    assert set(node) == {
        "id",
        "node_slug",
        "status",
        "config_version",
        "last_seen_at",
        "created_at",
        "updated_at",
    }
    assert (node["status"], node["config_version"]) == ("active", "01J0000000000000000000000")
    assert TIMESTAMP.fullmatch(node["last_seen_at"])
    shown = json.dumps(alice.call("node.list"))
    assert "ciphertext-secret" not in shown and "10.0.0" not in shown and "override" not in shown
    failed(alice.refused("node.get", node_slug="node-999"), 404, "not_found")


def test_lists_are_paged_50_by_default_and_200_at_most(orchestrator: Any, alice: Agent) -> None:
    _nodes(orchestrator, 205)
    first = alice.call("node.list")
    assert len(first["nodes"]) == 50 and first["next_cursor"] == "50"
    assert first["nodes"][0]["node_slug"] == "node-000"
    # The schema caps limit at 200; a caller not held to it is capped by the tool.
    with pytest.raises(InvalidArguments):
        alice.call("node.list", limit=1000)
    most = alice.call("node.list", checked=False, limit=1000)
    assert len(most["nodes"]) == 200 and most["next_cursor"] == "200"
    last = alice.call("node.list", cursor=most["next_cursor"])
    assert [n["node_slug"] for n in last["nodes"]] == [f"node-{i}" for i in range(200, 205)]
    assert "next_cursor" not in last
    assert alice.call("node.list", offset=204, limit=5)["nodes"][0]["node_slug"] == "node-204"


# -- help ------------------------------------------------------------------------------------------

FIXED_TOPICS = ["tools", "gateway", "projects"]


def test_help_list_names_only_the_tools_the_role_may_call(
    orchestrator: Any, alice: Agent, user_ids: dict[str, uuid.UUID]
) -> None:
    listed = alice.call("help.list")
    assert [t["topic"] for t in listed["topics"]] == [*CATALOG, *FIXED_TOPICS]
    summaries = {t["topic"]: t["summary"] for t in listed["topics"]}
    assert summaries["task.create"] == "Create a task of the user's as a draft; nothing runs until task.ready."
    assert all(summaries.values()) and "help.get" in listed["hint"]
    sandbox = agent_of(orchestrator, user_ids["alice"], "sandbox")
    sandbox_topics = [t["topic"] for t in sandbox.call("help.list")["topics"]]
    assert sandbox_topics == ["help.list", "help.get", "artifact.get", *FIXED_TOPICS]
    analyst = [t["topic"] for t in agent_of(orchestrator, user_ids["alice"], "pa").call("help.list")["topics"]]
    assert {"task.get", "task.list", "job.get", "project.list"} <= set(analyst)
    assert not {"task.create", "task.ready", "task.cancel", "node.list", "node.get"} & set(analyst)


@pytest.mark.parametrize("settings_overrides", [{"mcp_disabled_tools": ["task.cancel", "node.get"]}])
def test_help_leaves_out_disabled_tools(alice: Agent) -> None:
    topics = [t["topic"] for t in alice.call("help.list")["topics"]]
    assert "task.cancel" not in topics and "node.get" not in topics and "task.get" in topics
    failed(alice.refused("help.get", topic="node.get"), 404, "not_found")


def test_help_get_describes_a_tool_a_topic_or_the_overview(orchestrator: Any, alice: Agent) -> None:
    create = alice.call("help.get", topic="task.create")
    assert create["truncated"] is False
    content = create["content"]
    assert content.startswith("# task.create\n\nCreate a task of the user's as a draft")
    assert "| `prompt` | string | yes | 1 to 2000 characters |" in content
    assert "| `input_mode` | string | no | one of `prompt`, `script`, `commands` |" in content
    assert "| `project_id` | string | no | a UUID |" in content
    assert "| `attachments` | array of string | no | at most 16 items, each at most 2048 characters |" in content
    assert "changes state" in content
    listing = alice.call("help.get", topic="task.list")["content"]
    assert (
        "| `limit` | integer | no | 1 to 200 |" in listing
        and "| `offset` | integer | no | 0 to 2147483647 |" in listing
    )
    assert "| `cursor` | string | no | at most 10 characters |" in listing
    assert "No arguments." in alice.call("help.get", topic="help.list")["content"]
    assert alice.call("help.get", topic="Gateway")["content"].startswith("# The gateway")
    overview = alice.call("help.get")["content"]
    assert overview.startswith("# cynode MCP gateway") and "- `node.get`: " in overview
    assert "- `projects`: " in overview
    assert alice.call("help.get", path="docs/tech_specs/mcp_tools/task_tools.md")["content"].startswith(overview)
    failed(alice.refused("help.get", topic="no.such.tool"), 404, "not_found")
    sandbox = agent_of(orchestrator, alice.principal.user_id, "sandbox")
    failed(sandbox.refused("help.get", topic="task.create"), 404, "not_found")
    assert "task.create" not in sandbox.call("help.get")["content"]


class WordyTool:
    """A plugin offering a tool whose description is longer than help may answer, and a short one."""

    @hookimpl
    def cynode_register_mcp_tools(self, register: Any) -> None:
        closed: dict[str, Any] = {"type": "object", "additionalProperties": False}
        nothing = lambda call, arguments: {}  # noqa: E731 - never called: only help reads these
        # "# task.essay" and a blank line, then 9 ASCII bytes: 32 KiB ends inside a two-byte character.
        register(McpTool("task.essay", "An essay." + "\u00e9" * 20_000, closed | {"properties": {}}, nothing))
        lang = {"lang": {"type": "string", "pattern": "^[a-z]{2}$"}}
        register(McpTool("task.terse", "Terse.", closed | {"properties": lang}, nothing))


def test_help_content_is_cut_at_32_kib_on_a_character_boundary(
    orchestrator: Any, user_ids: dict[str, uuid.UUID]
) -> None:
    from cynode_core.orchestrator.app import create_app, orchestrator_plugin_manager

    resources = orchestrator.resources
    pm = orchestrator_plugin_manager(resources.settings, resources.db)
    pm.register(WordyTool(), name="wordy")
    app = create_app(resources.settings, resources.db, resources.secrets, plugin_manager=pm)
    agent = Agent(orchestrator, agent_of(orchestrator, user_ids["alice"]).principal, app=app)
    essay = agent.call("help.get", topic="task.essay")
    assert essay["truncated"] is True
    terse = agent.call("help.get", topic="task.terse")
    assert "| `lang` | string | no | matching `^[a-z]{2}$` |" in terse["content"] and not terse["truncated"]
    raw = essay["content"].encode()
    assert len(raw) == 32 * 1024 - 1
    assert essay["content"].endswith("\u00e9")
    summary = {t["topic"]: t["summary"] for t in agent.call("help.list")["topics"]}["task.essay"]
    assert len(summary) <= 200 and summary.endswith("...")
    assert agent.call("help.get", topic="task.get")["truncated"] is False


# -- through the gateway ---------------------------------------------------------------------------


def test_through_post_v1_mcp_tools_call_the_tools_answer_and_are_audited(
    orchestrator: Any, api: Any, alice: Agent, bob: Agent, user_ids: dict[str, uuid.UUID]
) -> None:
    def call(agent: Agent, tool_name: str, **arguments: Any) -> Any:
        body = {"tool_name": tool_name, "arguments": arguments}
        return api.post("/v1/mcp/tools/call", token=agent.token, json=body, headers={"X-Request-Id": "req-e2e"})

    created = call(alice, "task.create", prompt="echo e2e", input_mode="commands", priority="high")
    assert created.status_code == 200, created.text
    assert created.headers["Content-Type"] == "application/json"
    task = created.json()
    assert (task["status"], task["planning_state"]) == ("queued", "draft")
    assert jobs_of(orchestrator.db, task["id"]) == []
    ready = call(alice, "task.ready", task_id=task["id"])
    assert ready.status_code == 200 and ready.json()["planning_state"] == "ready"
    assert len(jobs_of(orchestrator.db, task["id"])) == 1
    assert call(alice, "task.get", task_id=task["id"]).json()["status"] == "queued"

    refused = call(bob, "task.get", task_id=task["id"])
    assert refused.status_code == 404
    assert refused.headers["Content-Type"] == "application/problem+json"
    problem = refused.json()
    assert (problem["detail"], problem["error_type"]) == ("not found", "not_found")
    assert alice.token not in refused.text and task["prompt"] not in refused.text
    missing = call(alice, "task.get", task_id=str(uuid.uuid4()))
    assert (missing.status_code, missing.json()["error_type"]) == (404, "not_found")
    again = call(alice, "task.ready", task_id=task["id"])
    assert again.status_code == 200 and len(jobs_of(orchestrator.db, task["id"])) == 1
    topics = [t["topic"] for t in call(alice, "help.list").json()["topics"]]
    assert topics == [*CATALOG, *FIXED_TOPICS]
    canceled = call(alice, "task.cancel", task_id=task["id"])
    assert canceled.json() == {"task_id": task["id"], "canceled": True}
    assert task_status(orchestrator.db, task["id"]) == "canceled"

    with orchestrator.db.session() as session:
        own = default_project(session, user_ids["alice"])
    audited = rows(
        orchestrator.db,
        "SELECT tool_name, decision, status, error_type, user_id, task_id, project_id, request_id "
        "FROM mcp_tool_call_audit_log ORDER BY created_at, id",
    )
    assert [(r["tool_name"], r["decision"], r["status"], r["error_type"]) for r in audited] == [
        ("task.create", "allow", "success", None),
        ("task.ready", "allow", "success", None),
        ("task.get", "allow", "success", None),
        ("task.get", "deny", "error", "scope_mismatch"),
        ("task.get", "allow", "error", "not_found"),
        ("task.ready", "allow", "success", None),
        ("help.list", "allow", "success", None),
        ("task.cancel", "allow", "success", None),
    ]
    task_id = uuid.UUID(task["id"])
    assert [(r["task_id"], r["project_id"]) for r in audited[:3]] == [(task_id, own)] * 3
    assert (audited[3]["user_id"], audited[3]["task_id"], audited[3]["project_id"]) == (user_ids["bob"], task_id, None)
    assert {r["request_id"] for r in audited} == {"req-e2e"}
