"""The orchestrator's ``/metrics`` (cynode_core/orchestrator/metrics.py, cynode_core/http_metrics.py).

Real parts: the app on the test's own PostgreSQL database, the real
dispatcher threads, and a node's real Worker API on loopback (over a
scripted sandbox runtime).
Scrapes are parsed with prometheus_client's own text parser.
"""

from __future__ import annotations

from typing import Any

import pytest
from harness.api import ApiClient
from harness.nodes import NodeHandle, make_dispatchable
from harness.orchestrator import InProcessDispatcher, task_status
from harness.processes import wait_until
from harness.worker import WorkerNode
from metrics_samples import families_of, value

WAIT = 15.0


@pytest.fixture
def settings_overrides() -> dict[str, Any]:
    return {"dispatcher_enabled": True, "dispatch_poll_interval": 0.2, "dispatch_workers": 1}


def scrape(api: ApiClient) -> dict[str, Any]:
    """``{family name: family}`` of one ``GET /metrics`` (no token)."""
    resp = api.get("/metrics")
    assert resp.status_code == 200, resp.text
    assert resp.headers["Content-Type"].startswith("text/plain; version=0.0.4")
    return families_of(resp.text)


def test_metrics_count_requests_by_route_and_read_tasks_and_queue_from_the_database(
    api: ApiClient, orchestrator: Any
) -> None:
    token = api.login("admin", orchestrator.secrets.admin_password, expect=200).json()["access_token"]
    assert api.login("admin", "wrong").status_code == 401
    task_id = api.create_command("echo hi")
    assert api.get(f"/v1/tasks/{task_id}", token=token).status_code == 200
    assert api.get("/no/such/path-with-a-unique-name").status_code == 404

    families = scrape(api)

    assert {
        "cynode_http_requests",
        "cynode_http_request_duration_seconds",
        "cynode_tasks",
        "cynode_queue_depth",
        "cynode_queue_oldest_job_age_seconds",
        "cynode_nodes",
        "cynode_db_up",
        "cynode_dispatch_attempts",
        "cynode_dispatch_failures",
        "cynode_job_duration_seconds",
    } <= set(families)
    login = {"route": "/v1/auth/login", "method": "POST"}
    assert value(families, "cynode_http_requests_total", status="200", **login) == 1
    assert value(families, "cynode_http_requests_total", status="401", **login) == 1
    assert value(families, "cynode_http_request_duration_seconds_count", **login) == 2
    assert value(families, "cynode_http_requests_total", route="/v1/tasks", method="POST", status="201") == 1
    # The URL rule, never the raw path: a task id or an unknown path does not make a series of its own.
    assert value(families, "cynode_http_requests_total", route="/v1/tasks/<string:ref>", status="200") == 1
    assert value(families, "cynode_http_requests_total", route="unmatched", status="404") == 1
    text = api.get("/metrics").text
    assert task_id not in text and "path-with-a-unique-name" not in text

    assert value(families, "cynode_db_up") == 1
    assert value(families, "cynode_tasks", status="queued") == 1
    assert value(families, "cynode_tasks", status="completed") == 0
    depth = value(families, "cynode_queue_depth")
    assert depth is not None and depth >= 1
    age = value(families, "cynode_queue_oldest_job_age_seconds")
    assert age is not None and 0 <= age < 60
    assert value(families, "cynode_nodes", status="active") == 0
    assert value(families, "cynode_dispatch_attempts_total", outcome="completed") == 0


def test_metrics_need_no_token_and_are_served_on_both_ports(api: ApiClient) -> None:
    """One app serves the gateway and the control plane; /metrics is open like /healthz."""
    resp = api.get("/metrics", token="not-a-token")
    assert resp.status_code == 200
    assert "cynode_http_requests_total" in resp.text


def test_a_dispatched_job_counts_an_attempt_and_its_round_trip(
    api: ApiClient, orchestrator: Any, worker: WorkerNode
) -> None:
    make_dispatchable(api, orchestrator.secrets.psk, NodeHandle.of("node-m1", worker))
    dispatcher = InProcessDispatcher(orchestrator.app.extensions["cynode"])
    try:
        api.login("admin", orchestrator.secrets.admin_password, expect=200)
        task_id = api.create_command("echo hi")
        wait_until(lambda: task_status(orchestrator.db, task_id) == "completed", WAIT, "the task to complete")
    finally:
        dispatcher.stop()

    families = scrape(api)
    assert value(families, "cynode_dispatch_attempts_total", outcome="completed") == 1
    assert value(families, "cynode_dispatch_attempts_total", outcome="error") == 0
    assert value(families, "cynode_job_duration_seconds_count", status="completed") == 1
    assert value(families, "cynode_tasks", status="completed") == 1
    assert value(families, "cynode_tasks", status="queued") == 0
    assert value(families, "cynode_queue_depth") == 0
    assert value(families, "cynode_queue_oldest_job_age_seconds") == 0
    assert value(families, "cynode_nodes", status="active") == 1


def test_two_apps_in_one_process_keep_their_own_registries(orchestrator: Any, api: ApiClient) -> None:
    from cynode_core.orchestrator.app import create_app

    other = create_app(orchestrator.settings, orchestrator.db, orchestrator.resources.secrets)
    ApiClient.in_process(other).get("/healthz")
    mine = scrape(api)
    assert value(mine, "cynode_http_requests_total", route="/healthz") is None
