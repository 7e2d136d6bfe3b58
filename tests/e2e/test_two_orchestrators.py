"""Two orchestrator processes on one PostgreSQL: any answers any request, no job runs twice."""

from __future__ import annotations

import re
from collections import Counter

import requests
from harness.api import ApiClient
from harness.processes import wait_until


def test_two_orchestrators_share_the_queue_without_double_dispatch(cluster) -> None:  # type: ignore[no-untyped-def]
    first = cluster.orchestrator("orch-a").start().wait_healthy()
    second = cluster.orchestrator("orch-b").start().wait_healthy()
    assert "migrating" not in second.output  # the schema was already at head
    node = cluster.node("node-01", first, job_slots="4").start().wait_ready()
    wait_until(lambda: requests.get(f"{second.gateway}/readyz", timeout=2).status_code == 200, 30, "second ready")
    api_a, api_b = cluster.admin(first), cluster.admin(second)
    # A token issued by one orchestrator works on the other: no sticky sessions.
    assert ApiClient(second.gateway).get("/v1/users/me", token=api_a.token).status_code == 200
    tasks = [(api_a if i % 2 else api_b).create_command(f"echo task-{i}") for i in range(30)]
    results = [api_a.wait_result(t, ("completed", "failed"), timeout=120) for t in tasks]
    assert all(r["status"] == "completed" for r in results)
    starts = Counter(re.findall(r"job ([0-9a-f-]{36}) \(task [0-9a-f-]{36}\): starting", node.output))
    job_ids = {r["jobs"][0]["id"] for r in results}
    assert len(job_ids) == 30 and all(starts[j] == 1 for j in job_ids)
    owners = set(re.findall(r"dispatcher (\S+): \d+ worker", first.output + second.output))
    assert len(owners) == 2
