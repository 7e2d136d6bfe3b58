"""`cynode orchestrator dispatch`: a process that only dispatches (no HTTP) serves the queue."""

from __future__ import annotations

import requests

from e2e.procs import Api, Proc, wait_until


def test_dispatch_only_process_runs_the_queue(cluster) -> None:  # type: ignore[no-untyped-def]
    orch = cluster.orchestrator(dispatcher_enabled="false").start().wait_healthy()
    cluster.node("node-01", orch).start().wait_ready()
    wait_until(lambda: requests.get(f"{orch.gateway}/readyz", timeout=2).status_code == 200, 30, "ready")
    api = Api(orch.gateway, cluster.secrets.admin_password)
    task = api.create("echo via-dispatcher")
    dispatcher = Proc("dispatcher", ["orchestrator", "dispatch"], cluster.env, cluster.logs)
    cluster.procs.append(dispatcher)
    assert api.get(f"/v1/tasks/{task}").json()["status"] == "queued"  # nothing dispatches yet
    dispatcher.start()
    result = api.wait_status(task, ("completed", "failed"), timeout=60)
    assert result["status"] == "completed" and "via-dispatcher" in result["jobs"][0]["result"]
    assert dispatcher.stop() == 0
