"""Fair sharing (issue 11, item 7): per-user limits on queued and running jobs, and a claim order fair across users.

Everything runs on real parts: the orchestrator's app served on loopback
(real HTTP), the test's own PostgreSQL database, the real dispatcher threads
and a node's real Worker API over a scripted sandbox (harness/worker.py).
The limits are set as an operator would, through ``CYNODE_*`` variables.
"""

from __future__ import annotations

import contextlib
import itertools
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psycopg
import pytest
from harness.api import ApiClient
from harness.nodes import NodeHandle, ack, fetch_config, register
from harness.orchestrator import (
    USER_PASSWORD,
    InProcessDispatcher,
    LiveServer,
    OrchestratorUnderTest,
    Secrets,
    create_users,
    make_settings,
    open_orchestrator,
    rows,
)
from harness.processes import wait_until
from harness.worker import Script, WorkerNode
from sqlalchemy import text

from cynode_core.orchestrator.dispatch.dispatcher import Dispatcher
from cynode_core.orchestrator.dispatch.fair_order import HEADS

QUEUE_LIMIT = 3
WAIT = 20.0


@dataclass
class Served:
    """One orchestrator on the test's database, served on loopback."""

    orchestrator: OrchestratorUnderTest
    server: LiveServer
    api: ApiClient

    @property
    def db(self) -> Any:
        return self.orchestrator.db

    @property
    def state(self) -> Any:
        return self.orchestrator.app.extensions["cynode"]

    def close(self) -> None:
        self.server.stop()
        self.orchestrator.close()


@pytest.fixture
def serve(tmp_path: Path, database_url: str, test_secrets: Secrets) -> Iterator[Callable[..., Served]]:
    """Open and serve an orchestrator with the given ``CYNODE_*`` environment; all closed at the end."""
    opened: list[Served] = []

    def open_one(environ: dict[str, str], **overrides: Any) -> Served:
        settings = make_settings(
            tmp_path / f"home-{len(opened)}", database_url, test_secrets, environ=environ, **overrides
        )
        orchestrator = open_orchestrator(settings, test_secrets)
        server = LiveServer(orchestrator.app)
        served = Served(orchestrator, server, ApiClient(server.url))
        opened.append(served)
        return served

    yield open_one
    for served in reversed(opened):
        served.close()


def logged_in(served: Served, handle: str) -> str:
    resp = served.api.login(handle, USER_PASSWORD, expect=200)
    return str(resp.json()["access_token"])


def create(served: Served, token: str, command: str, **extra: Any) -> Any:
    return served.api.post("/v1/tasks", json={"prompt": command, "input_mode": "commands", **extra}, token=token)


def counts(db: Any) -> dict[str, int]:
    return {
        table: rows(db, f"SELECT count(*) AS n FROM {table}")[0]["n"]  # noqa: S608 - fixed table names
        for table in ("tasks", "jobs", "task_artifacts", "projects")
    }


def one_slot_node(served: Served, worker: WorkerNode, slug: str = "node-01", slots: int = 1) -> NodeHandle:
    """A dispatchable node in front of ``worker`` whose capability offers ``slots`` sandbox slots."""
    node = NodeHandle.of(slug, worker)
    register(served.api, served.orchestrator.secrets.psk, node, sandbox={"supported": True, "max_concurrency": slots})
    fetch_config(served.api, node)
    ack(served.api, node, "applied")
    return node


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


class Claims:
    """Tasks of named jobs (``a1`` is alice's first) and a dispatcher's claims, by one of the two claim paths."""

    def __init__(self, served: Served, database_url: str, path: str):
        self.served = served
        self.url = database_url.replace("postgresql+psycopg://", "postgresql://")
        self.path = path
        self.tasks: dict[str, str] = {}
        self.dispatcher = Dispatcher(served.state)
        self.tokens: dict[str, str] = {}

    def create(self, user: str, *names: str) -> None:
        if user not in self.tokens:
            create_users(self.served.db, user)
            self.tokens[user] = logged_in(self.served, user)
        for name in names:
            resp = create(self.served, self.tokens[user], f"echo {name}")
            assert resp.status_code == 201, resp.text
            self.tasks[name] = resp.json()["task_id"]

    def take(self) -> str | None:
        """Claim one job as a dispatcher thread does; its name, or ``None``."""
        if self.path == "one statement":
            job = self.dispatcher.claim()  # through the hook: least-loaded's one statement
        else:
            job = self.dispatcher.queue.claim_with(lambda job, candidates: candidates[0])
        names = {task_id: name for name, task_id in self.tasks.items()}
        return names[job.request.task_id] if job is not None else None

    @contextlib.contextmanager
    def held(self, *names: str) -> Iterator[None]:
        """Another orchestrator is claiming these jobs right now: their rows are locked, not yet taken."""
        ids = [self.tasks[name] for name in names]
        with psycopg.connect(self.url) as other:
            other.execute("SELECT id FROM jobs WHERE task_id = ANY(%s::uuid[]) FOR UPDATE", (ids,))
            yield
            other.rollback()


@pytest.fixture
def claim_environ() -> dict[str, str]:
    """The orchestrator's ``CYNODE_*`` settings for ``claims`` (a test parametrizes it to change them)."""
    return {}


