"""Steps of features/orchestrator/dispatch.feature.

Nodes are played by the test: each is registered with the PSK, its config
fetched with the node JWT and acked, as a node agent does, in front of a
node's real Worker API on loopback (``harness.worker``: the node agent's own
Worker API app and job executor, over a scripted sandbox runtime that
records what it is asked to run). The feature calls them "stub Worker
APIs"; what their jobs print is scripted. The orchestrator runs in this
process (app through ``api``, real dispatcher threads) or, for the
scenarios tagged ``@orchestrator_process``, as a real ``cynode orchestrator
serve`` child process that the steps stop, restart and SIGKILL. Either way
it works on the test's own PostgreSQL database, which the steps also read
directly.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import http.server
import json
import logging
import secrets
import socket
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from acceptance.conftest import Ctx
from harness.api import ApiClient
from harness.nodes import NodeHandle, ack, fetch_config, make_dispatchable, register
from harness.orchestrator import USER_PASSWORD, InProcessDispatcher, create_users, jobs_of, rows, task_status
from harness.processes import Orchestrator, orchestrator_environ, wait_until
from harness.worker import Call, Script, WorkerNode
from pytest_bdd import given, parsers, scenarios, then, when
from sqlalchemy.engine import make_url

scenarios("orchestrator/dispatch.feature")

WAIT = 15.0
LEASE_SECONDS = 3


def unescape(value: str) -> str:
    """Feature text writes a newline as ``\\n``."""
    return value.replace("\\n", "\n")


class RawResponder:
    """One fixed HTTP answer to every request on a port: NOT a Worker API.

    The real Worker API answers a well-formed job with a ``RunJobResponse``;
    it never sends a 500 problem body for one, nor a 200 whose body is not
    JSON. A broken node, or another program on its port, could. For those two
    answers the node's Worker API is stopped and this takes its port.
    """

    def __init__(self, port: int, status: int, content_type: str, body: str):
        payload = body.encode()

        class Handler(http.server.BaseHTTPRequestHandler):
            def _answer(self) -> None:
                self.rfile.read(int(self.headers.get("Content-Length") or 0))
                self.send_response(status)
                self.send_header("Content-Type", content_type)
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

            do_GET = do_POST = _answer  # noqa: N815 - http.server's naming

            def log_message(self, *args: Any) -> None:
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", port), Handler)
        self.server.daemon_threads = True
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(timeout=5)


# -- the system under test -------------------------------------------------------


@dataclass
class System:
    """The orchestrator (in this process or a child process), the nodes' Worker APIs and the nodes in front of them."""

    orchestrator: Any  # conftest's OrchestratorUnderTest: the database and the secrets
    api: ApiClient  # the gateway
    control: ApiClient  # the control plane
    home: Path
    process: Orchestrator | None = None
    dispatcher: InProcessDispatcher | None = None
    workers: dict[str, WorkerNode] = field(default_factory=dict)
    nodes: dict[str, NodeHandle] = field(default_factory=dict)
    responders: list[RawResponder] = field(default_factory=list)
    seen_at_call: dict[str, tuple[str | None, str | None]] = field(default_factory=dict)

    @property
    def db(self) -> Any:
        return self.orchestrator.db

    def worker(self, name: str) -> WorkerNode:
        if name not in self.workers:
            worker = WorkerNode(self.home / name)
            worker.on_run.append(self._note_state)
            self.workers[name] = worker
        return self.workers[name]

    def _note_state(self, call: Call) -> None:
        """What the database said about the task and job at the moment the node was called."""
        found = rows(
            self.db,
            "SELECT t.status AS task, j.status AS job FROM jobs j JOIN tasks t ON t.id = j.task_id WHERE j.id = :id",
            id=call.job_id,
        )
        self.seen_at_call[str(call.job_id)] = (found[0]["task"], found[0]["job"]) if found else (None, None)

    def answer_raw(self, name: str, status: int, content_type: str, body: str) -> None:
        """Node ``name``'s port answers every request with this, instead of its Worker API."""
        worker = self.workers[name]
        worker.stop()
        self.responders.append(RawResponder(worker.port, status, content_type, body))

    def start_process(self) -> float:
        """Start the orchestrator process; the monotonic time it became healthy."""
        assert self.process is not None
        self.process.start().wait_healthy()
        return time.monotonic()


