"""Fair sharing (issue 11, item 7): per-user limits on queued and running jobs, and a claim order fair across users.

The claim's order itself, one claim at a time and for several threads at
once, is proven in test_claim_order.py. Everything here runs on real parts: the orchestrator's app served on loopback
(real HTTP), the test's own PostgreSQL database, the real dispatcher threads
and a node's real Worker API over a scripted sandbox (harness/worker.py).
The limits are set as an operator would, through ``CYNODE_*`` variables.
"""

from __future__ import annotations

import itertools
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from harness.orchestrator import (
    InProcessDispatcher,
    create_users,
    rows,
)
from harness.processes import wait_until
from harness.served import Served, create, logged_in, one_slot_node
from harness.worker import Script, WorkerNode
from sqlalchemy import text

QUEUE_LIMIT = 3
WAIT = 20.0


def counts(db: Any) -> dict[str, int]:
    return {
        table: rows(db, f"SELECT count(*) AS n FROM {table}")[0]["n"]  # noqa: S608 - fixed table names
        for table in ("tasks", "jobs", "task_artifacts", "projects")
    }


# -- the queued limit ---------------------------------------------------------------------


def test_past_the_queued_limit_a_create_is_429_with_retry_after_and_creates_nothing(
    serve: Callable[..., Served],
) -> None:
    served = serve({"CYNODE_MAX_QUEUED_PER_USER": str(QUEUE_LIMIT)})
    create_users(served.db, "alice", "bob")
    alice, bob = logged_in(served, "alice"), logged_in(served, "bob")
    created = [create(served, alice, f"echo {i}") for i in range(QUEUE_LIMIT)]
    assert [r.status_code for r in created] == [201] * QUEUE_LIMIT
    before = counts(served.db)

    refused = create(served, alice, "echo one too many", task_name="extra", attachments=["a.txt"])

    assert refused.status_code == 429, refused.text
    assert refused.headers["Content-Type"] == "application/problem+json"
    assert refused.headers["Retry-After"].isdigit() and 1 <= int(refused.headers["Retry-After"]) <= 60
    body = refused.json()
    assert body["type"] == "urn:cynodeai:error:rate_limit" and body["status"] == 429
    assert body["title"] == "Too Many Requests"
    assert f"{QUEUE_LIMIT} queued" in body["detail"], body
    assert counts(served.db) == before  # no task, job, attachment or project
    # The limit is per user: bob is not held back by alice's queue.
    assert create(served, bob, "echo bob").status_code == 201
    # Only queued jobs count: once one of alice's leaves the queue, she may create again.
    task_id = created[0].json()["task_id"]
    assert served.api.post(f"/v1/tasks/{task_id}/cancel", token=alice).status_code == 200
    assert create(served, alice, "echo again").status_code == 201
    assert create(served, alice, "echo and again").status_code == 429


def test_retry_after_is_the_users_recent_run_time_over_their_running_jobs(serve: Callable[..., Served]) -> None:
    served = serve({"CYNODE_MAX_QUEUED_PER_USER": "2"})
    create_users(served.db, "dave")
    token = logged_in(served, "dave")
    first, second = (create(served, token, f"echo {i}").json()["task_id"] for i in (1, 2))

    def job_is(task_id: str, assignment: str) -> None:
        with served.db.session() as session:
            session.execute(text(f"UPDATE jobs SET {assignment} WHERE task_id = :t"), {"t": task_id})

    # The first ran for 30 s and ended lately; the second runs now.
    job_is(
        first,
        "status = 'completed', started_at = now() - interval '40 seconds', ended_at = now() - interval '10 seconds'",
    )
    job_is(second, "status = 'running', started_at = now()")
    for i in (3, 4):
        assert create(served, token, f"echo {i}").status_code == 201
    refused = create(served, token, "echo 5")
    assert refused.status_code == 429 and refused.headers["Retry-After"] == "30", refused.headers
    # Two running: a slot of theirs frees twice as often.
    third = rows(served.db, "SELECT t.id FROM tasks t WHERE t.prompt = 'echo 3'")[0]["id"]
    job_is(str(third), "status = 'running', started_at = now()")
    assert create(served, token, "echo 6").status_code == 201
    assert create(served, token, "echo 7").headers["Retry-After"] == "15"


