"""Steps of features/orchestrator/task_lifecycle.feature.

The orchestrator app runs in this process on the test's own PostgreSQL
database, its routes called through ``api`` (straight into the app), with
the real dispatcher threads running. Its one node is played by the test
(register, fetch config, ack, as a node agent does) in front of a node's
real Worker API on loopback over a scripted sandbox runtime (see
``harness.worker``); the feature calls it "the stub Worker API".
"""

from __future__ import annotations

import json
import re
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
from acceptance.conftest import Ctx, assert_problem, is_uuid
from harness.api import ApiClient
from harness.nodes import NodeHandle, ack, make_dispatchable
from harness.orchestrator import USER_PASSWORD, InProcessDispatcher, create_users, jobs_of, rows, task_status
from harness.processes import wait_until
from harness.worker import Script, WorkerNode
from pytest_bdd import given, parsers, scenarios, then, when

scenarios("orchestrator/task_lifecycle.feature")

WAIT = 15.0
API_STATUSES = ("queued", "running", "completed", "failed", "canceled", "superseded")
COMMAND = {"prompt": "echo hi", "input_mode": "commands"}
JSON = {"Content-Type": "application/json"}


def unescape(value: str) -> str:
    """Feature text writes a newline as ``\\n``."""
    return value.replace("\\n", "\n")


# -- fixtures --------------------------------------------------------------


@pytest.fixture
def settings_overrides() -> dict[str, Any]:
    return {"dispatcher_enabled": True, "lease_seconds": 3, "dispatch_poll_interval": 0.2, "dispatch_workers": 2}


@pytest.fixture
def dispatcher(orchestrator: Any, worker: WorkerNode) -> Iterator[InProcessDispatcher]:
    running = InProcessDispatcher(orchestrator.app.extensions["cynode"])
    yield running
    worker.runtime.release()  # a held job must not keep a dispatcher thread from stopping
    running.stop()


class Tokens(dict):
    """Access tokens by handle; a user other than the Background's logs in on first use."""

    def __init__(self, ctx: Ctx):
        super().__init__()
        self.ctx = ctx

    def __missing__(self, handle: str) -> str:
        self[handle] = self.ctx["api"].login(handle, USER_PASSWORD, expect=200).json()["access_token"]
        return self[handle]


def _user_id(orchestrator: Any, handle: str) -> str:
    return str(rows(orchestrator.db, "SELECT id FROM users WHERE handle = :h", h=handle)[0]["id"])


def _create(ctx: Ctx, api: ApiClient, body: dict[str, Any], handle: str = "alice") -> str:
    resp = api.post("/v1/tasks", json=body, token=ctx["tokens"][handle])
    assert resp.status_code == 201, resp.text
    return str(resp.json()["task_id"])


def _wait_status(orchestrator: Any, task_id: str, *statuses: str) -> str:
    def reached() -> str | None:
        status = task_status(orchestrator.db, task_id)
        return status if status in statuses else None

    return wait_until(reached, WAIT, f"task {task_id} to reach {statuses}")


def _state_of(orchestrator: Any, task_id: str) -> tuple[str | None, list[str]]:
    return task_status(orchestrator.db, task_id), [j["status"] for j in jobs_of(orchestrator.db, task_id)]


def _path(ctx: Ctx, template: str) -> str:
    return template.replace("{T}", ctx.get("T", "")).replace("{B}", ctx.get("B", ""))


# -- background ------------------------------------------------------------


@given("the gateway and control plane are running with one dispatchable node behind a stub Worker API")
def services_with_node(
    ctx: Ctx, orchestrator: Any, api: ApiClient, worker: WorkerNode, dispatcher: InProcessDispatcher
) -> None:
    assert api.get("/healthz").status_code == 200
    node = NodeHandle.of("node-01", worker)
    make_dispatchable(api, orchestrator.secrets.psk, node)
    ctx.update(node=node, tokens=Tokens(ctx))


