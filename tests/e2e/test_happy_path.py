"""Steps of features/e2e/single_node_happy_path.feature (real processes, real Podman)."""

from __future__ import annotations

import json
import os
import subprocess
import time

import pytest
import requests
from harness.api import ApiClient
from harness.loopback import RecordingListener
from harness.processes import wait_until
from pytest_bdd import given, parsers, scenarios, then, when

scenarios("e2e/single_node_happy_path.feature")

MCP_GATEWAY_PORT = 12083


@pytest.fixture
def ctx() -> dict:
    return {}


@given("the orchestrator runs as its own process on a fresh database")
def orchestrator_proc(ctx, cluster) -> None:  # type: ignore[no-untyped-def]
    ctx["orch"] = cluster.orchestrator(lease_seconds="5").start().wait_healthy()


@given("a recording listener sits on the MCP gateway address")
def mcp_listener(ctx, request) -> None:  # type: ignore[no-untyped-def]
    listener = RecordingListener(MCP_GATEWAY_PORT)
    request.addfinalizer(listener.close)
    ctx["mcp"] = listener


@given("GET /readyz on the orchestrator is 503 before the node starts")
def not_ready(ctx) -> None:  # type: ignore[no-untyped-def]
    assert requests.get(f"{ctx['orch'].control}/readyz", timeout=5).status_code == 503


def _start_node(ctx, cluster) -> None:  # type: ignore[no-untyped-def]
    if "node" not in ctx:
        ctx["node"] = cluster.node("node-01", ctx["orch"])
    ctx["node"].start().wait_ready()
    orch = ctx["orch"]
    wait_until(lambda: requests.get(f"{orch.gateway}/readyz", timeout=2).status_code == 200, 30, "orchestrator ready")


@when('the node agent starts, registers with the PSK, fetches its config and acks "applied"')
@given("the node agent is ready")
def node_ready(ctx, cluster) -> None:  # type: ignore[no-untyped-def]
    _start_node(ctx, cluster)


@then("GET /readyz on the gateway and the control plane turns 200 with every check passing")
def ready_both(ctx) -> None:  # type: ignore[no-untyped-def]
    for base in (ctx["orch"].gateway, ctx["orch"].control):
        resp = requests.get(f"{base}/readyz", timeout=5)
        assert resp.status_code == 200 and "failing" not in resp.text
        assert all(f"{check}: ok" in resp.text for check in ("database", "migrations", "dispatchable node"))


def _api(ctx, cluster) -> ApiClient:  # type: ignore[no-untyped-def]
    if "api" not in ctx:
        ctx["api"] = cluster.admin(ctx["orch"])
    return ctx["api"]


@when(parsers.parse('I log in as "admin" and create the command task "{command}"'))
@given(parsers.parse('I log in as "admin" and create the command task "{command}"'))
@given(parsers.parse('I logged in as "admin" and created the command task "{command}"'))
def login_and_create(ctx, cluster, command: str) -> None:  # type: ignore[no-untyped-def]
    ctx["task"] = _api(ctx, cluster).create_command(command)


@when(parsers.parse('I create the command task "{command}"'))
def create_task(ctx, cluster, command: str) -> None:  # type: ignore[no-untyped-def]
    ctx["task"] = _api(ctx, cluster).create_command(command)


@then(parsers.parse('within {seconds:d} seconds the task status is "{status}"'))
@given(parsers.parse('within {seconds:d} seconds the task status is "{status}"'))
def task_status(ctx, seconds: int, status: str) -> None:  # type: ignore[no-untyped-def]
    if status == "running":
        wait_until(
            lambda: ctx["api"].call("GET", f"/v1/tasks/{ctx['task']}")["status"] == "running", seconds, "running"
        )
        return
    ctx["result"] = ctx["api"].wait_result(ctx["task"], timeout=seconds)
    assert ctx["result"]["status"] == status, ctx["result"]


@then(parsers.parse('within {seconds:d} seconds the task status is "failed" with a dispatch error'))
def task_failed_dispatch(ctx, seconds: int) -> None:  # type: ignore[no-untyped-def]
    result = ctx["api"].wait_result(ctx["task"], ("completed", "failed"), timeout=seconds)
    assert result["status"] == "failed"
    assert "worker api" in json.loads(result["jobs"][0]["result"])["error"]


@then(parsers.parse('the task result\'s job result has "stdout" "{stdout}" and "exit_code" {code:d}'))
def job_result(ctx, stdout: str, code: int) -> None:  # type: ignore[no-untyped-def]
    result = json.loads(ctx["result"]["jobs"][0]["result"])
    assert result["stdout"] == stdout.replace("\\n", "\n") and result["exit_code"] == code


