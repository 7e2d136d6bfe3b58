"""Task planning state: ``planning_state`` on ``POST /v1/tasks`` and ``POST /v1/tasks/{id}/ready``.

The orchestrator app runs in this process on the test's own PostgreSQL
database, its routes called through ``api`` (straight into the app). The
job rows are read from the database. The last test also runs the real
dispatcher threads against one node's real Worker API on loopback over a
scripted sandbox runtime (``harness.worker``), to see that a draft is never
sent to a node and that its job runs once it is made ready.
"""

from __future__ import annotations

import json
import threading
import uuid
from collections.abc import Callable
from typing import Any

import pytest
import requests
from acceptance.conftest import assert_problem
from harness.api import ApiClient
from harness.mcp import call_tool, mint, user_id
from harness.nodes import NodeHandle, make_dispatchable
from harness.orchestrator import USER_PASSWORD, InProcessDispatcher, create_users, jobs_of, rows, task_status
from harness.processes import wait_until
from harness.worker import WorkerNode
from sqlalchemy import text

from cynode_core.orchestrator.models import Task
from cynode_core.orchestrator.services.task_ready import ready_task

COMMAND = {"prompt": "echo planned", "input_mode": "commands"}


@pytest.fixture
def users(orchestrator: Any, api: ApiClient) -> dict[str, str]:
    """Access tokens of alice and bob."""
    create_users(orchestrator.db, "alice", "bob")
    return {h: api.login(h, USER_PASSWORD, expect=200).json()["access_token"] for h in ("alice", "bob")}


@pytest.fixture
def as_alice(api: ApiClient, users: dict[str, str]) -> Callable[..., requests.Response]:
    """``(method, path, json=...)`` as alice."""

    def send(method: str, path: str, **kwargs: Any) -> requests.Response:
        return api.send(method, path, token=users["alice"], **kwargs)

    return send


def _create(as_alice: Callable[..., requests.Response], body: dict[str, Any]) -> dict[str, Any]:
    resp = as_alice("POST", "/v1/tasks", json=body)
    assert resp.status_code == 201, resp.text
    return dict(resp.json())


def _metadata(orchestrator: Any, task_id: str) -> Any:
    return rows(orchestrator.db, "SELECT metadata FROM tasks WHERE id = :id", id=task_id)[0]["metadata"]


def test_a_rest_task_still_starts_at_once(orchestrator: Any, as_alice: Any) -> None:
    created = _create(as_alice, COMMAND)
    assert (created["status"], created["planning_state"]) == ("queued", "ready")
    [job] = jobs_of(orchestrator.db, created["id"])
    assert job["status"] == "queued"
    assert job["payload"]["command"] == ["sh", "-c", "echo planned"]
    assert _metadata(orchestrator, created["id"]) is None
    explicit = _create(as_alice, {**COMMAND, "planning_state": "ready"})
    assert explicit["planning_state"] == "ready" and len(jobs_of(orchestrator.db, explicit["id"])) == 1
    for path in (f"/v1/tasks/{created['id']}", f"/v1/tasks/{created['id']}/result"):
        assert as_alice("GET", path).json()["planning_state"] == "ready"
    listed = as_alice("GET", "/v1/tasks").json()["tasks"]
    assert [t["planning_state"] for t in listed] == ["ready", "ready"]


def test_a_draft_has_no_job_until_it_is_made_ready_with_the_options_of_its_creation(
    orchestrator: Any, as_alice: Any
) -> None:
    body = {
        "prompt": "echo from-draft",
        "input_mode": "commands",
        "use_inference": True,
        "task_name": "later",
        "attachments": ["notes.txt"],
        "planning_state": "draft",
    }
    draft = _create(as_alice, body)
    assert (draft["status"], draft["planning_state"]) == ("queued", "draft")
    assert draft["attachments"] == ["notes.txt"] and draft["task_name"] == "later"
    assert jobs_of(orchestrator.db, draft["id"]) == []
    assert task_status(orchestrator.db, draft["id"]) == "pending"
    assert _metadata(orchestrator, draft["id"]) == {
        "cynode_pending_exec": {"use_sba": False, "use_inference": True, "input_mode": "commands"}
    }
    result = as_alice("GET", f"/v1/tasks/{draft['id']}/result").json()
    assert result == {"task_id": draft["id"], "status": "queued", "planning_state": "draft", "jobs": []}
    assert as_alice("GET", "/v1/tasks/later").json()["planning_state"] == "draft"

    # By name, with a body that is ignored.
    ready = as_alice("POST", "/v1/tasks/later/ready", json={"planning_state": "draft", "prompt": "rm -rf /"})
    assert ready.status_code == 200, ready.text
    shown = ready.json()
    assert (shown["id"], shown["status"], shown["planning_state"]) == (draft["id"], "queued", "ready")
    assert shown["attachments"] == ["notes.txt"] and shown["prompt"] == "echo from-draft"
    [job] = jobs_of(orchestrator.db, draft["id"])
    assert job["status"] == "queued"
    assert job["payload"]["command"] == ["sh", "-c", "echo from-draft"]
    assert job["payload"]["use_inference"] is True
    assert job["payload"]["image"] == orchestrator.settings.prompt_image  # as a command task with inference
    assert _metadata(orchestrator, draft["id"]) is None  # the options left with the draft

    # Idempotent: the same answer, no second job.
    again = as_alice("POST", f"/v1/tasks/{draft['id']}/ready")
    assert again.status_code == 200, again.text
    assert again.json()["planning_state"] == "ready"
    assert [j["id"] for j in jobs_of(orchestrator.db, draft["id"])] == [job["id"]]


