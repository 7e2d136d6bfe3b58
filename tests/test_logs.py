"""Structured logs and the request id that follows a task (cynode_core/logs.py).

The request id of ``POST /v1/tasks`` is echoed, stored with the task, put
on the orchestrator's log records, and sent to the node as ``X-Request-Id``
on ``jobs:run`` and cancel. Real parts: the app on the test's own
PostgreSQL, the real dispatcher threads, a node's real Worker API on
loopback (over a scripted sandbox runtime), and ``cynode orchestrator
serve`` as a child process with ``CYNODE_LOG_FORMAT=json``.
"""

from __future__ import annotations

import io
import json
import logging
from pathlib import Path
from typing import Any

import pytest
from harness.api import ApiClient
from harness.nodes import NodeHandle, make_dispatchable
from harness.orchestrator import InProcessDispatcher, rows, task_status
from harness.processes import Orchestrator, orchestrator_environ, wait_until
from harness.worker import Script, WorkerNode

from cynode_core.logs import JsonFormatter, accept_request_id, log_context, make_handler

WAIT = 15.0


@pytest.fixture
def settings_overrides() -> dict[str, Any]:
    return {"dispatcher_enabled": True, "dispatch_poll_interval": 0.2, "dispatch_workers": 1}


def parsed(stream: io.StringIO) -> list[dict[str, Any]]:
    return [json.loads(line) for line in stream.getvalue().splitlines()]


# -- the pieces ---------------------------------------------------------------------


@pytest.mark.parametrize("good", ["abc", "A.b_c-9", "x" * 128, "0f8fad5bd9cb469fa16570867728950e"])
def test_a_well_formed_request_id_is_kept(good: str) -> None:
    assert accept_request_id(good) == good


@pytest.mark.parametrize("bad", [None, "", "x" * 129, "has space", "new\nline", "ünï", "a/b", "a;b"])
def test_a_missing_or_malformed_request_id_is_replaced_by_a_new_one(bad: str | None) -> None:
    new = accept_request_id(bad)
    assert new != bad and len(new) == 32 and int(new, 16) >= 0


def test_a_json_line_has_the_base_fields_the_scope_fields_and_extras() -> None:
    stream = io.StringIO()
    logger = logging.getLogger("cynode_core.test_logs")
    logger.addHandler(make_handler("json", stream))
    logger.setLevel(logging.INFO)
    logger.propagate = False
    try:
        with log_context("rid-1", task_id="t-1", node=None):
            logger.info("hello %s", "world", extra={"job_id": "j-1"})
        logger.warning("outside")
        try:
            raise ValueError("boom")
        except ValueError:
            logger.exception("failed")
    finally:
        logger.handlers.clear()
        logger.propagate = True
    first, second, third = parsed(stream)
    assert first["message"] == "hello world" and first["level"] == "INFO"
    assert first["logger"] == "cynode_core.test_logs" and first["time"].endswith("+00:00")
    assert (first["request_id"], first["task_id"], first["job_id"]) == ("rid-1", "t-1", "j-1")
    assert "node" not in first  # None fields are left out
    assert second["request_id"] is None and "task_id" not in second
    assert "ValueError: boom" in third["exception"]


def test_the_json_formatter_keeps_a_message_with_quotes_and_newlines_on_one_line() -> None:
    record = logging.LogRecord("x", logging.INFO, __file__, 1, 'say "hi"\nthere', None, None)
    line = JsonFormatter().format(record)
    assert "\n" not in line and json.loads(line)["message"] == 'say "hi"\nthere'


# -- the app, the dispatcher and the node --------------------------------------------