@given(parsers.parse('users "{first}" and "{second}" exist and I am logged in as "{me}"'))
def users_exist(ctx: Ctx, orchestrator: Any, api: ApiClient, first: str, second: str, me: str) -> None:
    create_users(orchestrator.db, first, second)
    ctx["api"] = api
    pair = api.login(me, USER_PASSWORD, expect=200).json()
    ctx["tokens"][me] = pair["access_token"]
    ctx["refresh"] = {me: pair["refresh_token"]}


# -- givens ------------------------------------------------------------------


@given("no node is dispatchable")
def no_node(ctx: Ctx, api: ApiClient) -> None:
    ack(api, ctx["node"], "failed")


@given("I created a command task T")
def created_task(ctx: Ctx, api: ApiClient) -> None:
    ctx["T"] = _create(ctx, api, COMMAND)


@given("no node is dispatchable and I created a command task T")
def no_node_and_task(ctx: Ctx, api: ApiClient) -> None:
    no_node(ctx, api)
    created_task(ctx, api)


@given(parsers.parse('the stub Worker API answers status "{status}", exit_code {code:d}, stdout "{stdout}"'))
def stub_answers(worker: WorkerNode, status: str, code: int, stdout: str) -> None:
    worker.runtime.default = Script(status=status, exit_code=code, stdout=unescape(stdout))


@given(parsers.parse('I created the command task "{command}" and it reached "{status}"'))
def created_and_reached(ctx: Ctx, orchestrator: Any, api: ApiClient, command: str, status: str) -> None:
    ctx["T"] = _create(ctx, api, {"prompt": command, "input_mode": "commands"})
    _wait_status(orchestrator, ctx["T"], status)


@given(parsers.parse('"{handle}" created a command task B'))
def other_created(ctx: Ctx, orchestrator: Any, api: ApiClient, handle: str) -> None:
    ctx["B"] = _create(ctx, api, COMMAND, handle)
    ctx["B_before"] = _state_of(orchestrator, ctx["B"])


@given(parsers.parse('I created {mine:d} command tasks and "{handle}" created {theirs:d}'))
def created_several(ctx: Ctx, api: ApiClient, mine: int, handle: str, theirs: int) -> None:
    ctx["mine"] = [_create(ctx, api, COMMAND) for _ in range(mine)]
    ctx["theirs"] = [_create(ctx, api, COMMAND, handle) for _ in range(theirs)]


@given(parsers.parse('I have one "completed" task, one "failed" task and one "canceled" task'))
def one_of_each(ctx: Ctx, orchestrator: Any, api: ApiClient, worker: WorkerNode) -> None:
    worker.runtime.when_command_contains("exit 1", Script(status="failed", exit_code=1, stderr="failed on purpose\n"))
    worker.runtime.when_command_contains("sleep", Script(hold=True))
    by_status = {}
    for status, command in (("completed", "echo ok"), ("failed", "exit 1")):
        by_status[status] = _create(ctx, api, {"prompt": command, "input_mode": "commands"})
        _wait_status(orchestrator, by_status[status], status)
    by_status["canceled"] = _create(ctx, api, {"prompt": "sleep 300", "input_mode": "commands"})
    _wait_status(orchestrator, by_status["canceled"], "running")
    resp = api.post(f"/v1/tasks/{by_status['canceled']}/cancel", token=ctx["tokens"]["alice"])
    assert resp.status_code == 200, resp.text
    assert task_status(orchestrator.db, by_status["canceled"]) == "canceled"
    ctx["by_status"] = by_status


@given(parsers.parse('I created {first:d} tasks that are "{status1}", then {second:d} that are "{status2}"'))
def created_in_order(
    ctx: Ctx, orchestrator: Any, api: ApiClient, worker: WorkerNode, first: int, status1: str, second: int, status2: str
) -> None:
    assert (status1, status2) == ("completed", "failed")
    worker.runtime.when_command_contains("exit 1", Script(status="failed", exit_code=1))
    ctx["completed"], ctx["failed"] = [], []
    for count, status, command in ((first, status1, "echo ok"), (second, status2, "exit 1")):
        for _ in range(count):
            task_id = _create(ctx, api, {"prompt": command, "input_mode": "commands"})
            ctx[status].append(task_id)
    for task_id in ctx["completed"]:
        _wait_status(orchestrator, task_id, "completed")
    for task_id in ctx["failed"]:
        _wait_status(orchestrator, task_id, "failed")


