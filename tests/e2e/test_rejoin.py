"""A node whose JWT expires registers again, takes the rotated token and keeps taking work."""

from __future__ import annotations

import requests
from harness.processes import wait_until


def test_node_rejoins_after_its_jwt_expires(cluster) -> None:  # type: ignore[no-untyped-def]
    orch = cluster.orchestrator(node_token_ttl="3").start().wait_healthy()
    node = cluster.node("node-01", orch, capability_report_interval="1").start().wait_ready()
    wait_until(lambda: requests.get(f"{orch.gateway}/readyz", timeout=2).status_code == 200, 30, "ready")
    api = cluster.admin(orch)
    wait_until(lambda: "Worker API token rotated" in node.output, 30, "the node to register again")
    wait_until(lambda: requests.get(f"{orch.gateway}/readyz", timeout=2).status_code == 200, 30, "ready again")
    task = api.create_command("echo after-rejoin")
    result = api.wait_result(task, ("completed", "failed"), timeout=60)
    assert result["status"] == "completed", result
    assert "after-rejoin" in result["jobs"][0]["result"]