@then('GET /v1/tasks lists the task and GET /v1/users/me shows handle "admin"')
def lists_and_me(ctx) -> None:  # type: ignore[no-untyped-def]
    assert ctx["task"] in [t["id"] for t in ctx["api"].call("GET", "/v1/tasks")["tasks"]]
    assert ctx["api"].call("GET", "/v1/users/me")["handle"] == "admin"


@then("the recording listener on the MCP gateway address saw no connection")
def no_mcp(ctx) -> None:  # type: ignore[no-untyped-def]
    assert ctx["mcp"].connections == 0


@when("I refresh my tokens and read the task with the new access token", target_fixture="pair")
def refresh_and_read(ctx) -> dict[str, str]:  # type: ignore[no-untyped-def]
    """The new token pair is the ``pair`` fixture of the steps that follow."""
    api = ctx["api"]
    resp = api.post("/v1/auth/refresh", json={"refresh_token": api.credentials.refresh_token})
    assert resp.status_code == 200
    pair: dict[str, str] = resp.json()
    ctx["read"] = api.get(f"/v1/tasks/{ctx['task']}", token=pair["access_token"])
    return pair


@then("the read succeeds")
def read_ok(ctx) -> None:  # type: ignore[no-untyped-def]
    assert ctx["read"].status_code == 200


@when("I log out")
def log_out(ctx, pair: dict[str, str]) -> None:  # type: ignore[no-untyped-def]
    resp = ctx["api"].post("/v1/auth/logout", json={"refresh_token": pair["refresh_token"]}, token=pair["access_token"])
    assert resp.status_code == 204


@then("reading the task with the new access token gets 401 and refreshing gets 401")
def dead_session(ctx, pair: dict[str, str]) -> None:  # type: ignore[no-untyped-def]
    api = ctx["api"]
    assert api.get(f"/v1/tasks/{ctx['task']}", token=pair["access_token"]).status_code == 401
    assert api.post("/v1/auth/refresh", json={"refresh_token": pair["refresh_token"]}).status_code == 401


@when(parsers.parse('the node agent is stopped and I create the command task "{command}"'))
def stop_node_and_create(ctx, command: str) -> None:  # type: ignore[no-untyped-def]
    assert ctx["node"].stop() == 0
    ctx["task"] = ctx["api"].create_command(command)


@when('the node agent starts again and acks "applied"')
def restart_node(ctx, cluster) -> None:  # type: ignore[no-untyped-def]
    _start_node(ctx, cluster)


@when("I cancel the task")
def cancel(ctx) -> None:  # type: ignore[no-untyped-def]
    detail = ctx["api"].call("GET", f"/v1/tasks/{ctx['task']}/result")
    ctx["job"] = detail["jobs"][0]["id"]
    ctx["cancel"] = ctx["api"].request("POST", f"/v1/tasks/{ctx['task']}/cancel")


@then('the cancel answer is 200 with "canceled" true')
def cancel_ok(ctx) -> None:  # type: ignore[no-untyped-def]
    assert ctx["cancel"].status_code == 200 and ctx["cancel"].json() == {"task_id": ctx["task"], "canceled": True}


def _containers_for(job_id: str) -> list[str]:
    env = dict(os.environ)
    env.setdefault("CONTAINERS_CONF", "/etc/cynode/containers.conf")
    out = subprocess.run(
        ["podman", "ps", "-q", "--filter", f"label=cynodeai.job_id={job_id}"],
        env=env,
        capture_output=True,
        text=True,
        timeout=30,
    )
    return out.stdout.split()


@then("within 15 seconds no container labelled with the task's job id runs on the node")
def container_gone(ctx) -> None:  # type: ignore[no-untyped-def]
    wait_until(lambda: not _containers_for(ctx["job"]), 15, "the job's container to stop", interval=0.5)


@then('the task and its job stay "canceled" after the node answered the dispatch')
def stays_canceled(ctx) -> None:  # type: ignore[no-untyped-def]
    def answered() -> bool:
        result = ctx["api"].call("GET", f"/v1/tasks/{ctx['task']}/result")
        return result["jobs"][0].get("result") is not None

    wait_until(answered, 30, "the node's late answer to be recorded")
    result = ctx["api"].call("GET", f"/v1/tasks/{ctx['task']}/result")
    assert result["status"] == "canceled" and result["jobs"][0]["status"] == "canceled"
    ctx["snapshot"] = result


@then("a second cancel answers 200 and changes nothing")
def second_cancel(ctx) -> None:  # type: ignore[no-untyped-def]
    assert ctx["api"].request("POST", f"/v1/tasks/{ctx['task']}/cancel").status_code == 200
    time.sleep(0.5)
    assert ctx["api"].call("GET", f"/v1/tasks/{ctx['task']}/result") == ctx["snapshot"]