@given(parsers.parse('the stub Worker API answers stdout "{stdout}" and stderr "{stderr}" and my task T completed'))
def logs_task(ctx: Ctx, orchestrator: Any, api: ApiClient, worker: WorkerNode, stdout: str, stderr: str) -> None:
    worker.runtime.default = Script(stdout=unescape(stdout), stderr=unescape(stderr))
    ctx["T"] = _create(ctx, api, COMMAND)
    _wait_status(orchestrator, ctx["T"], "completed")


# -- whens -------------------------------------------------------------------


@when(parsers.re(r"I POST /v1/tasks with (?P<body>\{.*\})$"))
def post_task_json(ctx: Ctx, orchestrator: Any, api: ApiClient, body: str) -> None:
    ctx["resp"] = api.post("/v1/tasks", json=json.loads(body), token=ctx["tokens"]["alice"])


@when(
    parsers.re(
        r"I POST /v1/tasks (?P<request>without an Authorization header|"
        r"with bearer <node JWT> and a valid body|with a truncated JSON body)$"
    )
)
def post_task_bad(ctx: Ctx, api: ApiClient, request: str) -> None:
    if request.startswith("without"):
        ctx["resp"] = api.post("/v1/tasks", json=COMMAND)
    elif "node JWT" in request:
        ctx["resp"] = api.post("/v1/tasks", json=COMMAND, token=ctx["node"].jwt)
    else:
        truncated = '{"prompt": "echo hello", "input_mode": "comm'
        ctx["resp"] = api.post("/v1/tasks", data=truncated, headers=JSON, token=ctx["tokens"]["alice"])


@when(parsers.re(r"I GET (?P<path>/v1/tasks\S*)$"))
def get_path(ctx: Ctx, api: ApiClient, path: str) -> None:
    ctx["resp"] = api.get(_path(ctx, path), token=ctx["tokens"]["alice"])


@when(parsers.re(r"I POST (?P<path>/v1/tasks/\{T\}/cancel)$"))
def post_cancel(ctx: Ctx, api: ApiClient, path: str) -> None:
    ctx["resp"] = api.post(_path(ctx, path), token=ctx["tokens"]["alice"])


@when(parsers.re(r'I, logged in as "(?P<handle>[^"]+)", call (?P<method>GET|POST) (?P<path>\S+)$'))
def call_as(ctx: Ctx, api: ApiClient, handle: str, method: str, path: str) -> None:
    ctx["call"] = (method, path)
    ctx["resp"] = api.send(method, _path(ctx, path), token=ctx["tokens"][handle])


def _stored_counts(orchestrator: Any) -> dict[str, int]:
    # rate_limit_counters is left out on purpose: a refused login attempt still counts against the address.
    tables = ("tasks", "jobs", "task_artifacts", "users", "refresh_sessions", "auth_audit_log")
    return {t: rows(orchestrator.db, f"SELECT count(*) AS n FROM {t}")[0]["n"] for t in tables}


@when(parsers.parse("I POST {path} with a body of 11 MiB"))
def post_oversize(ctx: Ctx, orchestrator: Any, api: ApiClient, path: str) -> None:
    ctx["counts"] = _stored_counts(orchestrator)
    blob = "x" * (11 * 1024 * 1024)
    body = {
        "/v1/tasks": {"prompt": blob, "input_mode": "commands"},
        "/v1/auth/login": {"handle": "alice", "password": blob},
        "/v1/auth/refresh": {"refresh_token": ctx["refresh"]["alice"] + blob},
    }[path]
    token = ctx["tokens"]["alice"] if path == "/v1/tasks" else None
    ctx["resp"] = api.post(path, data=json.dumps(body), headers=JSON, token=token)


# -- thens -------------------------------------------------------------------


@then('"id" equals "task_id", both a UUID')
def id_is_task_id(ctx: Ctx) -> None:
    body = ctx.resp.json()
    assert body["id"] == body["task_id"] and is_uuid(body["id"])
    ctx["T"] = body["task_id"]