@pytest.fixture
def settings_overrides() -> dict[str, Any]:
    return {
        "dispatcher_enabled": True,
        "lease_seconds": LEASE_SECONDS,
        "dispatch_poll_interval": 0.2,
        "dispatch_workers": 2,
    }


@pytest.fixture(autouse=True)
def _capture_all_logs(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)


@pytest.fixture
def system(
    request: pytest.FixtureRequest, orchestrator: Any, api: ApiClient, database_url: str, tmp_path: Path
) -> Iterator[System]:
    if request.node.get_closest_marker("orchestrator_process"):
        env = orchestrator_environ(database_url, orchestrator.settings.home, orchestrator.secrets)
        process = Orchestrator(
            env, tmp_path, lease_seconds=LEASE_SECONDS, dispatch_poll_interval=0.2, dispatch_workers=2
        )
        sut = System(orchestrator, ApiClient(process.gateway), ApiClient(process.control), tmp_path, process=process)
    else:
        sut = System(orchestrator, api, api, tmp_path)
    try:
        if sut.process is not None:
            sut.start_process()
        else:
            sut.dispatcher = InProcessDispatcher(orchestrator.app.extensions["cynode"])
        yield sut
    finally:
        for worker in sut.workers.values():
            worker.runtime.release()  # held jobs must not keep a dispatcher thread from stopping
        if sut.dispatcher is not None:
            sut.dispatcher.stop()
        if sut.process is not None:
            sut.process.stop()
        for worker in sut.workers.values():
            worker.close()
        for responder in sut.responders:
            responder.close()


def _create(ctx: Ctx, system: System, prompt: str) -> str:
    resp = system.api.post("/v1/tasks", json={"prompt": prompt, "input_mode": "commands"}, token=ctx["token"])
    assert resp.status_code == 201, resp.text
    return str(resp.json()["task_id"])


def _wait_status(system: System, task_id: str, statuses: tuple[str, ...], timeout: float = WAIT) -> str:
    def reached() -> str | None:
        status = task_status(system.db, task_id)
        return status if status in statuses else None

    return wait_until(reached, timeout, f"task {task_id} to reach {statuses}")


def _job(system: System, task_id: str) -> Any:
    jobs = jobs_of(system.db, task_id)
    assert len(jobs) == 1, jobs
    return jobs[0]


def _result(job: Any) -> dict[str, Any]:
    # Stored as a jsonb object (the job contract's codec), not as JSON text inside jsonb.
    assert isinstance(job["result"], dict), job["result"]
    return job["result"]


def _node_id(system: System, slug: str) -> Any:
    return rows(system.db, "SELECT id FROM nodes WHERE node_slug = :s", s=slug)[0]["id"]


def _running_as_job(ctx: Ctx, system: System, prompt: str) -> None:
    """Create the task and wait until W1 has its jobs:run call: the task is then running as that job."""
    w1 = system.workers["W1"]
    ctx["T"] = _create(ctx, system, prompt)
    call = wait_until(
        lambda: next((c for c in w1.run_calls() if c.task_id == ctx["T"]), None), WAIT, "W1 to receive jobs:run for T"
    )
    ctx["J"] = call.job_id
    assert str(_job(system, ctx["T"])["id"]) == ctx["J"]
    assert task_status(system.db, ctx["T"]) == "running"


def _restart_killed(ctx: Ctx, system: System) -> None:
    assert system.process is not None
    system.process.kill()
    ctx["killed_at"] = time.monotonic()
    # Read after the kill: nobody renews it any more, so this is when it runs out.
    ctx["lease_at_kill"] = _job(system, ctx["T"])["lease_expires_at"]
    ctx["restarted_at"] = system.start_process()
    ctx["restarted_wall"] = dt.datetime.now(dt.UTC)


# -- background --------------------------------------------------------------------


@given(parsers.parse('the control plane and gateway are running and I am logged in as "{handle}"'))
def services_running(ctx: Ctx, system: System, handle: str) -> None:
    assert system.api.get("/healthz").status_code == 200
    create_users(system.db, handle)
    resp = system.api.login(handle, USER_PASSWORD)
    assert resp.status_code == 200, resp.text
    pair = resp.json()
    ctx.update(token=pair["access_token"], refresh=pair["refresh_token"], handle=handle)


