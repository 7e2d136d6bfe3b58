"""Steps of features/worker_node/worker_api.feature: a real Worker API on loopback over real Podman."""

from __future__ import annotations

import json
import logging
import re
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import jwt
import pytest
import requests
from node_helpers import (
    RESULT_KEYS,
    WORKER_TOKEN,
    ContainerRecords,
    Worker,
    WorkerFactory,
    assert_problem,
    containers_of,
    new_podman_runtime,
    nothing_created,
    run_in_thread,
)
from pytest_bdd import given, parsers, scenarios, then, when

from cynode_core.contract import SandboxRuntime

scenarios("worker_node/worker_api.feature")

RFC3339_Z = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}Z$")
PLACEHOLDER = re.compile(r"<([A-Za-z][A-Za-z0-9]*)>")
WAIT = 15.0  # every wait of these steps is bounded by this many seconds


@pytest.fixture(scope="module")
def feature_runtime(tmp_path_factory: pytest.TempPathFactory, sandbox_image: str) -> Iterator[SandboxRuntime]:
    """A Podman runtime with a service of this feature's own, so one scenario can stop it."""
    runtime = new_podman_runtime(tmp_path_factory.mktemp("worker-api-podman"))
    runtime.check(sandbox_image)
    yield runtime
    runtime.close()


@pytest.fixture(autouse=True)
def _capture_all_logs(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)


@pytest.fixture
def in_flight(ctx: dict[str, Any]) -> Iterator[list[tuple[Any, dict[str, Any]]]]:
    """jobs:run calls a scenario left running: cancelled and joined at the end."""
    calls: list[tuple[Any, dict[str, Any]]] = []
    yield calls
    worker: Worker | None = ctx.get("worker")
    for job_id in ctx.get("ids", {}).values():
        if worker is not None:
            worker.cancel(job_id)
    for thread, _ in calls:
        thread.join(WAIT)


# -- helpers ---------------------------------------------------------------------


def job_id_of(ctx: dict[str, Any], name: str) -> str:
    """The fresh UUID a scenario's ``<name>`` stands for (the same one for every mention)."""
    return ctx.setdefault("ids", {}).setdefault(name, str(uuid.uuid4()))


def fill(ctx: dict[str, Any], template: str) -> Any:
    """A JSON body from a step's template, each ``<T1>``/``<J1>`` replaced by its UUID."""
    return json.loads(PLACEHOLDER.sub(lambda m: json.dumps(job_id_of(ctx, m.group(1))), template))


def unescape(text: str) -> str:
    """Gherkin text with ``\\n`` escapes, as the string it stands for."""
    return json.loads(f'"{text}"')


def valid_body(ctx: dict[str, Any], command: list[str] | None = None, job: str = "J1") -> dict[str, Any]:
    return {
        "version": 1,
        "task_id": job_id_of(ctx, "T1"),
        "job_id": job_id_of(ctx, job),
        "sandbox": {"command": command or ["sh", "-c", "echo should-not-run"]},
    }


def a_jwt(token_type: str) -> str:
    """A well-formed orchestrator-style JWT (HS256): a credential of the wrong kind for the Worker API."""
    claims = {"iss": "cynodeai", "sub": str(uuid.uuid4()), "token_type": token_type, "exp": int(time.time()) + 600}
    return jwt.encode(claims, "a-signing-secret-of-the-orchestrator-0123456789", algorithm="HS256")


def header_value(text: str) -> str | None:
    """An ``Authorization`` value from a step's description; ``None`` for "(absent)"."""
    if text == "(absent)":
        return None
    value = text.replace("bearer-less <worker_token>", WORKER_TOKEN)
    value = value.replace("<worker_token>", WORKER_TOKEN)
    value = value.replace("<node JWT>", a_jwt("node")).replace("<user access token>", a_jwt("access"))
    return value