@pytest.fixture(params=["one statement", "two steps"])
def claims(
    request: pytest.FixtureRequest,
    serve: Callable[..., Served],
    worker: WorkerNode,
    database_url: str,
    claim_environ: dict[str, str],
) -> Iterator[Claims]:
    served = serve(claim_environ)
    one_slot_node(served, worker, slots=10)
    found = Claims(served, database_url, request.param)
    yield found
    found.dispatcher.queue.close()


def test_the_claim_takes_turns_across_users_and_skips_past_a_job_another_claimer_holds(claims: Claims) -> None:
    claims.create("alice", "a1", "a2", "a3")
    claims.create("bob", "b1", "b2")
    assert claims.take() == "a1"
    with claims.held("a2"):
        # Skipping alice's second job does not hand her the third: bob's first is next.
        assert claims.take() == "b1"
    # Alice has one running, bob one: alice was served longer ago, then bob, then alice's last.
    assert [claims.take(), claims.take(), claims.take(), claims.take()] == ["a2", "b2", "a3", None]


@pytest.mark.parametrize("claim_environ", [{"CYNODE_MAX_RUNNING_PER_USER": "1"}])
def test_the_claim_keeps_the_running_cap_while_another_claimer_holds_a_job(claims: Claims) -> None:
    claims.create("alice", "a1", "a2")
    claims.create("bob", "b1")
    with claims.held("a1"):
        # a1 may be taken any moment: a2 would be alice's second running job.
        assert claims.take() == "b1"
        assert claims.take() is None
    assert claims.take() == "a1"
    assert claims.take() is None  # a2 waits for a1 to end


def test_a_claim_still_finds_work_when_every_candidate_is_held_elsewhere(claims: Claims) -> None:
    names = [f"a{i}" for i in range(1, HEADS + 3)]
    claims.create("alice", *names)
    # Every job the fair order looks at is being claimed elsewhere: the oldest other one is taken.
    with claims.held(*names[:HEADS]):
        assert claims.take() == names[HEADS]


# -- a node's slots under concurrent claims (decisions.md Dispatch 14) -------------------------------------


@pytest.fixture
def two_slots(serve: Callable[..., Served], worker: WorkerNode, database_url: str) -> Iterator[Claims]:
    served = serve({})
    one_slot_node(served, worker, slots=2)
    found = Claims(served, database_url, "one statement")
    yield found
    found.dispatcher.queue.close()


def running_counts(db: Any) -> tuple[int, int]:
    """The node's ``running_jobs`` counter and its jobs actually running."""
    node = rows(db, "SELECT id, running_jobs FROM nodes")[0]
    actual = rows(db, "SELECT count(*) AS n FROM jobs WHERE status = 'running' AND node_id = :id", id=node["id"])
    return int(node["running_jobs"]), int(actual[0]["n"])


def test_a_claim_that_waited_for_anothers_on_the_same_node_sees_the_slot_it_took(two_slots: Claims) -> None:
    two_slots.create("alice", "a1", "a2", "a3")
    assert two_slots.take() == "a1"
    with psycopg.connect(two_slots.url) as other:
        # Another dispatcher places a2 on the node and has not committed yet: the node row is locked.
        other.execute(
            "UPDATE jobs SET status = 'running', node_id = (SELECT id FROM nodes), started_at = now() "
            "WHERE task_id = %s",
            (two_slots.tasks["a2"],),
        )
        committer = threading.Timer(0.5, other.commit)
        committer.start()
        began = time.monotonic()
        taken = two_slots.take()  # waits for the other's lock on the node
        waited = time.monotonic() - began
        committer.join()
    assert waited >= 0.4, "the claim did not wait for the node's lock"
    # Its snapshot said one slot was free; the node's row after the lock says none is.
    assert taken is None
    assert running_counts(two_slots.served.db) == (2, 2)


def test_the_running_counter_follows_every_way_a_job_enters_or_leaves_running(two_slots: Claims) -> None:
    db = two_slots.served.db
    two_slots.create("alice", "a1", "a2")
    assert [two_slots.take(), two_slots.take(), two_slots.take()] == ["a1", "a2", None]
    assert running_counts(db) == (2, 2)
    a1, a2 = (two_slots.tasks[name] for name in ("a1", "a2"))
    with db.session() as session:
        session.execute(text("UPDATE jobs SET status = 'completed' WHERE task_id = :t"), {"t": a1})
    assert running_counts(db) == (1, 1)
    with db.session() as session:  # lease renewals and other writes of a running job leave it alone
        session.execute(text("UPDATE jobs SET lease_expires_at = now() WHERE task_id = :t"), {"t": a2})
    assert running_counts(db) == (1, 1)
    with db.session() as session:  # back to the queue
        session.execute(text("UPDATE jobs SET status = 'queued', node_id = NULL WHERE task_id = :t"), {"t": a2})
    assert running_counts(db) == (0, 0)
    assert two_slots.take() == "a2"
    with db.session() as session:
        session.execute(text("DELETE FROM jobs WHERE task_id = :t"), {"t": a2})
    assert running_counts(db) == (0, 0)
