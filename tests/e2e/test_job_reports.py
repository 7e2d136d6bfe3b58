"""Jobs handed over with ``jobs:start``: dispatch scales with slots, reports are fenced (issue 12, item 1).

Real processes: orchestrators on PostgreSQL, node agents on Podman. A node
that reports back takes a job and answers at once, so the orchestrator's 8
dispatcher threads keep 24 slots busy; a report that comes after its lease
was lost is refused (409) and logged, and changes nothing; an orchestrator
killed between the hand-over and the report loses nothing; a node that only
speaks ``jobs:run`` still works (decisions.md Dispatch 11).
"""

from __future__ import annotations

import json
import re
import time
import uuid

import psycopg
import requests
from harness.api import ApiClient
from harness.nodes import NodeHandle, ack, fetch_config, register
from harness.processes import wait_until
from harness.worker import Script, WorkerNode

SLOTS = 24


def _ready(orch) -> None:  # type: ignore[no-untyped-def]
    wait_until(lambda: requests.get(f"{orch.gateway}/readyz", timeout=2).status_code == 200, 30, "orchestrator ready")


def _starts(node_log: str) -> list[str]:
    return re.findall(r"job ([0-9a-f-]{36}) \(task [0-9a-f-]{36}\): starting", node_log)


def test_one_orchestrator_keeps_24_slots_busy(cluster) -> None:  # type: ignore[no-untyped-def]
    """24 ``sleep 5`` jobs on one node with 24 slots run side by side, not in waves of 8 (the dispatcher threads)."""
    orch = cluster.orchestrator().start().wait_healthy()  # CYNODE_DISPATCH_WORKERS: the default 8
    node = cluster.node("node-01", orch, job_slots=str(SLOTS)).start().wait_ready()
    api = cluster.admin(orch)
    _ready(orch)
    created = time.time()
    tasks = [api.create_command("cat /proc/uptime; sleep 5") for _ in range(SLOTS)]
    results = [api.wait_result(t, timeout=120) for t in tasks]
    done = time.time()
    assert [r["status"] for r in results] == ["completed"] * SLOTS
    started = sorted(float(json.loads(r["jobs"][0]["result"])["stdout"].split()[0]) for r in results)
    spread, total = started[-1] - started[0], done - created
    print(f"24 x sleep 5 on 24 slots: starts spread over {spread:.2f} s, all done {total:.2f} s after the first create")
    # In waves of 8 the last start would come 10 s after the first; side by side they all start
    # within the time Podman takes to start 24 containers on this 2-core host (~0.3 s each, worst case).
    assert spread < 5.0, started
    assert total < 5.0 + spread + 6.0, total
    assert "handed to its node, which reports back" in orch.output
    assert sorted(_starts(node.output)) == sorted(r["jobs"][0]["id"] for r in results)