@then('"status" is "queued" and "created_at", "updated_at" are RFC 3339 times')
def queued_with_times(ctx: Ctx) -> None:
    import datetime as dt

    body = ctx.resp.json()
    assert body["status"] == "queued"
    for key in ("created_at", "updated_at"):
        assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?(Z|[+-]\d\d:\d\d)", body[key]), body[key]
        assert dt.datetime.fromisoformat(body[key].replace("Z", "+00:00")).tzinfo is not None


@then("the tasks row has created_by equal to alice's id and project_id equal to alice's default project")
def row_owner(ctx: Ctx, orchestrator: Any) -> None:
    row = rows(orchestrator.db, "SELECT created_by, project_id, prompt FROM tasks WHERE id = :id", id=ctx["T"])[0]
    alice = _user_id(orchestrator, "alice")
    assert str(row["created_by"]) == alice
    project = rows(orchestrator.db, "SELECT id FROM projects WHERE slug = :s", s=f"default-{alice}")
    assert project and row["project_id"] == project[0]["id"]
    assert row["prompt"] == "echo hello"


@then(parsers.parse('exactly one job with status "{status}" exists for the task'))
def one_job(ctx: Ctx, orchestrator: Any, status: str) -> None:
    jobs = jobs_of(orchestrator.db, ctx["T"])
    assert [j["status"] for j in jobs] == [status]
    assert jobs[0]["payload"] == {"image": "alpine:latest", "command": ["sh", "-c", "echo hello"]}


@then("no tasks row is created")
def no_task_row(orchestrator: Any) -> None:
    assert rows(orchestrator.db, "SELECT count(*) AS n FROM tasks")[0]["n"] == 0
    assert rows(orchestrator.db, "SELECT count(*) AS n FROM jobs")[0]["n"] == 0


@then('the status is 200 with "task_id" T')
def ok_with_task_id(ctx: Ctx) -> None:
    assert ctx.resp.status_code == 200, ctx.resp.text
    assert ctx.resp.json()["task_id"] == ctx["T"]


@then(parsers.parse('"status" is one of {values}'))
def status_one_of(ctx: Ctx, values: str) -> None:
    allowed = re.findall(r'"([^"]+)"', values)
    assert tuple(allowed) == API_STATUSES
    assert ctx.resp.json()["status"] in allowed


@then('the status is 200 with "task_id" T, "status" "completed" and one entry in "jobs"')
def result_completed(ctx: Ctx) -> None:
    ok_with_task_id(ctx)
    body = ctx.resp.json()
    assert body["status"] == "completed" and len(body["jobs"]) == 1, body


@then('jobs[0] has "id", "status" "completed", "started_at" and "ended_at"')
def job_fields(ctx: Ctx, orchestrator: Any) -> None:
    job = ctx.resp.json()["jobs"][0]
    assert job["id"] == str(jobs_of(orchestrator.db, ctx["T"])[0]["id"])
    assert job["status"] == "completed" and job["started_at"] and job["ended_at"]


@then(parsers.parse('jobs[0].result parses as a RunJobResponse with "stdout" "{stdout}" and "exit_code" {code:d}'))
def job_result(ctx: Ctx, stdout: str, code: int) -> None:
    job = ctx.resp.json()["jobs"][0]
    assert isinstance(job["result"], str)
    result = json.loads(job["result"])
    assert result["version"] == 1 and result["task_id"] == ctx["T"] and result["job_id"] == job["id"]
    assert result["status"] == "completed" and result["stdout"] == unescape(stdout) and result["exit_code"] == code
    assert result["stderr"] == "" and result["truncated"] == {"stdout": False, "stderr": False}
    assert result["started_at"] and result["ended_at"]


@then('"status" is "queued" and jobs[0] has "status" "queued" and no "result"')
def queued_result(ctx: Ctx) -> None:
    assert ctx.resp.status_code == 200
    body = ctx.resp.json()
    assert body["status"] == "queued" and body["task_id"] == ctx["T"]
    assert len(body["jobs"]) == 1
    job = body["jobs"][0]
    assert job["status"] == "queued" and "result" not in job and "started_at" not in job and "ended_at" not in job