def test_concurrent_creates_on_two_orchestrators_never_pass_the_queued_limit(serve: Callable[..., Served]) -> None:
    environ = {"CYNODE_MAX_QUEUED_PER_USER": str(QUEUE_LIMIT)}
    first, second = serve(environ), serve(environ)
    create_users(first.db, "carol")
    token = logged_in(first, "carol")
    attempts = 16
    start = threading.Barrier(attempts)
    statuses: list[int] = []
    lock = threading.Lock()

    def one(i: int) -> None:
        served = (first, second)[i % 2]
        start.wait()
        status = create(served, token, f"echo {i}").status_code
        with lock:
            statuses.append(status)

    threads = [threading.Thread(target=one, args=(i,)) for i in range(attempts)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)
    assert sorted(statuses) == [201] * QUEUE_LIMIT + [429] * (attempts - QUEUE_LIMIT)
    queued = rows(
        first.db,
        "SELECT count(*) AS n FROM jobs j JOIN tasks t ON t.id = j.task_id JOIN users u ON u.id = t.created_by "
        "WHERE u.handle = 'carol' AND j.status = 'queued'",
    )
    assert queued[0]["n"] == QUEUE_LIMIT


# -- the running cap ------------------------------------------------------------------------


def test_past_the_running_cap_a_users_jobs_wait_while_another_users_run(
    serve: Callable[..., Served], worker: WorkerNode
) -> None:
    served = serve(
        {"CYNODE_MAX_RUNNING_PER_USER": "1"},
        dispatcher_enabled=True,
        dispatch_workers=3,
        dispatch_poll_interval=0.2,
    )
    worker.runtime.default = Script(hold=True)
    one_slot_node(served, worker, slots=4)
    create_users(served.db, "alice", "bob")
    alice, bob = logged_in(served, "alice"), logged_in(served, "bob")
    dispatcher = InProcessDispatcher(served.state)
    try:
        alices = [create(served, alice, f"echo alice {i}").json()["task_id"] for i in range(3)]
        bobs = create(served, bob, "echo bob").json()["task_id"]
        wait_until(lambda: len(worker.run_calls()) >= 2, WAIT, "one job of each user to start")
        time.sleep(1.0)  # several poll periods: free slots, and alice's other jobs still wait
        started = {c.task_id for c in worker.run_calls()}
        assert len(started) == 2 and bobs in started and len(started & set(alices)) == 1, started
        worker.runtime.release()
        wait_until(
            lambda: all(r["status"] == "completed" for r in rows(served.db, "SELECT status FROM jobs")),
            WAIT,
            "every job to complete",
        )
    finally:
        worker.runtime.release()
        dispatcher.stop()
    spans = rows(
        served.db,
        "SELECT j.started_at, j.ended_at FROM jobs j JOIN tasks t ON t.id = j.task_id WHERE t.id = ANY(:ids) "
        "ORDER BY j.started_at",
        ids=alices,
    )
    # One at a time: each of alice's jobs started after the one before it ended.
    assert all(later["started_at"] >= earlier["ended_at"] for earlier, later in itertools.pairwise(spans)), spans


# -- the claim order ---------------------------------------------------------------------------


def test_another_users_first_job_starts_within_one_slots_turn_of_a_hundred_queued(
    serve: Callable[..., Served], tmp_path: Path
) -> None:
    served = serve({}, dispatcher_enabled=True, dispatch_workers=2, dispatch_poll_interval=0.2)
    # The node offers one slot; its Worker API has room for two, so a job sent as the last one ends never meets a 503.
    worker = WorkerNode(tmp_path / "one-slot", job_slots=2)
    worker.runtime.default = Script(stdout="done\n", delay=0.2)
    one_slot_node(served, worker, slots=1)
    create_users(served.db, "alice", "bob")
    alice, bob = logged_in(served, "alice"), logged_in(served, "bob")
    dispatcher = InProcessDispatcher(served.state)
    try:
        for i in range(100):
            assert create(served, alice, f"echo alice {i}").status_code == 201
        before_b = len({c.task_id for c in worker.run_calls()})
        assert before_b < 90, "alice's queue drained before bob's job arrived: make her jobs slower"
        resp = create(served, bob, "echo bob")
        assert resp.status_code == 201, resp.text
        bobs = resp.json()["task_id"]
        call = wait_until(lambda: next((c for c in worker.run_calls() if c.task_id == bobs), None), WAIT, "bob's job")
    finally:
        dispatcher.stop()
        worker.close()
    order = list(dict.fromkeys(c.task_id for c in worker.run_calls()))  # tasks in the order they first ran
    # Slot turns after bob's job was queued: at most one of alice's (claimed as his create committed) before his.
    assert order.index(call.task_id) - before_b <= 1, (before_b, order.index(call.task_id))
    started = rows(
        served.db,
        "SELECT count(*) AS n FROM jobs j JOIN tasks t ON t.id = j.task_id "
        "WHERE t.id <> :bob AND j.started_at > (SELECT created_at FROM tasks WHERE id = :bob) "
        "AND j.started_at < (SELECT started_at FROM jobs WHERE task_id = :bob)",
        bob=bobs,
    )
    assert started[0]["n"] <= 1, started