def test_the_request_id_of_a_task_reaches_the_logs_the_database_and_the_node(
    api: ApiClient, orchestrator: Any, worker: WorkerNode, json_log_lines: io.StringIO
) -> None:
    make_dispatchable(api, orchestrator.secrets.psk, NodeHandle.of("node-l1", worker))
    worker.runtime.when_command_contains("sleep", Script(hold=True))
    api.login("admin", orchestrator.secrets.admin_password, expect=200)
    dispatcher = InProcessDispatcher(orchestrator.app.extensions["cynode"])
    try:
        resp = api.post_command("echo hi", request_id="req-task.1")
        assert resp.status_code == 201 and resp.headers["X-Request-Id"] == "req-task.1"
        task_id = resp.json()["task_id"]
        wait_until(lambda: task_status(orchestrator.db, task_id) == "completed", WAIT, "the task to complete")

        held = api.post_command("sleep 60", request_id="req-task.2").json()["task_id"]
        wait_until(lambda: len(worker.run_calls()) == 2, WAIT, "the second job to reach the node")
        cancel = api.post(f"/v1/tasks/{held}/cancel", headers={"X-Request-Id": "req-cancel"}, token=api.token)
        assert cancel.status_code == 200 and cancel.headers["X-Request-Id"] == "req-cancel"
        wait_until(lambda: worker.cancel_calls(), WAIT, "the cancel to reach the node")
    finally:
        worker.runtime.release()
        dispatcher.stop()

    # Stored with the task, and sent to the node on jobs:run and on cancel (the task's id, not the cancel call's).
    assert rows(orchestrator.db, "SELECT request_id FROM tasks WHERE id = :id", id=task_id)[0]["request_id"] == (
        "req-task.1"
    )
    first, second = worker.run_calls()
    assert first.headers.get("X-Request-Id") == "req-task.1"
    assert second.headers.get("X-Request-Id") == "req-task.2"
    assert worker.cancel_calls()[0].headers.get("X-Request-Id") == "req-task.2"

    lines = parsed(json_log_lines)
    mine = [line for line in lines if line["request_id"] == "req-task.1"]
    created = [line for line in mine if line["logger"] == "cynode_core.orchestrator.api.tasks"]
    assert created and created[0]["task_id"] == task_id
    access = [line for line in mine if line["logger"] == "cynode_core.access"]
    assert access and access[0]["route"] == "/v1/tasks" and access[0]["status"] == 201
    dispatched = [line for line in mine if line["logger"] == "cynode_core.orchestrator.dispatch.dispatcher"]
    assert dispatched and dispatched[0]["task_id"] == task_id and dispatched[0]["job_id"] and dispatched[0]["node"]
    assert any(line["request_id"] == "req-cancel" for line in lines)


def test_a_request_without_or_with_a_bad_id_gets_a_new_one(api: ApiClient) -> None:
    plain = api.get("/healthz")
    bad = api.get("/healthz", headers={"X-Request-Id": "not ok!"})
    problem = api.get("/v1/users/me")  # 401 problem details carry it too
    ids = [r.headers["X-Request-Id"] for r in (plain, bad, problem)]
    assert all(len(i) == 32 for i in ids) and len(set(ids)) == 3


def test_orchestrator_serve_with_cynode_log_format_json_writes_json_lines(
    orchestrator: Any, database_url: str, tmp_path: Path
) -> None:
    env = orchestrator_environ(database_url, orchestrator.settings.home, orchestrator.secrets)
    process = Orchestrator(env, tmp_path, log_format="json", dispatcher_enabled="false")
    try:
        process.start().wait_healthy()
        api = ApiClient(process.gateway)
        api.login("admin", orchestrator.secrets.admin_password, expect=200)
        resp = api.post_command("echo hi", request_id="req-process-1")
        assert resp.status_code == 201 and resp.headers["X-Request-Id"] == "req-process-1"
        task_id = resp.json()["task_id"]
        wait_until(lambda: "req-process-1" in process.output, WAIT, "the request's log lines")
    finally:
        process.stop()
    logged = [json.loads(line) for line in process.output.splitlines()]  # every line is one JSON object
    assert logged, process.output
    assert all({"time", "level", "logger", "message", "request_id"} <= set(line) for line in logged)
    mine = [line for line in logged if line["request_id"] == "req-process-1"]
    assert any(line.get("task_id") == task_id for line in mine), mine
    assert any(line.get("route") == "/v1/tasks" for line in mine), mine
