"""A task's request id across real processes: gateway -> dispatcher -> node agent, in JSON logs; /metrics on both.

Real orchestrator and node agent processes with ``CYNODE_LOG_FORMAT=json``,
real Podman, loopback only.
"""

from __future__ import annotations

import json
from typing import Any

import requests
from harness.processes import wait_until
from prometheus_client.parser import text_string_to_metric_families


def json_lines(text: str) -> list[dict[str, Any]]:
    return [json.loads(line) for line in text.splitlines() if line.startswith("{")]


def sample(url: str, name: str, **labels: str) -> float | None:
    text = requests.get(f"{url}/metrics", timeout=10).text
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            if s.name == name and labels.items() <= s.labels.items():
                return float(s.value)
    return None


def test_the_request_id_of_a_task_is_in_the_json_logs_of_the_orchestrator_and_the_node(cluster) -> None:  # type: ignore[no-untyped-def]
    orch = cluster.orchestrator(log_format="json").start().wait_healthy()
    node = cluster.node("node-rid", orch, log_format="json").start().wait_ready()
    api = cluster.admin(orch)
    resp = api.post_command("echo traced", request_id="e2e-req-42")
    assert resp.status_code == 201 and resp.headers["X-Request-Id"] == "e2e-req-42"
    task_id = resp.json()["id"]
    assert api.wait_result(task_id, ("completed",), 60)["status"] == "completed"

    def node_logged() -> list[dict[str, Any]]:
        return [line for line in json_lines(node.output) if line.get("request_id") == "e2e-req-42"]

    on_node = wait_until(node_logged, 10, "the node's log lines with the request id")
    assert any(line["logger"] == "node_agent.executor" and line.get("task_id") == task_id for line in on_node)
    on_orchestrator = [line for line in json_lines(orch.output) if line.get("request_id") == "e2e-req-42"]
    assert {"cynode_core.orchestrator.api.tasks", "cynode_core.orchestrator.dispatch.dispatcher"} <= {
        line["logger"] for line in on_orchestrator
    }

    assert sample(node.url, "cynode_node_jobs_total", outcome="completed") == 1
    assert sample(orch.gateway, "cynode_dispatch_attempts_total", outcome="completed") == 1
    assert sample(orch.control, "cynode_tasks", status="completed") == 1