def post_run(
    worker: Worker, body: Any, *, header: str | None = f"Bearer {WORKER_TOKEN}", raw: bytes | None = None
) -> requests.Response:
    headers = {"Content-Type": "application/json"}
    if header is not None:
        headers["Authorization"] = header
    data = raw if raw is not None else json.dumps(body).encode()
    return requests.post(f"{worker.url}/v1/worker/jobs:run", data=data, headers=headers, timeout=60)


def wait_for(check: Any, what: str, timeout: float = WAIT) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        assert time.monotonic() < deadline, f"timed out after {timeout} s waiting for {what}"
        time.sleep(0.05)


def start_in_flight(ctx: dict[str, Any], in_flight: list[Any], body: dict[str, Any]) -> None:
    worker: Worker = ctx["worker"]
    in_flight.append(run_in_thread(lambda: post_run(worker, body)))


# -- background --------------------------------------------------------------------


@given(
    "the Worker API is running with bearer token <worker_token>, a working container runtime and a workspace "
    "root on the host"
)
def worker_api(
    ctx: dict[str, Any],
    start_worker: WorkerFactory,
    feature_runtime: SandboxRuntime,
    container_records: ContainerRecords,
) -> None:
    worker = start_worker(feature_runtime, keep_workspaces=True)
    assert requests.get(f"{worker.url}/readyz", timeout=WAIT).text == "ready"
    ctx.update(worker=worker, runtime=feature_runtime, records=container_records)


# -- health ------------------------------------------------------------------------


@when("I GET /healthz and /readyz without credentials")
def get_health(ctx: dict[str, Any]) -> None:
    url = ctx["worker"].url
    ctx["health"] = requests.get(f"{url}/healthz", timeout=WAIT)
    ctx["ready"] = requests.get(f"{url}/readyz", timeout=WAIT)


@then('/healthz answers 200 "ok" and /readyz answers 200 "ready"')
def health_ok(ctx: dict[str, Any]) -> None:
    for resp, text in ((ctx["health"], "ok"), (ctx["ready"], "ready")):
        assert (resp.status_code, resp.text) == (200, text)
        assert resp.headers["Content-Type"] == "text/plain; charset=utf-8"


@when("the container runtime is made unavailable (its Podman service stops)")
def runtime_down(ctx: dict[str, Any], request: pytest.FixtureRequest) -> None:
    service = ctx["runtime"].service
    service.stop()
    # The next scenarios of this feature use the same runtime: bring its service back.
    request.addfinalizer(service.start)


@then('/readyz answers 503 with a plain-text reason and /healthz still answers 200 "ok"')
def ready_503(ctx: dict[str, Any]) -> None:
    url = ctx["worker"].url
    ready = requests.get(f"{url}/readyz", timeout=WAIT)
    assert ready.status_code == 503
    assert ready.headers["Content-Type"] == "text/plain; charset=utf-8"
    assert ready.text.startswith("podman not available: "), ready.text
    health = requests.get(f"{url}/healthz", timeout=WAIT)
    assert (health.status_code, health.text) == (200, "ok")


# -- running a job -------------------------------------------------------------------


@when(parsers.re(r"^I POST /v1/worker/jobs:run with bearer <worker_token> and (?P<template>\{.*\})$"))
def post_job(ctx: dict[str, Any], template: str) -> None:
    ctx["body"] = fill(ctx, template)
    ctx["resp"] = post_run(ctx["worker"], ctx["body"])


@then(parsers.parse('the status is 200 with "version" 1, "task_id" <T1>, "job_id" <J1> and "status" "{status}"'))
def result_ids(ctx: dict[str, Any], status: str) -> None:
    resp = ctx["resp"]
    assert resp.status_code == 200, resp.text
    assert resp.headers["Content-Type"] == "application/json"
    result = resp.json()
    assert set(result) == RESULT_KEYS
    assert (result["version"], result["task_id"], result["job_id"], result["status"]) == (
        1,
        job_id_of(ctx, "T1"),
        job_id_of(ctx, "J1"),
        status,
    )


