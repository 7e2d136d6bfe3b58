"""Node reports on the control plane: live output (issue 12, item 2) and the job metrics (item 5).

Output reports append to the task's log under the job's lease, mark a cut
stream, and keep the end report from appending the output again;
``/metrics`` shows running jobs per node and per orchestrator and the
report latency. Real parts: the app on the test's own PostgreSQL database with its real
dispatcher threads (whose ``lease_owner`` makes a running job this
process's), and the real report route a node posts to. The jobs are put
running on a registered node with SQL, as a dispatcher's hand-over leaves
them; the node's reports are real HTTP requests to the app.
"""

from __future__ import annotations

import datetime as dt
import uuid
from typing import Any

import pytest
from harness.api import ApiClient
from harness.nodes import NodeHandle, fetch_config, register
from harness.orchestrator import InProcessDispatcher
from metrics_samples import families_of, value
from sqlalchemy import text

from cynode_core.contract.job import OUTPUT_CUT_MARKER, report_time


@pytest.fixture
def settings_overrides() -> dict[str, Any]:
    # The dispatcher's threads give this process a lease owner; no node is acked, so they send nothing.
    return {"dispatcher_enabled": True, "dispatch_workers": 1}


def scrape(api: ApiClient) -> dict[str, Any]:
    resp = api.get("/metrics")
    assert resp.status_code == 200, resp.text
    return families_of(resp.text)


def run_on(orchestrator: Any, task_id: str, slug: str, owner: str) -> tuple[str, str]:
    """Put the task's job running on ``slug`` under a fresh lease held by ``owner``; ``(job id, lease id)``."""
    lease = str(uuid.uuid4())
    with orchestrator.db.engine.begin() as conn:
        job_id = conn.execute(
            text(
                "UPDATE jobs SET status = 'running', lease_id = :lease, lease_owner = :owner, attempts = 1, "
                "lease_expires_at = now() + interval '60 seconds', started_at = now(), "
                "node_id = (SELECT id FROM nodes WHERE node_slug = :slug) WHERE task_id = :task RETURNING id"
            ),
            {"lease": lease, "owner": owner, "slug": slug, "task": task_id},
        ).scalar_one()
        conn.execute(text("UPDATE tasks SET status = 'running' WHERE id = :id"), {"id": task_id})
    return str(job_id), lease


def reporting_job(api: ApiClient, orchestrator: Any, slug: str) -> tuple[NodeHandle, str, str]:
    """A registered node ``slug`` running a fresh command task's job under a lease: (node, job id, lease id)."""
    node = NodeHandle(slug, "http://127.0.0.1:9")
    register(api, orchestrator.secrets.psk, node)
    fetch_config(api, node)
    api.login("admin", orchestrator.secrets.admin_password, expect=200)
    job, lease = run_on(orchestrator, api.create_command(f"echo {slug}"), slug, "test")
    return node, job, lease


def send_report(api: ApiClient, node: NodeHandle, job: str, body: dict[str, Any]) -> int:
    """POST a version-1 report of ``node`` on ``job``; the answer's status."""
    sent = {"version": 1, **body}
    return api.post(f"/v1/nodes/jobs/{job}/report", json=sent, token=node.jwt).status_code


def test_running_jobs_per_node_and_per_orchestrator_and_the_report_latency(api: ApiClient, orchestrator: Any) -> None:
    state = orchestrator.app.extensions["cynode"]
    busy, idle = NodeHandle("node-busy", "http://127.0.0.1:9"), NodeHandle("node-idle", "http://127.0.0.1:9")
    for node in (busy, idle):  # registered, never acked: the dispatcher sends them nothing
        register(api, orchestrator.secrets.psk, node)
        fetch_config(api, node)
    dispatcher = InProcessDispatcher(state)
    try:
        api.login("admin", orchestrator.secrets.admin_password, expect=200)
        mine, theirs = api.create_command("echo mine"), api.create_command("echo theirs")
        job, lease = run_on(orchestrator, mine, "node-busy", state.dispatcher.owner)
        run_on(orchestrator, theirs, "node-busy", "another-orchestrator:1:abc")

        families = scrape(api)
        assert value(families, "cynode_node_jobs_running", node="node-busy") == 2
        assert value(families, "cynode_node_jobs_running", node="node-idle") == 0
        assert value(families, "cynode_jobs_running_dispatched") == 1
        assert value(families, "cynode_job_report_latency_seconds_count") == 0

        body: dict[str, Any] = {
            "version": 1,
            "lease_id": lease,
            "state": "finished",
            "result": {"version": 1, "status": "completed", "exit_code": 0, "stdout": "mine\n"},
            "ended_at": "yesterday",
        }
        bad = api.post(f"/v1/nodes/jobs/{job}/report", json=body, token=busy.jwt)
        assert bad.status_code == 400, bad.text
        body["ended_at"] = report_time(dt.datetime.now(dt.UTC) - dt.timedelta(seconds=1.5))
        resp = api.post(f"/v1/nodes/jobs/{job}/report", json=body, token=busy.jwt)
        assert resp.status_code == 204, resp.text
    finally:
        dispatcher.stop()

    families = scrape(api)
    assert value(families, "cynode_node_jobs_running", node="node-busy") == 1
    assert value(families, "cynode_jobs_running_dispatched") == 0
    assert value(families, "cynode_job_report_latency_seconds_count") == 1
    latency = value(families, "cynode_job_report_latency_seconds_sum")
    assert latency is not None and 1.5 <= latency < 10, latency
    buckets = {
        s.labels["le"]: s.value
        for s in families["cynode_job_report_latency_seconds"].samples
        if s.name.endswith("_bucket")
    }
    assert buckets["1.0"] == 0 and buckets["2.5"] == 1, buckets