def test_a_report_after_its_lease_was_lost_is_refused_and_logged(cluster, database_url: str) -> None:  # type: ignore[no-untyped-def]
    """A node's report under a lease the job no longer has is refused with 409, logged, and changes nothing."""
    orch = cluster.orchestrator().start().wait_healthy()
    control = ApiClient(orch.control)
    node = NodeHandle("node-r", "http://127.0.0.1:9")  # registered, never acked: no job is dispatched to it
    register(control, cluster.secrets.psk, node)
    fetch_config(control, node)
    api = cluster.admin(orch)
    task = api.create_command("echo reported")
    old_lease, lease = uuid.uuid4(), uuid.uuid4()
    job_id = _run_on(database_url, task, "node-r", lease)

    def report(lease_id: uuid.UUID, state: str, stdout: str = "") -> requests.Response:
        body: dict = {"version": 1, "lease_id": str(lease_id), "state": state}
        if state == "finished":
            body["result"] = {"version": 1, "status": "completed", "exit_code": 0, "stdout": stdout}
        return control.post(f"/v1/nodes/jobs/{job_id}/report", json=body, token=node.jwt)

    late = report(old_lease, "finished", "from the lost lease\n")
    assert late.status_code == 409, late.text
    assert api.call("GET", f"/v1/tasks/{task}")["status"] == "running"
    assert report(lease, "running").status_code == 204
    assert report(lease, "finished", "reported\n").status_code == 204
    result = api.wait_result(task, timeout=10)
    assert result["status"] == "completed"
    assert json.loads(result["jobs"][0]["result"])["stdout"] == "reported\n"
    # The job ended: the same lease's repeat and the old lease's late report are both refused.
    assert report(lease, "finished", "again\n").status_code == 409
    assert report(old_lease, "finished", "late\n").status_code == 409
    assert report(lease, "running").status_code == 409
    assert json.loads(api.wait_result(task, timeout=10)["jobs"][0]["result"])["stdout"] == "reported\n"
    refused = re.findall(
        rf"job {job_id}: (\w+) report of node [0-9a-f-]+ under lease ([0-9a-f-]+) refused", orch.output
    )
    assert ("finished", str(old_lease)) in refused and ("running", str(lease)) in refused, refused
    # Another node's report on the job is refused whatever lease it names.
    other = NodeHandle("node-s", "http://127.0.0.1:9")
    register(control, cluster.secrets.psk, other)
    resp = control.post(
        f"/v1/nodes/jobs/{job_id}/report",
        json={"version": 1, "lease_id": str(lease), "state": "running"},
        token=other.jwt,
    )
    assert resp.status_code == 409
    # A job its node could not start fails with the node's reason.
    unstarted, unstarted_lease = api.create_command("echo never"), uuid.uuid4()
    unstarted_job = _run_on(database_url, unstarted, "node-r", unstarted_lease)
    body = {"version": 1, "lease_id": str(uuid.uuid4()), "state": "not_started", "error": "Workspace creation failed"}
    assert control.post(f"/v1/nodes/jobs/{unstarted_job}/report", json=body, token=node.jwt).status_code == 409
    body["lease_id"] = str(unstarted_lease)
    assert control.post(f"/v1/nodes/jobs/{unstarted_job}/report", json=body, token=node.jwt).status_code == 204
    failed = api.wait_result(unstarted, timeout=10)
    assert failed["status"] == "failed"
    assert (
        json.loads(failed["jobs"][0]["result"])["error"]
        == "the node could not start the job: Workspace creation failed"
    )


def _run_on(database_url: str, task: str, slug: str, lease: uuid.UUID) -> str:
    """Put ``task``'s job in the state a dispatcher's take-over leaves: running on ``slug`` under ``lease``."""
    with psycopg.connect(database_url, autocommit=True) as conn:
        row = conn.execute(
            "UPDATE jobs SET status = 'running', lease_id = %s, lease_owner = 'test', attempts = 2, "
            "lease_expires_at = now() + interval '60 seconds', started_at = now(), "
            "node_id = (SELECT id FROM nodes WHERE node_slug = %s) WHERE task_id = %s RETURNING id",
            (lease, slug, task),
        ).fetchone()
        conn.execute("UPDATE tasks SET status = 'running' WHERE id = %s", (task,))
    assert row is not None
    return str(row[0])


def test_orchestrator_killed_between_hand_over_and_report_loses_nothing(cluster) -> None:  # type: ignore[no-untyped-def]
    """kill -9 after the node took the jobs: the end reports reach the restarted orchestrator; each job ran once."""
    # The default 30 s lease outlives the outage: the end reports, not a take-over, must complete the jobs
    # (test_crash.py kills an orchestrator with 3 s leases: there the take-over asks the node again).
    orch = cluster.orchestrator().start().wait_healthy()
    node = cluster.node("node-01", orch, job_slots="4").start().wait_ready()
    api = cluster.admin(orch)
    _ready(orch)
    tasks = [api.create_command("sleep 3; echo once") for _ in range(4)]
    wait_until(lambda: len(_starts(node.output)) == 4, 30, "the node to start the 4 jobs")
    assert orch.output.count("handed to its node, which reports back") == 4
    orch.kill()
    time.sleep(4)  # the jobs end while no orchestrator answers: their end reports wait
    orch.start().wait_healthy()
    results = [api.wait_result(t, timeout=60) for t in tasks]
    assert [r["status"] for r in results] == ["completed"] * 4
    assert all(json.loads(r["jobs"][0]["result"])["stdout"] == "once\n" for r in results)
    starts = _starts(node.output)
    assert sorted(starts) == sorted(r["jobs"][0]["id"] for r in results)  # each job started once
    assert "end report not taken" in node.output
    assert orch.output.count("its node reported completed") == 4
    assert "lease expired" not in orch.output