@given(
    parsers.parse(
        'node "{slug}" registered with worker_api.base_url of stub Worker API {name}, fetched config and '
        'acked "applied"'
    )
)
def node_dispatchable(system: System, slug: str, name: str) -> None:
    node = system.nodes[slug] = NodeHandle.of(slug, system.worker(name))
    make_dispatchable(system.control, system.orchestrator.secrets.psk, node)


# -- the happy path ------------------------------------------------------------------


@when(parsers.parse('I create the command task "{command}"'))
def create_command(ctx: Ctx, system: System, command: str) -> None:
    ctx["T"] = _create(ctx, system, command)
    ctx["command"] = command


@then('W1 receives exactly one POST /v1/worker/jobs:run with header "Authorization: Bearer <worker_token>"')
def one_call_with_token(ctx: Ctx, system: System) -> None:
    _wait_status(system, ctx["T"], ("completed", "failed"))
    calls = system.workers["W1"].run_calls()
    assert len(calls) == 1, calls
    assert calls[0].method == "POST"
    assert calls[0].headers["Authorization"] == f"Bearer {system.nodes['node-01'].worker_token}"
    assert calls[0].headers["Content-Type"].startswith("application/json")
    ctx["call"] = calls[0]


@then('the body has "version" 1, the task\'s "task_id", a "job_id" equal to the stored job id')
def body_ids(ctx: Ctx, system: System) -> None:
    body = ctx["call"].body
    assert body["version"] == 1 and body["task_id"] == ctx["T"]
    assert body["job_id"] == str(_job(system, ctx["T"])["id"])


@then(parsers.parse('"sandbox.command" is {command} and "sandbox.image" is "{image}"'))
def sandbox_fields(ctx: Ctx, command: str, image: str) -> None:
    sandbox = ctx["call"].body["sandbox"]
    assert sandbox["command"] == json.loads(command)
    assert sandbox["image"] == image
    # Nothing else for a plain command task (orchestrator contract 6.1, 6.3).
    assert set(sandbox) == {"image", "command"}, sandbox


@then(parsers.parse('the job is assigned to "{slug}" and the task passes through "running" to "completed"'))
def assigned_and_passed(ctx: Ctx, system: System, slug: str) -> None:
    job = _job(system, ctx["T"])
    assert job["node_id"] == _node_id(system, slug)
    assert system.seen_at_call[str(job["id"])] == ("running", "running")
    assert task_status(system.db, ctx["T"]) == "completed" and job["status"] == "completed"
    assert job["started_at"] is not None and job["ended_at"] is not None and job["lease_id"] is None


@then("the job result stores W1's response verbatim")
def verbatim(ctx: Ctx, system: System) -> None:
    job = _job(system, ctx["T"])
    assert _result(job) == system.workers["W1"].responses[str(job["id"])]


# -- node choice ------------------------------------------------------------------------


@given(parsers.parse('node "{slug}" behind stub {name} registered and fetched config but acked "{status}"'))
def node_acked(system: System, slug: str, name: str, status: str) -> None:
    node = system.nodes[slug] = NodeHandle.of(slug, system.worker(name))
    register(system.control, system.orchestrator.secrets.psk, node)
    fetch_config(system.control, node)
    ack(system.control, node, status)


@given(parsers.parse('node "{slug}" behind stub {name} registered but never fetched config'))
def node_registered_only(system: System, slug: str, name: str) -> None:
    node = system.nodes[slug] = NodeHandle.of(slug, system.worker(name))
    register(system.control, system.orchestrator.secrets.psk, node)


@when(parsers.parse("I create {count:d} command tasks"))
def create_many(ctx: Ctx, system: System, count: int) -> None:
    ctx["tasks"] = [_create(ctx, system, f"echo {i}") for i in range(count)]