def test_a_prompt_draft_gets_the_prompt_job_a_ready_create_gets(orchestrator: Any, as_alice: Any) -> None:
    now = _create(as_alice, {"prompt": "Say hi"})
    draft = _create(as_alice, {"prompt": "Say hi", "planning_state": "draft"})
    assert as_alice("POST", f"/v1/tasks/{draft['id']}/ready").status_code == 200
    [ready_job] = jobs_of(orchestrator.db, draft["id"])
    [direct_job] = jobs_of(orchestrator.db, now["id"])
    assert ready_job["payload"] == direct_job["payload"]


def test_two_readies_at_once_make_one_job(orchestrator: Any, as_alice: Any) -> None:
    """The second ready waits for the first's row lock, then finds the task ready: no second job."""
    draft = _create(as_alice, {**COMMAND, "planning_state": "draft"})
    db, settings, task_id = orchestrator.db, orchestrator.settings, uuid.UUID(draft["id"])
    second: dict[str, Any] = {}
    with db.session() as first:
        ready_task(first, settings, first.get(Task, task_id))

        def ready_again() -> None:
            with db.session() as session:
                second["state"] = ready_task(session, settings, session.get(Task, task_id)).planning_state

        racer = threading.Thread(target=ready_again)
        racer.start()
        racer.join(1.0)
        assert racer.is_alive(), "the second ready did not wait for the first's lock"
    racer.join(10)
    assert second == {"state": "ready"}
    assert len(jobs_of(orchestrator.db, draft["id"])) == 1


def test_ready_refuses_a_canceled_draft_and_a_draft_with_jobs(orchestrator: Any, as_alice: Any) -> None:
    draft = _create(as_alice, {**COMMAND, "planning_state": "draft"})
    assert as_alice("POST", f"/v1/tasks/{draft['id']}/cancel").status_code == 200
    refused = as_alice("POST", f"/v1/tasks/{draft['id']}/ready")
    body = assert_problem(refused, 409, "task is not in a runnable state")
    assert body["type"] == "https://cynode.ai/specs/conflict"
    assert jobs_of(orchestrator.db, draft["id"]) == []
    assert rows(orchestrator.db, "SELECT planning_state FROM tasks WHERE id = :id", id=draft["id"]) == [
        {"planning_state": "draft"}
    ]

    # A draft that somehow has a job (none of our paths makes one): refused, nothing added.
    other = _create(as_alice, {**COMMAND, "planning_state": "draft"})
    with orchestrator.db.session() as session:
        session.execute(
            text("INSERT INTO jobs (id, task_id, status) VALUES (gen_random_uuid(), :t, 'queued')"),
            {"t": other["id"]},
        )
    assert_problem(as_alice("POST", f"/v1/tasks/{other['id']}/ready"), 409, "task already has jobs")
    assert len(jobs_of(orchestrator.db, other["id"])) == 1


def test_ready_of_another_users_task_or_no_task_is_404(
    orchestrator: Any, api: ApiClient, users: dict[str, str], as_alice: Any
) -> None:
    draft = _create(as_alice, {**COMMAND, "task_name": "mine", "planning_state": "draft"})
    for ref in (draft["id"], "mine", "00000000-0000-4000-8000-000000000000"):
        resp = api.post(f"/v1/tasks/{ref}/ready", token=users["bob"])
        assert_problem(resp, 404, "Task not found")
    assert_problem(api.post(f"/v1/tasks/{draft['id']}/ready"), 401)
    assert jobs_of(orchestrator.db, draft["id"]) == []


@pytest.mark.parametrize(
    "value",
    [5, True, ["draft"], {"s": "draft"}, None, "", "Draft", "running", "draft\u0000", "\ud800"],
    ids=["int", "bool", "list", "object", "null", "empty", "capital", "unknown", "nul", "lone-surrogate"],
)
def test_a_bad_planning_state_is_400(orchestrator: Any, api: ApiClient, users: dict[str, str], value: Any) -> None:
    # ensure_ascii (json's default) writes the lone surrogate as the escape "\ud800", which is valid JSON text.
    data = json.dumps({**COMMAND, "planning_state": value})
    resp = api.post("/v1/tasks", data=data, headers={"Content-Type": "application/json"}, token=users["alice"])
    assert_problem(resp, 400, "Invalid request body")
    assert rows(orchestrator.db, "SELECT count(*) AS n FROM tasks") == [{"n": 0}]