@then(parsers.parse('"exit_code" is {code:d}, "stdout" is "{stdout}", "stderr" is "{stderr}"'))
def result_output(ctx: dict[str, Any], code: int, stdout: str, stderr: str) -> None:
    result = ctx["resp"].json()
    assert (result["exit_code"], result["stdout"], result["stderr"]) == (code, unescape(stdout), unescape(stderr))


@then('"started_at" and "ended_at" are RFC 3339 times and "truncated" is {"stdout": false, "stderr": false}')
def result_times(ctx: dict[str, Any]) -> None:
    result = ctx["resp"].json()
    assert RFC3339_Z.match(result["started_at"]) and RFC3339_Z.match(result["ended_at"])
    assert result["started_at"] <= result["ended_at"]
    assert result["truncated"] == {"stdout": False, "stderr": False}


@then("the runtime ran the command in a container, with no published ports and no sshd")
def ran_in_container(ctx: dict[str, Any]) -> None:
    records = ctx["records"].of(job_id_of(ctx, "J1"))
    assert len(records) == 1, records
    record = records[0]
    command = ctx["body"]["sandbox"]["command"]
    assert [record["Path"], *record["Args"]] == command  # the job's command is the container's process
    assert "sshd" not in json.dumps([record["Path"], record["Args"], record["Config"].get("Entrypoint")])
    assert not record["HostConfig"].get("PortBindings")
    assert not record["Config"].get("ExposedPorts")
    assert record["HostConfig"]["NetworkMode"] == "none"
    assert ctx["worker"].settings.resolve_image("alpine:latest") in record["ImageName"]
    assert containers_of(ctx["runtime"], job_id_of(ctx, "J1")) == []  # and it is gone


@then(
    parsers.parse(
        'a call with a fresh job_id and command {command} answers 200 with "status" "{status}" and "exit_code" {code:d}'
    )
)
def fresh_call(ctx: dict[str, Any], command: str, status: str, code: int) -> None:
    resp = post_run(ctx["worker"], valid_body(ctx, json.loads(command), job="J2"))
    assert resp.status_code == 200, resp.text
    assert (resp.json()["status"], resp.json()["exit_code"]) == (status, code)


# -- authentication ---------------------------------------------------------------------


@when(parsers.parse('I POST /v1/worker/jobs:run with a valid body and Authorization "{header}"'))
def post_with_header(ctx: dict[str, Any], header: str) -> None:
    ctx["resp"] = post_run(ctx["worker"], valid_body(ctx), header=header_value(header))


@then(parsers.parse('I get a problem response with status {status:d} and detail "{detail}"'))
def problem_with_detail(ctx: dict[str, Any], status: int, detail: str) -> None:
    assert_problem(ctx["resp"], status, detail)


@then(parsers.parse('I get a problem response with status {status:d} and type "{problem_type}"'))
def problem_with_type(ctx: dict[str, Any], status: int, problem_type: str) -> None:
    assert assert_problem(ctx["resp"], status)["type"] == problem_type


@then(parsers.parse("I get a problem response with status {status:d}"))
def problem(ctx: dict[str, Any], status: int) -> None:
    assert_problem(ctx["resp"], status)


@then("no container is created")
def no_container(ctx: dict[str, Any]) -> None:
    assert ctx["records"].job_containers() == []
    assert nothing_created(ctx["worker"])


@then("no log line of the Worker API or node manager contains <worker_token>")
def token_not_logged(caplog: pytest.LogCaptureFixture) -> None:
    lines = [r.getMessage() for r in caplog.records if not r.name.startswith("pytest_bdd")]
    assert not [line for line in lines if WORKER_TOKEN in line]
    assert WORKER_TOKEN not in caplog.text


# -- validation ---------------------------------------------------------------------------