@then(parsers.parse("W1 receives all {count:d} jobs and W2 and W3 receive none"))
def only_w1(ctx: Ctx, system: System, count: int) -> None:
    for task_id in ctx["tasks"]:
        _wait_status(system, task_id, ("completed",))
    assert sorted(c.task_id for c in system.workers["W1"].run_calls()) == sorted(ctx["tasks"])
    assert len(ctx["tasks"]) == count
    assert system.workers["W2"].calls == [] and system.workers["W3"].calls == []
    node_01 = _node_id(system, "node-01")
    assert {j["node_id"] for t in ctx["tasks"] for j in jobs_of(system.db, t)} == {node_01}


# -- no dispatchable node ---------------------------------------------------------------


@given(parsers.parse('node "{slug}" has acked "{status}" for its current config'))
def node_acks_current(system: System, slug: str, status: str) -> None:
    ack(system.control, system.nodes[slug], status)


@when(parsers.parse("I create a command task T and wait {seconds:d} seconds"))
def create_and_wait(ctx: Ctx, system: System, seconds: int) -> None:
    ctx["T"] = _create(ctx, system, "echo waited")
    time.sleep(seconds)  # the point of the scenario: several dispatcher polls (0.2 s) pass


@then(parsers.parse('T is still "{status}"'))
def still(ctx: Ctx, system: System, status: str) -> None:
    resp = system.api.get(f"/v1/tasks/{ctx['T']}", token=ctx["token"])
    assert resp.json()["status"] == status
    job = _job(system, ctx["T"])
    assert job["status"] == "queued" and job["attempts"] == 0 and job["node_id"] is None
    assert system.workers["W1"].run_calls() == []


@then(parsers.parse('once "{slug}" acks "applied" T is dispatched and reaches "{status}"'))
def dispatched_after_ack(ctx: Ctx, system: System, slug: str, status: str) -> None:
    ack(system.control, system.nodes[slug], "applied")
    _wait_status(system, ctx["T"], (status,))
    assert [c.task_id for c in system.workers["W1"].run_calls()] == [ctx["T"]]


# -- worker-side failures ---------------------------------------------------------------


@given(
    parsers.re(
        r'W1 answers status "(?P<status>[^"]+)" with exit_code (?P<code>-?\d+) '
        r'and stderr "(?P<stderr>[^"]*)"'
    )
)
def w1_answers(system: System, status: str, code: str, stderr: str) -> None:
    system.workers["W1"].runtime.default = Script(status=status, exit_code=int(code), stderr=unescape(stderr))


@when("I create a command task T")
def create_t(ctx: Ctx, system: System) -> None:
    ctx["T"] = _create(ctx, system, "echo something")


@then(parsers.parse('T reaches "{status}" and its job has status "{job_status}"'))
def reaches_with_job(ctx: Ctx, system: System, status: str, job_status: str) -> None:
    _wait_status(system, ctx["T"], (status,))
    assert _job(system, ctx["T"])["status"] == job_status


@then(parsers.re(r'GET /v1/tasks/\{T\}/result shows the stored worker response with "exit_code" (?P<code>-?\d+)'))
def result_shows(ctx: Ctx, system: System, code: str) -> None:
    resp = system.api.get(f"/v1/tasks/{ctx['T']}/result", token=ctx["token"])
    assert resp.status_code == 200
    body = resp.json()
    assert body["status"] == "failed" and [j["status"] for j in body["jobs"]] == ["failed"]
    result = json.loads(body["jobs"][0]["result"])
    assert result == system.workers["W1"].responses[body["jobs"][0]["id"]]
    assert result["exit_code"] == int(code)


# -- a node that is down ------------------------------------------------------------------


@given("W1 has been stopped so its port refuses connections")
def w1_down(system: System) -> None:
    worker = system.workers["W1"]
    worker.stop()
    with socket.socket() as s:
        assert s.connect_ex(("127.0.0.1", worker.port)) != 0


@then(
    parsers.parse(
        'within {seconds:d} seconds T is "failed" and its job result holds a dispatch error naming the worker call'
    )
)
def failed_with_dispatch_error(ctx: Ctx, system: System, seconds: int) -> None:
    _wait_status(system, ctx["T"], ("failed",), timeout=seconds)
    job = _job(system, ctx["T"])
    result = _result(job)
    assert list(result) == ["error", "status", "version"]
    assert result["status"] == "failed" and result["version"] == 1
    assert "worker api call failed" in result["error"] and "connection refused" in result["error"], result
    ctx["job"] = job