@then("the response is the same, apart from the id, as the same call with a random unknown UUID")
def same_as_unknown(ctx: Ctx, api: ApiClient) -> None:
    method, path = ctx["call"]
    unknown = str(uuid.uuid4())
    other = api.send(method, path.replace("{B}", unknown), token=ctx["tokens"]["alice"])
    assert other.status_code == ctx.resp.status_code
    assert other.headers["Content-Type"] == ctx.resp.headers["Content-Type"]
    theirs, unknowns = ctx.resp.text, other.text
    assert unknowns.replace(unknown, "<id>") == theirs.replace(ctx["B"], "<id>")
    assert sorted(other.headers.keys()) == sorted(ctx.resp.headers.keys())


@then(parsers.parse('GET /v1/tasks for "{handle}" does not list B'))
def not_listed(ctx: Ctx, api: ApiClient, handle: str) -> None:
    resp = api.get("/v1/tasks?limit=200", token=ctx["tokens"][handle])
    assert resp.status_code == 200
    assert ctx["B"] not in [t["task_id"] for t in resp.json()["tasks"]]


@then("B's status is unchanged")
def b_unchanged(ctx: Ctx, orchestrator: Any) -> None:
    assert _state_of(orchestrator, ctx["B"]) == ctx["B_before"] == ("pending", ["queued"])


@then("the same call by an administrator succeeds")
def admin_call(ctx: Ctx, orchestrator: Any, api: ApiClient) -> None:
    admin = api.login("admin", orchestrator.secrets.admin_password, expect=200).json()["access_token"]
    method, path = ctx["call"]
    resp = api.send(method, _path(ctx, path), token=admin)
    assert resp.status_code == 200, resp.text
    assert resp.json()["task_id"] == ctx["B"]


@then(parsers.parse('the status is 200 and "tasks" has {count:d} entries, all created by "{handle}"'))
def page_of_mine(ctx: Ctx, orchestrator: Any, count: int, handle: str) -> None:
    assert ctx.resp.status_code == 200, ctx.resp.text
    ids = [t["task_id"] for t in ctx.resp.json()["tasks"]]
    assert len(ids) == count
    owner = _user_id(orchestrator, handle)
    for task_id in ids:
        found = rows(orchestrator.db, "SELECT created_by FROM tasks WHERE id = :id", id=task_id)
        assert str(found[0]["created_by"]) == owner
    # newest first
    assert ids == list(reversed(ctx["mine"]))[:count]


@then(parsers.parse('"next_offset" is {offset:d}'))
def next_offset_is(ctx: Ctx, offset: int) -> None:
    body = ctx.resp.json()
    assert body["next_offset"] == offset and body["next_cursor"] == str(offset)


@then(parsers.parse('GET /v1/tasks?limit={limit:d}&offset={offset:d} returns {count:d} task and no "next_offset"'))
def last_page(ctx: Ctx, api: ApiClient, limit: int, offset: int, count: int) -> None:
    resp = api.get(f"/v1/tasks?limit={limit}&offset={offset}", token=ctx["tokens"]["alice"])
    assert resp.status_code == 200
    body = resp.json()
    assert [t["task_id"] for t in body["tasks"]] == [ctx["mine"][0]][:count]
    assert "next_offset" not in body and "next_cursor" not in body


@then(parsers.parse('every entry in "tasks" has "status" "{status}" and exactly one entry is returned'))
def only_status(ctx: Ctx, status: str) -> None:
    assert ctx.resp.status_code == 200
    tasks = ctx.resp.json()["tasks"]
    assert [t["status"] for t in tasks] == [status]
    assert tasks[0]["task_id"] == ctx["by_status"][status]


@then(parsers.parse("GET /v1/tasks?status={status} returns only the {label} task"))
def only_that_status(ctx: Ctx, api: ApiClient, status: str, label: str) -> None:
    resp = api.get(f"/v1/tasks?status={status}", token=ctx["tokens"]["alice"])
    assert resp.status_code == 200
    assert [(t["task_id"], t["status"]) for t in resp.json()["tasks"]] == [(ctx["by_status"][label], status)]


