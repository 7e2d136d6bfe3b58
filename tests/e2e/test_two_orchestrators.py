"""Two orchestrator processes on one PostgreSQL: any answers any request, no job runs twice."""

from __future__ import annotations

import re
from collections import Counter

import requests

from e2e.procs import Api, wait_until


def test_two_orchestrators_share_the_queue_without_double_dispatch(cluster) -> None:  # type: ignore[no-untyped-def]
    first = cluster.orchestrator("orch-a").start().wait_healthy()
    second = cluster.orchestrator("orch-b").start().wait_healthy()
    assert "migrating" not in second.log()  # the schema was already at head
    node = cluster.node("node-01", first, job_slots="4").start().wait_ready()
    wait_until(lambda: requests.get(f"{second.gateway}/readyz", timeout=2).status_code == 200, 30, "second ready")
    api_a = Api(first.gateway, cluster.secrets.admin_password)
    api_b = Api(second.gateway, cluster.secrets.admin_password)
    # A token issued by one orchestrator works on the other: no sticky sessions.
    assert requests.get(f"{second.gateway}/v1/users/me", headers=api_a.headers, timeout=5).status_code == 200
    tasks = [(api_a if i % 2 else api_b).create(f"echo task-{i}") for i in range(30)]
    results = [api_a.wait_status(t, ("completed", "failed"), timeout=120) for t in tasks]
    assert all(r["status"] == "completed" for r in results)
    starts = Counter(re.findall(r"job ([0-9a-f-]{36}) \(task [0-9a-f-]{36}\): starting", node.log()))
    job_ids = {r["jobs"][0]["id"] for r in results}
    assert len(job_ids) == 30 and all(starts[j] == 1 for j in job_ids)
    owners = set(re.findall(r"dispatcher (\S+): \d+ worker", first.log() + second.log()))
    assert len(owners) == 2