@then(parsers.parse("the dispatcher tried W1 at most {count:d} times"))
def bounded_attempts(ctx: Ctx, system: System, count: int) -> None:
    assert 1 <= ctx["job"]["attempts"] <= count, ctx["job"]["attempts"]
    assert f"after {ctx['job']['attempts']} attempts" in _result(ctx["job"])["error"]


@then('no job stays "running" and the dispatcher keeps serving later tasks once W1 is back')
def serves_again(ctx: Ctx, system: System) -> None:
    assert rows(system.db, "SELECT count(*) AS n FROM jobs WHERE status = 'running'")[0]["n"] == 0
    system.workers["W1"].start()
    later = _create(ctx, system, "echo back")
    _wait_status(system, later, ("completed",))
    assert task_status(system.db, ctx["T"]) == "failed"


# -- answers that are not a 200 JSON result ------------------------------------------------


@given(parsers.parse("the dispatch HTTP timeout is {seconds:d} seconds"))
def short_dispatch_timeout(system: System, seconds: int) -> None:
    """The dispatch HTTP timeout is the job's timeout plus a margin (decisions.md, Node 4); shrink both."""
    assert system.dispatcher is not None
    state = system.orchestrator.app.extensions["cynode"]
    state.settings = dataclasses.replace(state.settings, job_timeout_seconds=1, dispatch_http_margin=float(seconds - 1))
    state.dispatcher.settings = state.settings


PROBLEM_500 = json.dumps(
    {"type": "urn:cynodeai:error:internal", "title": "Internal Server Error", "status": 500, "detail": "broken"}
)


@given(parsers.parse("W1 answers every jobs:run call with {answer}"))
def w1_answers_with(system: System, answer: str) -> None:
    worker = system.workers["W1"]
    if answer == "401 with a problem body":
        # The Worker API's own 401: it now expects a token the orchestrator does not hold.
        worker.set_token(secrets.token_urlsafe())
    elif answer == "no answer until the dispatch timeout":
        worker.runtime.default = Script(hold=True)
    elif answer == "500 with a problem body":
        system.answer_raw("W1", 500, "application/problem+json", PROBLEM_500)
    else:
        assert answer == "200 with a body that is not JSON", answer
        system.answer_raw("W1", 200, "text/plain; charset=utf-8", "<html>this is not JSON</html>")


@then(parsers.parse('T reaches "{status}" within {seconds:d} seconds'))
def reaches_within(ctx: Ctx, system: System, status: str, seconds: int) -> None:
    _wait_status(system, ctx["T"], (status,), timeout=seconds)
    job = _job(system, ctx["T"])
    assert job["status"] == "failed" and "worker api" in _result(job)["error"]


@then("no log line of the control plane contains <worker_token>")
def token_not_logged(system: System, caplog: pytest.LogCaptureFixture) -> None:
    token = system.nodes["node-01"].worker_token
    assert caplog.records, "nothing was logged at all"
    for record in caplog.records:
        assert token not in record.getMessage()
        assert token not in (caplog.handler.format(record) if record.exc_info else "")
    assert token not in caplog.text
    stored = rows(system.db, "SELECT result, last_error FROM jobs")
    assert token not in json.dumps([dict(j) for j in stored], default=str)


# -- no secret in the job ------------------------------------------------------------------


def _secret_values(ctx: Ctx, system: System) -> list[str]:
    orch = system.orchestrator
    values = [
        orch.secrets.psk,
        orch.secrets.jwt_secret,
        orch.secrets.admin_password,
        ctx["token"],
        ctx["refresh"],
        orch.resources.secrets.token_key.decode(),
    ]
    for node in system.nodes.values():
        values += [node.jwt, node.worker_token]
    password = make_url(orch.settings.database_url).password
    if password:
        values.append(str(password))
    return [v for v in values if v]


@then("the body W1 receives contains none of the secret values")
def no_secret_in_body(ctx: Ctx, system: System) -> None:
    _wait_status(system, ctx["T"], ("completed",))
    (call,) = system.workers["W1"].run_calls()
    raw = json.dumps(call.body)
    for value in _secret_values(ctx, system):
        assert value not in raw
    ctx["call"] = call