def test_a_node_that_speaks_only_jobs_run_still_works(cluster) -> None:  # type: ignore[no-untyped-def]
    """With CYNODE_JOB_REPORTS=false the node advertises no jobs:start: a dispatcher thread waits on jobs:run."""
    orch = cluster.orchestrator().start().wait_healthy()
    node = cluster.node("node-01", orch, job_reports="false").start().wait_ready()
    api = cluster.admin(orch)
    _ready(orch)
    result = api.wait_result(api.create_command("echo synchronous"), timeout=60)
    assert result["status"] == "completed"
    assert json.loads(result["jobs"][0]["result"])["stdout"] == "synchronous\n"
    assert "handed to its node" not in orch.output
    assert "end reported" not in node.output


def test_a_cancel_reaches_the_node_that_took_the_job(cluster) -> None:  # type: ignore[no-untyped-def]
    """No dispatcher thread waits on the job, yet its cancel stops it on the node; the node's end report is refused."""
    orch = cluster.orchestrator().start().wait_healthy()
    node = cluster.node("node-01", orch).start().wait_ready()
    api = cluster.admin(orch)
    _ready(orch)
    task = api.create_command("sleep 60; echo never")
    wait_until(lambda: len(_starts(node.output)) == 1, 30, "the node to start the job")
    wait_until(lambda: "handed to its node" in orch.output, 10, "the hand-over")
    started = time.monotonic()
    api.call("POST", f"/v1/tasks/{task}/cancel")
    assert api.wait_result(task, timeout=30)["status"] == "canceled"
    wait_until(lambda: "container stopped" in node.output, 15, "the node to stop the container")
    wait_until(lambda: "end report refused" in node.output, 15, "the node's end report to be refused")
    assert time.monotonic() - started < 20
    assert "finished report of node" in orch.output  # the refusal is logged
    assert api.call("GET", f"/v1/tasks/{task}")["status"] == "canceled"


def test_a_node_that_advertises_reports_but_has_no_jobs_start_gets_jobs_run(cluster, tmp_path) -> None:  # type: ignore[no-untyped-def]
    """A 404 to jobs:start (an agent claiming more than it serves): the job goes with jobs:run, and the next at once."""
    worker = WorkerNode(tmp_path / "w")  # the real Worker API without jobs:start, over a scripted runtime
    worker.runtime.when_command_contains("quick", Script(stdout="quick\n", delay=0.1))
    try:
        orch = cluster.orchestrator().start().wait_healthy()
        control = ApiClient(orch.control)
        node = NodeHandle.of("node-01", worker)
        register(control, cluster.secrets.psk, node, worker_api={"base_url": worker.url, "job_reports": True})
        fetch_config(control, node)
        ack(control, node, "applied")
        api = cluster.admin(orch)
        results = [api.wait_result(api.create_command("echo quick"), timeout=30) for _ in range(2)]
        assert [r["status"] for r in results] == ["completed"] * 2
        starts = [c for c in worker.calls if c.path == "/v1/worker/jobs:start"]
        assert len(starts) == 1  # the second job went straight to jobs:run
        assert len(worker.run_calls()) == 2
        assert "does not serve jobs:start; asking with jobs:run" in orch.output
    finally:
        worker.close()
