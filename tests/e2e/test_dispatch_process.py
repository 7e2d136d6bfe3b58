"""`cynode orchestrator dispatch`: a process that only dispatches (no HTTP) serves the queue."""

from __future__ import annotations

import requests
from harness.processes import wait_until


def test_dispatch_only_process_runs_the_queue(cluster) -> None:  # type: ignore[no-untyped-def]
    orch = cluster.orchestrator(dispatcher_enabled="false").start().wait_healthy()
    cluster.node("node-01", orch).start().wait_ready()
    wait_until(lambda: requests.get(f"{orch.gateway}/readyz", timeout=2).status_code == 200, 30, "ready")
    api = cluster.admin(orch)
    task = api.create_command("echo via-dispatcher")
    dispatcher = cluster.process("dispatcher", "orchestrator", "dispatch")
    assert api.call("GET", f"/v1/tasks/{task}")["status"] == "queued"  # nothing dispatches yet
    dispatcher.start()
    result = api.wait_result(task, ("completed", "failed"), timeout=60)
    assert result["status"] == "completed" and "via-dispatcher" in result["jobs"][0]["result"]
    assert dispatcher.stop() == 0