@when(parsers.re(r"^I POST /v1/worker/jobs:run with bearer <worker_token> and (?P<body>a (truncated|valid).*)$"))
def post_invalid(ctx: dict[str, Any], body: str) -> None:
    if body == "a truncated JSON document":
        ctx["resp"] = post_run(ctx["worker"], None, raw=b'{"version": 1, "task_id": ')
        return
    request = valid_body(ctx)
    if body == 'a valid request without "task_id"':
        del request["task_id"]
    elif body == 'a valid request with a UUID job_id followed by "/.."':
        request["job_id"] += "/.."
    else:
        match = re.fullmatch(r'a valid request with "(?P<field>[^"]+)" (?P<value>.+?)( and no job_spec_json)?', body)
        assert match, body
        target, *path = match["field"].split(".")
        if path:
            request[target][path[0]] = json.loads(match["value"])
        else:
            request[target] = json.loads(match["value"])
    ctx["resp"] = post_run(ctx["worker"], request)


@then("no container is created and nothing is created under the workspace root")
def nothing_at_all(ctx: dict[str, Any]) -> None:
    assert ctx["records"].job_containers() == []
    assert nothing_created(ctx["worker"])


@when("I POST /v1/worker/jobs:run with bearer <worker_token> and a body of 11 MiB")
def post_oversize(ctx: dict[str, Any]) -> None:
    body = valid_body(ctx)
    body["padding"] = "x" * (11 * 1024 * 1024)
    ctx["raw"] = json.dumps(body).encode()
    ctx["resp"] = post_run(ctx["worker"], None, raw=ctx["raw"])


@then("the same body without a token gets 401")
def oversize_without_token(ctx: dict[str, Any]) -> None:
    assert_problem(post_run(ctx["worker"], None, raw=ctx["raw"], header=None), 401, "Invalid or missing bearer token")
    assert ctx["records"].job_containers() == [] and nothing_created(ctx["worker"])


# -- idempotency ----------------------------------------------------------------------------


@given(parsers.parse("I ran job <J1> of task <T1> with command {command} and got result X"))
def ran_job(ctx: dict[str, Any], command: str) -> None:
    ctx["body"] = valid_body(ctx, json.loads(command))
    resp = post_run(ctx["worker"], ctx["body"])
    assert resp.status_code == 200 and resp.json()["status"] == "completed", resp.text
    ctx["X"] = resp.json()


@when("I POST the same jobs:run request for <J1> again")
def post_again(ctx: dict[str, Any]) -> None:
    ctx["resp"] = post_run(ctx["worker"], ctx["body"])


@then('the status is 200 and the body equals X, including "stdout", "started_at" and "ended_at"')
def same_result(ctx: dict[str, Any]) -> None:
    assert ctx["resp"].status_code == 200, ctx["resp"].text
    assert ctx["resp"].json() == ctx["X"]


def count_lines(ctx: dict[str, Any]) -> list[str]:
    count = Path(ctx["worker"].workspace_root) / job_id_of(ctx, "J1") / "count"
    return count.read_text().splitlines()


@then("no new container was created for <J1> and /workspace/count of <J1> holds one line")
def no_new_container(ctx: dict[str, Any]) -> None:
    assert len(ctx["records"].of(job_id_of(ctx, "J1"))) == 1
    assert count_lines(ctx) == ["ran"]


@given(parsers.parse("jobs:run for job <J1> with command {command} is in progress"))
def job_in_progress(ctx: dict[str, Any], in_flight: list[Any], command: str) -> None:
    ctx["body"] = valid_body(ctx, json.loads(command))
    start_in_flight(ctx, in_flight, ctx["body"])
    job_id = job_id_of(ctx, "J1")
    wait_for(lambda: containers_of(ctx["runtime"], job_id), f"the container of {job_id}")


@when("a second jobs:run for <J1> arrives on another connection")
def second_call(ctx: dict[str, Any], in_flight: list[Any]) -> None:
    start_in_flight(ctx, in_flight, ctx["body"])


def finished_calls(in_flight: list[Any]) -> list[requests.Response]:
    for thread, _ in in_flight:
        thread.join(WAIT)
        assert not thread.is_alive(), "a jobs:run call did not return"
    return [box["result"] for _, box in in_flight]