@then('"sandbox.env", if present, has no key whose value is a secret value')
def no_secret_in_env(ctx: Ctx, system: System) -> None:
    env = ctx["call"].body["sandbox"].get("env") or {}
    secrets = set(_secret_values(ctx, system))
    assert not [key for key, value in env.items() if value in secrets]


# -- restarts (a real orchestrator process) ----------------------------------------------------


@given(parsers.parse("no node is dispatchable and I created {count:d} command tasks"))
def queued_tasks(ctx: Ctx, system: System, count: int) -> None:
    ack(system.control, system.nodes["node-01"], "failed")
    ctx["tasks"] = {}
    for i in range(count):
        task_id = _create(ctx, system, f"echo queued-{i}")
        ctx["tasks"][task_id] = rows(system.db, "SELECT created_by, prompt FROM tasks WHERE id = :id", id=task_id)[0]


@when("the control plane and gateway are stopped and started again")
def stop_start(ctx: Ctx, system: System) -> None:
    assert system.process is not None
    system.process.stop()
    assert not system.process.alive()
    system.start_process()


@when(parsers.parse('"{slug}" acks "applied" again'))
def acks_again(system: System, slug: str) -> None:
    ack(system.control, system.nodes[slug], "applied")


@then(parsers.parse("each of the {count:d} tasks keeps its id, created_by and prompt"))
def tasks_kept(ctx: Ctx, system: System, count: int) -> None:
    assert len(ctx["tasks"]) == count
    alice = rows(system.db, "SELECT id FROM users WHERE handle = :h", h=ctx["handle"])[0]["id"]
    for task_id, before in ctx["tasks"].items():
        resp = system.api.get(f"/v1/tasks/{task_id}", token=ctx["token"])
        assert resp.status_code == 200, resp.text
        assert resp.json()["task_id"] == task_id and resp.json()["prompt"] == before["prompt"]
        after = rows(system.db, "SELECT created_by, prompt FROM tasks WHERE id = :id", id=task_id)[0]
        assert after == before and after["created_by"] == alice


@then(parsers.parse('W1 receives exactly one jobs:run per task and all {count:d} reach "completed"'))
def once_each(ctx: Ctx, system: System, count: int) -> None:
    for task_id in ctx["tasks"]:
        _wait_status(system, task_id, ("completed",), timeout=30)
    calls = system.workers["W1"].run_calls()
    assert sorted(c.task_id for c in calls) == sorted(ctx["tasks"]) and len(calls) == count


@given(
    parsers.parse(
        'W1 is idempotent by job_id, like the real Worker API, and a run of "{command}" takes {seconds:d} '
        'seconds and prints "{stdout}"'
    )
)
def idempotent_w1(system: System, command: str, seconds: int, stdout: str) -> None:
    """A repeated jobs:run waits for the run in progress and gets its result: the real Worker API's idempotency.

    Only the run itself is scripted; the same scenario against a real node
    agent and Podman is in tests/e2e.
    """
    runtime = system.workers["W1"].runtime
    runtime.when_command_contains(command, Script(stdout=unescape(stdout), delay=float(seconds)))


@given(parsers.parse('my command task T "{command}" is "running" as job J'))
def running_command(ctx: Ctx, system: System, command: str) -> None:
    _running_as_job(ctx, system, command)


@given('my command task T is "running" as job J')
def running_task(ctx: Ctx, system: System) -> None:
    _running_as_job(ctx, system, "echo running")


class LeaseWatch:
    """Samples T and its job from the database every 0.1 s, with the database's clock."""

    def __init__(self, system: System, task_id: str):
        self.samples: list[dict[str, Any]] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, args=(system, task_id), daemon=True)
        self._thread.start()

    def _run(self, system: System, task_id: str) -> None:
        while not self._stop.wait(0.1):
            found = rows(
                system.db,
                "SELECT t.status AS task, j.status AS job, j.lease_expires_at AS lease, "
                "now() AS at FROM tasks t JOIN jobs j ON j.task_id = t.id WHERE t.id = :id",
                id=task_id,
            )
            self.samples.extend(found)

    def stop(self) -> list[dict[str, Any]]:
        self._stop.set()
        self._thread.join(timeout=5)
        return self.samples


