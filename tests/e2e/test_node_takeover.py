"""Registering a running node's slug with the PSK revokes the node's JWT at once; a node restart still works.

Real orchestrator and node agent processes, real Podman, real PostgreSQL.
"""

from __future__ import annotations

from harness.api import ApiClient
from harness.nodes import NodeHandle, register
from harness.processes import wait_until


def test_a_psk_holder_cannot_silently_take_over_a_running_node(cluster) -> None:  # type: ignore[no-untyped-def]
    orch = cluster.orchestrator().start().wait_healthy()
    node = cluster.node("node-01", orch, capability_report_interval="1").start().wait_ready()
    control = ApiClient(orch.control)

    impostor = NodeHandle("node-01", "http://127.0.0.1:9")
    register(control, cluster.secrets.psk, impostor)
    # The agent's JWT is refused on its next report (within a second), so it registers
    # again and takes its slug back; the impostor's token is the revoked one now.
    wait_until(lambda: "node JWT refused" in node.output, 15, "the node's old JWT to be refused")
    wait_until(lambda: "Worker API token rotated" in node.output, 15, "the node to register again")
    wait_until(
        lambda: control.get("/v1/nodes/config", token=impostor.jwt).status_code == 401, 10, "the impostor's revocation"
    )
    admin = cluster.admin(orch)
    result = admin.wait_result(admin.create_command("echo still-mine"), timeout=60)
    assert result["status"] == "completed" and "still-mine" in result["jobs"][0]["result"], result

    # A plain restart registers the same slug again and keeps working.
    node.stop()
    cluster.node("node-01", orch, capability_report_interval="1").start().wait_ready()
    result = admin.wait_result(admin.create_command("echo after-restart"), timeout=60)
    assert result["status"] == "completed" and "after-restart" in result["jobs"][0]["result"], result
