"""The claim's order and placement (issue 11 item 7, issue 16 item 3): fair across users, within a node's slots.

One orchestrator served on loopback on the test's own PostgreSQL database,
tasks created through the API, and a node's real Worker API (scripted
sandbox) registered as the place jobs go. Claims are made the way a
dispatcher thread makes them, through the ``cynode_claim_job`` hook; a
second connection plays another orchestrator's claimer where a test needs
one. A claim for several idle threads (``room``) must take the same jobs in
the same order as that many claims one after the other, and never more
than the nodes' free slots.
"""

from __future__ import annotations

import contextlib
import dataclasses
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import psycopg
import pytest
from harness.orchestrator import create_users, rows
from harness.served import Served, create, logged_in, one_slot_node
from harness.worker import Script, WorkerNode
from sqlalchemy import text

from cynode_core.orchestrator.dispatch.dispatcher import Dispatcher
from cynode_core.orchestrator.dispatch.fair_order import HEADS


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
        """Claim one job as a dispatcher thread with no other idle thread does; its name, or ``None``."""
        taken = self.take_several(1)
        return taken[0] if taken else None

    def take_several(self, room: int) -> list[str]:
        """One claim for ``room`` idle threads: the names of the jobs it took, in the order they start."""
        if self.path == "one statement":
            pm = self.served.state.pm  # through the hook: least-loaded's one statement
            attempt = pm.hook.cynode_claim_job(
                queue=self.dispatcher.queue, select_node=pm.hook.cynode_select_node, room=room
            )
            jobs = [attempt.job, *attempt.more] if attempt.job is not None else []
        else:
            job = self.dispatcher.queue.claim_with(lambda job, candidates: candidates[0])
            jobs = [job] if job is not None else []
        names = {task_id: name for name, task_id in self.tasks.items()}
        return [names[job.request.task_id] for job in jobs]

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


# -- one claim for several idle threads -------------------------------------------------------------------


def placed(db: Any) -> dict[str, int]:
    """Running jobs per node slug."""
    found = rows(
        db,
        "SELECT n.node_slug, count(*) AS c FROM jobs j JOIN nodes n ON n.id = j.node_id "
        "WHERE j.status = 'running' GROUP BY n.node_slug",
    )
    return {row["node_slug"]: int(row["c"]) for row in found}


@pytest.fixture
def batches(serve: Callable[..., Served], worker: WorkerNode, database_url: str) -> Iterator[Claims]:
    served = serve({})
    found = Claims(served, database_url, "one statement")
    yield found
    found.dispatcher.queue.close()


def test_a_claim_for_several_threads_takes_the_jobs_single_claims_would_each_under_its_own_lease(
    batches: Claims, worker: WorkerNode
) -> None:
    one_slot_node(batches.served, worker, slots=10)
    batches.create("alice", "a1", "a2", "a3")
    batches.create("bob", "b1", "b2")
    # The order of test_the_claim_takes_turns_across_users_..., in one statement.
    assert batches.take_several(8) == ["a1", "b1", "a2", "b2", "a3"]
    db = batches.served.db
    taken = rows(
        db,
        "SELECT count(DISTINCT lease_id) AS leases, min(attempts) AS lo, max(attempts) AS hi "
        "FROM jobs WHERE status = 'running'",
    )[0]
    assert (taken["leases"], taken["lo"], taken["hi"]) == (5, 1, 1)
    assert rows(db, "SELECT count(*) AS n FROM tasks WHERE status = 'running'")[0]["n"] == 5
    assert rows(db, "SELECT count(*) AS n FROM dispatch_turns")[0]["n"] == 2  # both owners' turns
    assert batches.take_several(8) == []


def test_a_claim_for_several_threads_stays_within_the_free_slots_and_spreads_as_single_claims_would(
    batches: Claims, worker: WorkerNode
) -> None:
    one_slot_node(batches.served, worker, "node-01", slots=3)
    one_slot_node(batches.served, worker, "node-02", slots=1)
    batches.create("alice", "a1", "a2", "a3", "a4", "a5")
    # One at a time: node-01 (3 free) takes jobs until node-02 (1 free) has as many, the tie goes to node-01.
    assert batches.take_several(8) == ["a1", "a2", "a3"]
    assert placed(batches.served.db) == {"node-01": 3}
    assert batches.take_several(8) == ["a4"]
    assert batches.take_several(8) == []  # every slot is taken: a5 stays queued
    assert placed(batches.served.db) == {"node-01": 3, "node-02": 1}
    assert running_counts_of(batches.served.db) == {"node-01": 3, "node-02": 1}


def running_counts_of(db: Any) -> dict[str, int]:
    return {row["node_slug"]: int(row["running_jobs"]) for row in rows(db, "SELECT node_slug, running_jobs FROM nodes")}


