"""Three nodes on one host: jobs spread by free slots; a node killed mid-run loses no task."""

from __future__ import annotations

import re
from collections import Counter

import requests
from harness.processes import wait_until


def test_three_nodes_share_30_tasks_and_survive_losing_one(cluster) -> None:  # type: ignore[no-untyped-def]
    orch = cluster.orchestrator(node_probe_interval="1", lease_seconds="5").start().wait_healthy()
    nodes = [cluster.node(f"node-0{i}", orch, job_slots="2").start() for i in (1, 2, 3)]
    for node in nodes:
        node.wait_ready()
    wait_until(lambda: requests.get(f"{orch.gateway}/readyz", timeout=2).status_code == 200, 30, "ready")
    api = cluster.admin(orch)
    tasks = [api.create_command(f"sleep 1; echo task-{i}") for i in range(30)]
    victim = nodes[2]
    wait_until(lambda: "starting in" in victim.output, 30, "a job on node-03")
    victim.kill()
    results = [api.wait_result(t, timeout=180) for t in tasks]
    assert [r["status"] for r in results] == ["completed"] * 30, [r for r in results if r["status"] != "completed"]
    ran_on: Counter = Counter()
    for node in nodes:
        ran_on[node.name] = len(set(re.findall(r"job ([0-9a-f-]{36}) \(task [0-9a-f-]{36}\): completed", node.output)))
    assert ran_on["node-01"] >= 5 and ran_on["node-02"] >= 5, ran_on
    assert sum(ran_on.values()) >= 30
    # The dead node is out of dispatch.
    nodes_view = requests.get(f"{orch.gateway}/readyz", timeout=5).text
    assert "node-03" not in nodes_view.split("dispatchable node:")[1]