@when("the control plane is killed with SIGKILL and started again")
def kill_and_restart(ctx: Ctx, system: System) -> None:
    ctx["watch"] = LeaseWatch(system, ctx["T"])
    _restart_killed(ctx, system)


@then(parsers.parse("after J's lease expires the Worker API receives jobs:run for T again, with job_id J"))
def resent(ctx: Ctx, system: System) -> None:
    worker = system.workers["W1"]
    wait_until(lambda: len(worker.run_calls(ctx["J"])) >= 2, 30, "a second jobs:run for J")
    calls = [c for c in worker.run_calls() if c.task_id == ctx["T"]]
    assert [c.job_id for c in calls] == [ctx["J"], ctx["J"]]
    # The re-send came from the restarted process (it may come before the test sees that process healthy),
    # once the killed one's lease had run out.
    assert calls[1].at > ctx["killed_at"]
    assert calls[1].wall >= ctx["lease_at_kill"]


@then("the node ran job J exactly once")
def ran_once(ctx: Ctx, system: System) -> None:
    assert [spec.job_id for spec in system.workers["W1"].runtime.specs] == [ctx["J"].lower()]


@then(
    parsers.parse(
        'within {seconds:d} seconds of the restart T is "completed" with stdout "{stdout}" and a single job J'
    )
)
def completed_once(ctx: Ctx, system: System, seconds: int, stdout: str) -> None:
    remaining = seconds - (time.monotonic() - ctx["restarted_at"])
    _wait_status(system, ctx["T"], ("completed",), timeout=max(remaining, 0.1))
    resp = system.api.get(f"/v1/tasks/{ctx['T']}/result", token=ctx["token"])
    body = resp.json()
    assert [j["id"] for j in body["jobs"]] == [ctx["J"]]
    assert json.loads(body["jobs"][0]["result"])["stdout"] == unescape(stdout)
    job = _job(system, ctx["T"])
    assert job["attempts"] == 2 and job["status"] == "completed"


@then("GET /v1/tasks/{T} and /v1/tasks/{T}/result still answer 200 with the same task_id")
def still_readable(ctx: Ctx, system: System) -> None:
    for path in (f"/v1/tasks/{ctx['T']}", f"/v1/tasks/{ctx['T']}/result"):
        resp = system.api.get(path, token=ctx["token"])
        assert resp.status_code == 200 and resp.json()["task_id"] == ctx["T"]


@then(parsers.parse('at no time after the lease expiry is T left "running" without a live lease'))
def never_stuck(ctx: Ctx, system: System) -> None:
    samples = ctx["watch"].stop()
    assert samples
    # Until the restarted process has looked (it checks leases every lease/3 s, at most 2 s) the expired
    # lease is simply waiting to be noticed; from then on a running T always has a live lease, or is
    # back in the queue for immediate re-dispatch.
    lease_end = max(ctx["lease_at_kill"], ctx["restarted_wall"])
    grace = dt.timedelta(seconds=min(LEASE_SECONDS / 3, 2.0) + 1.0)
    later = [s for s in samples if s["at"] > lease_end + grace]

    def live(s: dict[str, Any]) -> bool:
        return s["job"] == "running" and s["lease"] is not None and s["lease"] > s["at"]

    stuck = [s for s in later if s["task"] == "running" and not (live(s) or s["job"] == "queued")]
    assert not stuck, stuck
    # The re-sent run was watched for a while, under a lease the restarted process keeps renewing.
    assert len([s for s in later if live(s)]) >= 5, later
    assert task_status(system.db, ctx["T"]) == "completed"


@given(parsers.parse("the job attempt limit is configured to {attempts:d}"))
def attempt_limit(system: System, attempts: int) -> None:
    assert system.process is not None
    system.process.env["CYNODE_MAX_ATTEMPTS"] = str(attempts)
    system.process.stop()
    system.start_process()


@given("W1 holds every jobs:run call open without answering")
def w1_holds(system: System) -> None:
    system.workers["W1"].runtime.default = Script(hold=True)