class TestAutoReadyOff:
    @pytest.fixture
    def settings_overrides(self) -> dict[str, Any]:
        return {"task_auto_ready": False}

    def test_every_rest_task_is_a_draft(self, orchestrator: Any, as_alice: Any) -> None:
        made = [_create(as_alice, body) for body in (COMMAND, {**COMMAND, "planning_state": "ready"}, {"prompt": "hi"})]
        assert [t["planning_state"] for t in made] == ["draft", "draft", "draft"]
        assert all(jobs_of(orchestrator.db, t["id"]) == [] for t in made)
        assert as_alice("POST", f"/v1/tasks/{made[0]['id']}/ready").json()["planning_state"] == "ready"
        assert len(jobs_of(orchestrator.db, made[0]["id"])) == 1


class TestQueueLimit:
    @pytest.fixture
    def settings_overrides(self) -> dict[str, Any]:
        return {"max_queued_per_user": 1}

    def test_drafts_take_no_queue_room_and_a_ready_past_it_is_429(self, orchestrator: Any, as_alice: Any) -> None:
        drafts = [_create(as_alice, {**COMMAND, "planning_state": "draft"}) for _ in range(3)]
        assert as_alice("POST", f"/v1/tasks/{drafts[0]['id']}/ready").status_code == 200
        refused = as_alice("POST", f"/v1/tasks/{drafts[1]['id']}/ready")
        assert_problem(refused, 429)
        assert refused.headers["Retry-After"]
        assert jobs_of(orchestrator.db, drafts[1]["id"]) == []
        assert as_alice("GET", f"/v1/tasks/{drafts[1]['id']}").json()["planning_state"] == "draft"

    def test_a_ready_past_it_over_mcp_is_429_with_retry_after_and_audited(
        self, orchestrator: Any, api: ApiClient, as_alice: Any
    ) -> None:
        drafts = [_create(as_alice, {**COMMAND, "planning_state": "draft"}) for _ in range(2)]
        admin = api.login("admin", orchestrator.secrets.admin_password, expect=200).json()["access_token"]
        token = mint(api, admin, user_id(orchestrator.db, "alice"))["token"]
        assert call_tool(api, token, "task.ready", {"task_id": drafts[0]["id"]}).status_code == 200
        refused = call_tool(api, token, "task.ready", {"task_id": drafts[1]["id"]})
        assert (refused.status_code, refused.json()["error_type"]) == (429, "rate_limited"), refused.text
        assert int(refused.headers["Retry-After"]) >= 1
        assert jobs_of(orchestrator.db, drafts[1]["id"]) == []
        audit = rows(
            orchestrator.db, "SELECT decision, status, error_type FROM mcp_tool_call_audit_log ORDER BY created_at"
        )
        assert [tuple(r.values()) for r in audit] == [("allow", "success", None), ("allow", "error", "rate_limited")]


class TestDispatch:
    @pytest.fixture
    def settings_overrides(self) -> dict[str, Any]:
        return {"dispatcher_enabled": True, "dispatch_poll_interval": 0.2, "dispatch_workers": 1}

    def test_the_dispatcher_never_sends_a_draft_and_runs_it_once_ready(
        self, orchestrator: Any, api: ApiClient, as_alice: Any, worker: WorkerNode
    ) -> None:
        make_dispatchable(api, orchestrator.secrets.psk, NodeHandle.of("node-01", worker))
        running = InProcessDispatcher(orchestrator.app.extensions["cynode"])
        try:
            draft = _create(as_alice, {"prompt": "echo drafted", "input_mode": "commands", "planning_state": "draft"})
            first = _create(as_alice, {"prompt": "echo at-once", "input_mode": "commands"})
            wait_until(lambda: task_status(orchestrator.db, first["id"]) == "completed", 15, "the ready task to run")
            # The draft, created first, was never sent: the only job the node got is the ready task's.
            assert task_status(orchestrator.db, draft["id"]) == "pending"
            assert [" ".join(s.command) for s in worker.runtime.specs] == ["sh -c echo at-once"]

            assert as_alice("POST", f"/v1/tasks/{draft['id']}/ready").status_code == 200
            wait_until(lambda: task_status(orchestrator.db, draft["id"]) == "completed", 15, "the draft to run")
            assert [" ".join(s.command) for s in worker.runtime.specs] == ["sh -c echo at-once", "sh -c echo drafted"]
        finally:
            worker.runtime.release()
            running.stop()