@then("no second container is created for <J1>")
def no_second_container(ctx: dict[str, Any], in_flight: list[Any]) -> None:
    finished_calls(in_flight)
    assert len(ctx["records"].of(job_id_of(ctx, "J1"))) == 1


@then('both calls answer 200 with the same result, "stdout" "done\\n"')
def same_for_both(in_flight: list[Any]) -> None:
    first, second = finished_calls(in_flight)
    assert first.status_code == second.status_code == 200
    assert first.json() == second.json()
    assert first.json()["stdout"] == "done\n"


@then("/workspace/count of <J1> holds one line")
def one_line(ctx: dict[str, Any]) -> None:
    assert count_lines(ctx) == ["ran"]


# -- cancel -------------------------------------------------------------------------------------


@when("I POST /v1/worker/jobs/<J1>:cancel with bearer <worker_token>")
def post_cancel(ctx: dict[str, Any]) -> None:
    ctx["resp"] = ctx["worker"].cancel(job_id_of(ctx, "J1"))


@then("the answer is a 2xx status")
def answer_2xx(ctx: dict[str, Any]) -> None:
    assert 200 <= ctx["resp"].status_code < 300, ctx["resp"].text
    assert ctx["resp"].json() == {"version": 1, "job_id": job_id_of(ctx, "J1"), "canceled": True}


@then("within 15 seconds no container labelled with job_id <J1> is running or left stopped on the node")
def container_gone(ctx: dict[str, Any]) -> None:
    wait_for(lambda: containers_of(ctx["runtime"], job_id_of(ctx, "J1")) == [], "the container to go", timeout=15)


@then('the pending jobs:run call for <J1> returns without a "completed" status')
def pending_returns(in_flight: list[Any]) -> None:
    (resp,) = finished_calls(in_flight)
    assert resp.status_code == 200 and resp.json()["status"] != "completed", resp.text


@then("a second cancel for <J1> answers the same 2xx status")
def second_cancel(ctx: dict[str, Any]) -> None:
    again = ctx["worker"].cancel(job_id_of(ctx, "J1"))
    assert (again.status_code, again.json()) == (ctx["resp"].status_code, ctx["resp"].json())


@then("a later jobs:run for <J1> starts no container")
def later_run(ctx: dict[str, Any]) -> None:
    resp = post_run(ctx["worker"], ctx["body"])
    assert resp.status_code == 200 and resp.json()["status"] != "completed", resp.text
    assert len(ctx["records"].of(job_id_of(ctx, "J1"))) == 1


@when(parsers.parse('I POST /v1/worker/jobs/{job}:cancel with Authorization "{header}"'))
def post_cancel_with(ctx: dict[str, Any], job: str, header: str) -> None:
    target = {"<a running job's id>": job_id_of(ctx, "J1"), "<a fresh unknown UUID>": str(uuid.uuid4())}.get(job, job)
    value = header_value(header)
    headers = {"Authorization": value} if value is not None else {}
    ctx["resp"] = requests.post(f"{ctx['worker'].url}/v1/worker/jobs/{target}:cancel", headers=headers, timeout=WAIT)


@then("no container is stopped")
def none_stopped(ctx: dict[str, Any]) -> None:
    worker, job_id = ctx["worker"], job_id_of(ctx, "J1")
    assert worker.executor.running_jobs == 1
    (container_id,) = containers_of(ctx["runtime"], job_id)
    # A container found just after its creation may still be starting ("created", "initialized"):
    # it must come to run, never to stop.
    deadline = time.monotonic() + WAIT
    state = ctx["runtime"].client.containers.get(container_id).attrs["State"]
    while not state["Running"] and state["Status"] in ("created", "initialized") and time.monotonic() < deadline:
        time.sleep(0.1)
        state = ctx["runtime"].client.containers.get(container_id).attrs["State"]
    assert state["Running"] is True, state