@when(
    parsers.parse(
        "the control plane is killed with SIGKILL and started again, each time after W1 has received "
        "jobs:run for J, until W1 has received {count:d} calls"
    )
)
def kill_until(ctx: Ctx, system: System, count: int) -> None:
    worker = system.workers["W1"]
    assert len(worker.run_calls(ctx["J"])) == 1
    for received in range(1, count + 1):
        _restart_killed(ctx, system)
        if received < count:
            wait_until(lambda n=received + 1: len(worker.run_calls(ctx["J"])) >= n, 30, f"jobs:run call {received + 1}")


@then(parsers.parse("W1 received jobs:run for T exactly {count:d} times, each with job_id J"))
def received_exactly(ctx: Ctx, system: System, count: int) -> None:
    _wait_status(system, ctx["T"], ("failed", "completed", "canceled"), timeout=60)
    calls = [c for c in system.workers["W1"].run_calls() if c.task_id == ctx["T"]]
    assert [c.job_id for c in calls] == [ctx["J"]] * count


@then(
    parsers.parse(
        'within {seconds:d} seconds of the last restart T and J are "failed" with a reason naming the '
        "exhausted attempts"
    )
)
def failed_exhausted(ctx: Ctx, system: System, seconds: int) -> None:
    remaining = seconds - (time.monotonic() - ctx["restarted_at"])
    _wait_status(system, ctx["T"], ("failed",), timeout=max(remaining, 0.1))
    job = _job(system, ctx["T"])
    assert job["status"] == "failed" and str(job["id"]) == ctx["J"]
    assert "attempts exhausted" in _result(job)["error"] and "attempts exhausted" in job["last_error"]
    resp = system.api.get(f"/v1/tasks/{ctx['T']}/result", token=ctx["token"])
    assert resp.json()["status"] == "failed"
    assert "attempts exhausted" in json.loads(resp.json()["jobs"][0]["result"])["error"]


@then(parsers.parse('no job stays "running"'))
def none_running(system: System) -> None:
    assert rows(system.db, "SELECT count(*) AS n FROM jobs WHERE status = 'running'")[0]["n"] == 0


# -- cancel ------------------------------------------------------------------------------------


@given(
    parsers.parse(
        'W1 answers jobs:run late, only after the job\'s cancel has reached it, with status "{status}", '
        'exit_code {code:d} and stdout "{stdout}"'
    )
)
def late_answer(system: System, status: str, code: int, stdout: str) -> None:
    # Held until the job's cancel stops its "container", then answered after a short delay.
    system.workers["W1"].runtime.default = Script(
        status=status, exit_code=code, stdout=unescape(stdout), hold=True, delay=0.3
    )


@when(parsers.re(r"I POST /v1/tasks/\{T\}/cancel$"))
def cancel(ctx: Ctx, system: System) -> None:
    ctx["resp"] = system.api.post(f"/v1/tasks/{ctx['T']}/cancel", token=ctx["token"])
    assert ctx["resp"].status_code == 200, ctx["resp"].text
    assert ctx["resp"].json() == {"task_id": ctx["T"], "canceled": True}


@then(parsers.re(r'W1 receives POST /v1/worker/jobs/\{J\}:cancel with header "Authorization: Bearer <worker_token>"'))
def cancel_reached(ctx: Ctx, system: System) -> None:
    worker = system.workers["W1"]
    (call,) = wait_until(lambda: worker.cancel_calls(ctx["J"]), WAIT, "W1 to receive the cancel for J")
    assert call.method == "POST" and call.path == f"/v1/worker/jobs/{ctx['J']}:cancel"
    assert call.headers["Authorization"] == f"Bearer {system.nodes['node-01'].worker_token}"


@then(parsers.parse('after W1\'s late jobs:run answer has arrived, T and J are still "{status}"'))
def still_canceled(ctx: Ctx, system: System, status: str) -> None:
    wait_until(lambda: _job(system, ctx["T"])["result"] is not None, WAIT, "the late result to be recorded")
    job = _job(system, ctx["T"])
    assert job["status"] == status and task_status(system.db, ctx["T"]) == status
    assert _result(job)["stdout"] == "late\n"  # kept as evidence, without changing the state
    body = system.api.get(f"/v1/tasks/{ctx['T']}/result", token=ctx["token"]).json()
    assert body["status"] == status and [j["status"] for j in body["jobs"]] == [status]