def test_output_reports_are_fenced_marked_where_cut_and_not_appended_again(api: ApiClient, orchestrator: Any) -> None:
    node, job, lease = reporting_job(api, orchestrator, "node-out")

    def report(lease_id: str, state: str, **body: Any) -> int:
        return send_report(api, node, job, {"lease_id": lease_id, "state": state, **body})

    first = [{"stream": "stdout", "data": "one\ntw"}, {"stream": "stderr", "data": "warn\n"}]
    assert report(lease, "output", output=first) == 204
    assert report(lease, "output", output=[{"stream": "stdout", "data": "o\n", "cut": True}]) == 204
    assert report(str(uuid.uuid4()), "output", output=[{"stream": "stdout", "data": "late\n"}]) == 409
    assert report(lease, "output", output=[{"stream": "stdin", "data": "x"}]) == 400
    assert report(lease, "output", output=[{"stream": "stdout", "data": "x" * 65537}]) == 400
    result = {"version": 1, "status": "completed", "exit_code": 0, "stdout": "one\ntwo\n", "stderr": "warn\n"}
    assert report(lease, "finished", result=result, output_streamed=True) == 204
    assert report(lease, "output", output=[{"stream": "stdout", "data": "after the end\n"}]) == 409

    with orchestrator.db.engine.connect() as conn:
        rows = conn.execute(
            text("SELECT stream, data FROM job_output WHERE job_id = :id ORDER BY seq"), {"id": job}
        ).all()
    assert [tuple(r) for r in rows] == [
        ("stdout", "one\n"),
        ("stdout", "tw"),
        ("stderr", "warn\n"),
        ("stdout", "o\n"),
        ("stdout", OUTPUT_CUT_MARKER),
    ]


def test_a_batch_sent_again_is_stored_once_and_the_end_report_adds_only_what_was_not_streamed(
    api: ApiClient, orchestrator: Any
) -> None:
    """A node whose output report was stored but whose answer was lost sends it again: no line twice."""
    node, job, lease = reporting_job(api, orchestrator, "node-again")

    def output(*pieces: dict[str, Any]) -> int:
        return send_report(api, node, job, {"lease_id": lease, "state": "output", "output": list(pieces)})

    assert output({"stream": "stdout", "data": "one\n", "offset": 0}) == 204
    assert output({"stream": "stdout", "data": "one\n", "offset": 0}) == 204  # the same batch again
    assert output({"stream": "stdout", "data": "one\ntwo\n", "offset": 0}) == 204  # again, with more
    assert (
        output({"stream": "stderr", "data": "warn\n", "offset": 0}, {"stream": "stdout", "data": "", "offset": 8})
        == 204
    )
    assert output({"stream": "stderr", "data": "nul\x00\n", "offset": 5}) == 204  # stored as U+FFFD
    assert output({"stream": "stdout", "data": "x", "offset": -1}) == 400
    assert output({"stream": "stdout", "data": "x", "offset": True}) == 400
    assert output({"stream": "stdout", "data": "x", "offset": 2**41}) == 400
    # The end report without output_streamed: only "three\n" is new, and stdout was cut there.
    result = {
        "version": 1,
        "status": "completed",
        "exit_code": 0,
        "stdout": "one\ntwo\nthree\n",
        "stderr": "warn\n",
        "truncated": {"stdout": True, "stderr": False},
    }
    assert send_report(api, node, job, {"lease_id": lease, "state": "finished", "result": result}) == 204

    with orchestrator.db.engine.connect() as conn:
        rows = conn.execute(
            text("SELECT seq, stream, data FROM job_output WHERE job_id = :id ORDER BY seq"), {"id": job}
        ).all()
    assert [tuple(r)[1:] for r in rows] == [
        ("stdout", "one\n"),
        ("stdout", "two\n"),
        ("stderr", "warn\n"),
        ("stderr", "nul\ufffd\n"),
        ("stdout", "three\n"),
        ("stdout", OUTPUT_CUT_MARKER),
    ]
    assert [r[0] for r in rows] == [1, 2, 3, 4, 5, 6]
