"""Crash tests on real processes (bounded in time): nothing lost, nothing run twice."""

from __future__ import annotations

import json
import re
import threading
import time
from collections import Counter

import psycopg
import requests
from harness.processes import wait_until

from cynode_core.orchestrator.embedded_pg import EmbeddedPostgres


def _job_starts(node_log: str) -> Counter:
    return Counter(re.findall(r"job ([0-9a-f-]{36}) \(task [0-9a-f-]{36}\): starting", node_log))


def test_orchestrator_kill9_with_20_jobs_in_flight(cluster) -> None:  # type: ignore[no-untyped-def]
    orch = cluster.orchestrator(lease_seconds="3").start().wait_healthy()
    node = cluster.node("node-01", orch, job_slots="4").start().wait_ready()
    api = cluster.admin(orch)
    wait_until(lambda: requests.get(f"{orch.gateway}/readyz", timeout=2).status_code == 200, 30, "orchestrator ready")
    tasks = [api.create_command("sleep 1; echo run-$CYNODE_JOB_ID") for _ in range(20)]
    wait_until(
        lambda: any(api.call("GET", f"/v1/tasks/{t}")["status"] == "running" for t in tasks[:4]), 30, "a running task"
    )
    orch.kill()
    orch.start().wait_healthy()
    results = [api.wait_result(t, timeout=120) for t in tasks]
    assert [r["status"] for r in results] == ["completed"] * 20
    starts = _job_starts(node.output)
    job_ids = [r["jobs"][0]["id"] for r in results]
    assert len(set(job_ids)) == 20 and all(len(r["jobs"]) == 1 for r in results)
    assert all(starts[j] == 1 for j in job_ids), {j: starts[j] for j in job_ids if starts[j] != 1}


def test_node_agent_kill9_mid_job_fails_the_task_with_a_reason(cluster) -> None:  # type: ignore[no-untyped-def]
    """With its only node dead, the job is retried a bounded number of times (or until no
    ready node is left), then fails with the dispatch error; the monitor takes the node out."""
    orch = cluster.orchestrator(lease_seconds="3", max_attempts="3", node_probe_interval="1").start().wait_healthy()
    node = cluster.node("node-01", orch).start().wait_ready()
    api = cluster.admin(orch)
    wait_until(lambda: requests.get(f"{orch.gateway}/readyz", timeout=2).status_code == 200, 30, "orchestrator ready")
    task = api.create_command("sleep 30; echo never")
    wait_until(lambda: api.call("GET", f"/v1/tasks/{task}")["status"] == "running", 30, "task running")
    started = time.monotonic()
    node.kill()
    result = api.wait_result(task, ("completed", "failed"), timeout=30)
    assert result["status"] == "failed"
    error = json.loads(result["jobs"][0]["result"])["error"]
    # Two honest endings, whichever comes first: the retries run out, or the node monitor
    # has already taken the dead node out and no ready node is left to take the retry.
    assert "worker api call failed" in error
    assert "after 3 attempts" in error or "no ready node took the retry" in error, error
    assert time.monotonic() - started < 30
    with psycopg.connect(cluster.env["CYNODE_DATABASE_URL"]) as conn:
        wait_until(
            lambda: conn.execute("SELECT status FROM nodes WHERE node_slug = 'node-01'").fetchone()[0] == "inactive",
            15,
            "the monitor to take the dead node out",
        )


def test_postgres_restart_under_load_answers_503_and_loses_nothing(cluster, tmp_path) -> None:  # type: ignore[no-untyped-def]
    pg = EmbeddedPostgres(tmp_path / "own-pg")
    url = pg.start()
    cluster.env["CYNODE_DATABASE_URL"] = url
    try:
        orch = cluster.orchestrator().start().wait_healthy()
        cluster.node("node-01", orch, job_slots="4").start().wait_ready()
        api = cluster.admin(orch)
        created: list[str] = []
        statuses: Counter = Counter()
        stop = threading.Event()

        def load() -> None:
            deadline = time.monotonic() + 60
            while not stop.is_set() and time.monotonic() < deadline:
                try:
                    # Each answer as the server gave it: the API client would wait out a 503 (Retry-After: 2)
                    # and send again five times, so a 503 would reach this count only every 10 s.
                    resp = api.http.post(
                        f"{api.url}/v1/tasks",
                        json={"prompt": "echo ok", "input_mode": "commands"},
                        headers={"Authorization": f"Bearer {api.token}"},
                        timeout=10,
                    )
                except requests.RequestException:
                    statuses["transport"] += 1
                    continue
                statuses[resp.status_code] += 1
                if resp.status_code == 201:
                    created.append(resp.json()["id"])
                else:
                    assert resp.headers["Content-Type"] == "application/problem+json"
                time.sleep(0.05)

        loader = threading.Thread(target=load, daemon=True)
        loader.start()
        wait_until(lambda: len(created) >= 5, 30, "tasks created before the restart")
        pg.stop()
        wait_until(lambda: statuses[503] >= 3, 30, "503 answers while PostgreSQL is down")
        assert requests.get(f"{orch.gateway}/healthz", timeout=5).status_code == 200
        ready = requests.get(f"{orch.gateway}/readyz", timeout=5)
        assert ready.status_code == 503 and "database: failing" in ready.text
        assert pg.start() == url
        before = statuses[201]
        wait_until(lambda: statuses[201] >= before + 5, 60, "tasks created after the restart")
        stop.set()
        loader.join(timeout=15)
        assert statuses[500] == 0, statuses
        for task in created:
            assert api.wait_result(task, ("completed", "failed"), timeout=90)["status"] == "completed"
    finally:
        cluster.stop_all()
        pg.stop()