@then(parsers.parse('"tasks" has {count:d} entries, both "{status}", and "next_offset" is {offset:d}'))
def filtered_page(ctx: Ctx, count: int, status: str, offset: int) -> None:
    assert ctx.resp.status_code == 200
    body = ctx.resp.json()
    assert [t["status"] for t in body["tasks"]] == [status] * count
    assert [t["task_id"] for t in body["tasks"]] == list(reversed(ctx[status]))[:count]
    assert body["next_offset"] == offset


@then(
    parsers.parse(
        "GET /v1/tasks?status=completed&limit={limit:d}&offset={offset:d} returns the third completed task "
        'and no "next_offset"'
    )
)
def filtered_last_page(ctx: Ctx, api: ApiClient, limit: int, offset: int) -> None:
    resp = api.get(f"/v1/tasks?status=completed&limit={limit}&offset={offset}", token=ctx["tokens"]["alice"])
    body = resp.json()
    assert [t["task_id"] for t in body["tasks"]] == [ctx["completed"][0]]
    assert "next_offset" not in body


@then(parsers.parse('its "detail" names each allowed value: {values}'))
def detail_names(ctx: Ctx, values: str) -> None:
    detail = ctx.resp.json()["detail"]
    for value in re.findall(r'"([^"]+)"', values):
        assert re.search(rf"\b{value}\b", detail), (value, detail)


@then(parsers.parse('the status is 200 with "task_id" T, "stdout" "{stdout}" and "stderr" "{stderr}"'))
def logs_both(ctx: Ctx, stdout: str, stderr: str) -> None:
    ok_with_task_id(ctx)
    body = ctx.resp.json()
    assert (body["stdout"], body["stderr"]) == (unescape(stdout), unescape(stderr))


@then(
    parsers.re(
        r"GET /v1/tasks/\{T\}/logs\?stream=(?P<stream>\w+) "
        r'has "stdout" "(?P<stdout>[^"]*)" and "stderr" "(?P<stderr>[^"]*)"'
    )
)
def logs_one(ctx: Ctx, api: ApiClient, stream: str, stdout: str, stderr: str) -> None:
    resp = api.get(f"/v1/tasks/{ctx['T']}/logs?stream={stream}", token=ctx["tokens"]["alice"])
    assert resp.status_code == 200
    body = resp.json()
    assert body == {"task_id": ctx["T"], "stdout": unescape(stdout), "stderr": unescape(stderr)}


@then('the status is 200 with {"task_id": T, "canceled": true}')
def cancel_body(ctx: Ctx) -> None:
    assert ctx.resp.status_code == 200, ctx.resp.text
    assert ctx.resp.json() == {"task_id": ctx["T"], "canceled": True}


@then('GET /v1/tasks/{T} shows "status" "canceled" and its job has status "canceled"')
def shows_canceled(ctx: Ctx, orchestrator: Any, api: ApiClient) -> None:
    resp = api.get(f"/v1/tasks/{ctx['T']}", token=ctx["tokens"]["alice"])
    assert resp.json()["status"] == "canceled"
    result = api.get(f"/v1/tasks/{ctx['T']}/result", token=ctx["tokens"]["alice"]).json()
    assert [j["status"] for j in result["jobs"]] == ["canceled"]


@then("after a node becomes dispatchable the stub Worker API receives no job for T")
def never_dispatched(ctx: Ctx, orchestrator: Any, api: ApiClient, worker: WorkerNode) -> None:
    ack(api, ctx["node"], "applied")
    # A task created afterwards is dispatched, so the dispatcher did look at the queue.
    later = _create(ctx, api, COMMAND)
    _wait_status(orchestrator, later, "completed")
    assert [c.task_id for c in worker.run_calls()] == [later]
    assert task_status(orchestrator.db, ctx["T"]) == "canceled"
    assert [j["status"] for j in jobs_of(orchestrator.db, ctx["T"])] == ["canceled"]


@then(parsers.parse('I get a problem response with status {status:d} and type "{ptype}"'))
def problem_type(ctx: Ctx, status: int, ptype: str) -> None:
    assert assert_problem(ctx.resp, status)["type"] == ptype


@then("nothing is stored for the request")
def nothing_stored(ctx: Ctx, orchestrator: Any) -> None:
    assert _stored_counts(orchestrator) == ctx["counts"]