def test_a_claim_for_several_threads_stops_before_a_job_that_prefers_another_node(
    batches: Claims, worker: WorkerNode
) -> None:
    one_slot_node(batches.served, worker, "node-01", slots=10)
    one_slot_node(batches.served, worker, "node-02", slots=1)
    batches.create("alice", "a1", "a2", "a3")
    with batches.served.db.session() as session:  # a2 comes back after a lost lease on node-02
        session.execute(
            text("UPDATE jobs SET node_id = (SELECT id FROM nodes WHERE node_slug = 'node-02') WHERE task_id = :t"),
            {"t": batches.tasks["a2"]},
        )
    assert batches.take_several(8) == ["a1"]  # a3 does not jump ahead of a2
    assert batches.take_several(8) == ["a2"]
    assert placed(batches.served.db) == {"node-01": 1, "node-02": 1}
    assert batches.take_several(8) == ["a3"]


def test_a_dispatcher_keeps_the_jobs_its_claim_took_for_idle_threads_and_puts_them_back_when_it_stops(
    batches: Claims, worker: WorkerNode
) -> None:
    one_slot_node(batches.served, worker, slots=10)
    batches.create("alice", "a1", "a2", "a3")
    dispatcher = Dispatcher(batches.served.state)
    dispatcher.settings = dataclasses.replace(dispatcher.settings, dispatch_workers=3)
    try:
        names = {task_id: name for name, task_id in batches.tasks.items()}
        first = dispatcher.claim()  # one statement takes all three: one for this thread, two for idle ones
        assert first is not None and names[first.request.task_id] == "a1"
        db = batches.served.db
        assert rows(db, "SELECT count(*) AS n FROM jobs WHERE status = 'running'")[0]["n"] == 3
        second = dispatcher.claim()  # the next thread's job comes from that claim, not from the queue
        assert second is not None and names[second.request.task_id] == "a2"
        # Both jobs handed to threads but not yet run are this dispatcher's: their leases are renewed from the claim on.
        assert set(dispatcher._inflight) == {second.job_id, *third_id(db, batches)}  # noqa: SLF001 - the renewer's list
        dispatcher.release_backlog()  # the process stops before a thread took it
        back = rows(
            db, "SELECT status, attempts, node_id, lease_id FROM jobs WHERE task_id = :t", t=batches.tasks["a3"]
        )
        assert back == [{"status": "queued", "attempts": 0, "node_id": None, "lease_id": None}]
        assert running_counts_of(db) == {"node-01": 2}
        assert set(dispatcher._inflight) == {second.job_id}  # noqa: SLF001 - a2 is still its thread's
    finally:
        dispatcher.queue.close()


def third_id(db: Any, claims: Claims) -> set[Any]:
    return {row["id"] for row in rows(db, "SELECT id FROM jobs WHERE task_id = :t", t=claims.tasks["a3"])}


def test_idle_dispatcher_threads_do_not_claim_in_turn_while_no_node_has_room(
    batches: Claims, worker: WorkerNode
) -> None:
    # A claim that found nothing used to wake the other idle threads, which claimed in turn and woke
    # the next: hundreds of claims a second for as long as queued jobs waited for a full node.
    one_slot_node(batches.served, worker, slots=1)
    worker.runtime.default = Script(hold=True)
    batches.create("alice", "a1", "a2", "a3")
    dispatcher = Dispatcher(batches.served.state)
    dispatcher.settings = dataclasses.replace(dispatcher.settings, dispatch_workers=4, dispatch_poll_interval=0.5)
    counted = {"claims": 0}
    claim_several = dispatcher.queue.claim_several

    def counting(*args: Any, **kwargs: Any) -> Any:
        counted["claims"] += 1
        return claim_several(*args, **kwargs)

    dispatcher.queue.claim_several = counting  # type: ignore[method-assign]
    stop = threading.Event()
    threads = dispatcher.start(stop)
    try:
        deadline = time.monotonic() + 30
        while not worker.run_calls() and time.monotonic() < deadline:
            time.sleep(0.02)
        assert worker.run_calls(), "the first job never reached the node"
        time.sleep(0.3)  # the claims that follow the hand-over
        before = counted["claims"]
        time.sleep(2.0)
        during = counted["claims"] - before
        # Polling alone: each of the 3 idle threads claims at most once per 0.5 s poll, 12 in 2 s.
        assert during <= 12, f"{during} claims in 2 s while the only node was full"
        dispatcher.wake_all()  # a notification: one round of claims, not an endless one
        time.sleep(0.3)
        after_wake = counted["claims"] - before - during
        assert after_wake <= 8, f"{after_wake} claims after one wake"
        assert rows(batches.served.db, "SELECT count(*) AS n FROM jobs WHERE status = 'queued'")[0]["n"] == 2
    finally:
        stop.set()
        dispatcher.wake_all()
        worker.runtime.release()
        for thread in threads:
            thread.join(timeout=0.05 if thread.name == "dispatch-listen" else 10)
