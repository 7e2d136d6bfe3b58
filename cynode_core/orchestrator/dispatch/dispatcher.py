"""The dispatcher: claims queued jobs with leases and runs them on nodes' Worker APIs.

A node that reports back (``jobs:start``, ``dispatch.job_reports``) takes a
job and answers at once, so a dispatcher thread is busy only for the
hand-over; a node that speaks only ``jobs:run`` holds a thread for the whole
run, as before.

PostgreSQL is the coordination engine. A claim is ``SELECT ... FOR UPDATE
SKIP LOCKED`` plus a lease (``lease_id``, ``lease_expires_at``) renewed
while the node runs the job; any number of dispatcher threads, in any number
of orchestrator processes, share the queue without a protocol of their own.
A job runs on one node at most once at a time: a call lost after it went
out keeps the job on its node, asked again under the same ``job_id``
(``fence``), and a job whose lease expired (its dispatcher died) is taken
over on its node (``JobQueue.adopt_expired``); the Worker API's idempotency
by ``job_id`` answers such repeats with the original run. After
``max_attempts`` the job fails with the reason. ``LISTEN/NOTIFY`` wakes idle
workers at once; polling is the fallback.
"""

from __future__ import annotations

import collections
import dataclasses
import logging
import os
import socket
import threading
import time
import uuid
from typing import Any

import psycopg

from cynode_core.contract.job import ReportLease
from cynode_core.logs import log_context
from cynode_core.orchestrator.dispatch.claimed_job import ClaimedJob
from cynode_core.orchestrator.dispatch.fair_order import HEADS
from cynode_core.orchestrator.dispatch.fence import hold_on_node, retry_delay
from cynode_core.orchestrator.dispatch.job_files import InputUnavailable, with_inputs, with_outputs
from cynode_core.orchestrator.dispatch.job_reports import ReportingNodes
from cynode_core.orchestrator.dispatch.queue import CandidateCache, JobQueue, SuspectNodes
from cynode_core.orchestrator.dispatch.sandbox_grant import with_mcp_grant
from cynode_core.orchestrator.dispatch.store import (
    fail_job,
    recover_expired_leases,
    renew_leases,
    requeue,
    store_result,
)
from cynode_core.orchestrator.node_client import Outcome, cancel_in_background, run_job, run_timeout, start_job
from cynode_core.orchestrator.services.task_events import task_finished
from cynode_core.orchestrator.services.tasks import NOTIFY_CHANNEL

log = logging.getLogger(__name__)

# The most jobs one claim takes for idle threads (a claim considers this many of each owner's first jobs).
CLAIM_BATCH = HEADS


class Dispatcher:
    """Worker threads, a LISTEN thread and a lease renewer for one process."""

    def __init__(self, state: Any):
        self.state = state
        self.settings = state.settings
        self.owner = f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:6]}"
        self._wake = threading.Condition()
        self._inflight: dict[uuid.UUID, uuid.UUID] = {}
        self.suspects = SuspectNodes()
        self.reporting = ReportingNodes(state.db)
        self.queue = JobQueue(
            state.db,
            self.settings,
            state.cipher,
            self.owner,
            candidates=CandidateCache(ttl=1.0, heartbeat_timeout=self.settings.node_heartbeat_timeout),
            suspects=self.suspects,
        )
        self._lock = threading.Lock()
        self._stop = threading.Event()  # start() hands the process's
        # Under self._wake: jobs a claim took for other idle threads, threads running a job, and
        # the jobs that claims under way may bring (their room).
        self._backlog: collections.deque[ClaimedJob] = collections.deque()
        self._busy = 0
        self._promised = 0
        self._wakes = 0  # wake_all calls so far

    # -- threads --------------------------------------------------------------

    def start(self, stop: threading.Event) -> list[threading.Thread]:
        self._stop = stop
        threads = [
            threading.Thread(target=self._listen, args=(stop,), name="dispatch-listen", daemon=True),
            threading.Thread(target=self._renew_loop, args=(stop,), name="dispatch-lease", daemon=True),
        ]
        threads += [
            threading.Thread(target=self._work_loop, args=(stop,), name=f"dispatch-{i}", daemon=True)
            for i in range(self.settings.dispatch_workers)
        ]
        for thread in threads:
            thread.start()
        log.info("dispatcher %s: %d worker thread(s)", self.owner, self.settings.dispatch_workers)
        return threads

    def wake_all(self) -> None:
        """Something may be due (a notification): idle threads look at the queue again."""
        with self._wake:
            self._wakes += 1
            self._wake.notify_all()

    def wakes(self) -> int:
        """How many times the threads were woken so far (a thread compares it after a claim found nothing)."""
        with self._wake:
            return self._wakes

    def _sleep(self, stop: threading.Event, seconds: float, seen: int) -> None:
        """Wait up to ``seconds``, unless jobs wait in the backlog or a wake came since ``seen``."""
        with self._wake:
            if not stop.is_set() and not self._backlog and self._wakes == seen:
                self._wake.wait(timeout=seconds)

    def _work_loop(self, stop: threading.Event) -> None:
        try:
            self._work(stop)
        finally:
            self.queue.close()  # this thread's claim connection
            self.release_backlog()

    def claim(self) -> ClaimedJob | None:
        """The next job for the calling thread, as the claim hook places it.

        A job an earlier claim took for an idle thread comes first. Otherwise
        the claim asks for as many jobs as there are idle threads that no
        claim under way serves yet (at most :data:`CLAIM_BATCH`), keeps the
        first and leaves the rest, their leases renewed from now on, to the
        other threads. ``None`` when nothing is due, or when claims under
        way already serve every idle thread.
        """
        with self._wake:
            if not self._backlog and self._room() < 1:
                # A claim under way serves this thread: wait for what it brings. When it brings nothing
                # and nothing woke the threads since, the queue has nothing for this thread either.
                seen = self._wakes
                self._wake.wait(timeout=self.settings.dispatch_poll_interval)
                if not self._backlog and self._wakes == seen:
                    return None
            if self._backlog:
                return self._backlog.popleft()
            room = self._room()
            if room < 1:
                return None
            self._promised += room
            started = self._wakes
        more: tuple[ClaimedJob, ...] = ()
        try:
            pm = self.state.pm
            attempt = pm.hook.cynode_claim_job(queue=self.queue, select_node=pm.hook.cynode_select_node, room=room)
            if attempt is None or attempt.job is None:
                return None
            more = attempt.more
            with self._lock:
                for job in more:
                    self._inflight[job.job_id] = job.lease_id
            return attempt.job
        finally:
            with self._wake:
                self._promised -= room
                self._backlog.extend(more)
                # Threads that left the claim to this one take its jobs, or claim what a wake during it
                # announced. A claim that found nothing new wakes no one: the threads would claim in turn
                # for as long as the queue holds jobs that no node has room for.
                if more or self._wakes != started:
                    self._wake.notify_all()

    def _room(self) -> int:
        """Idle threads that no claim under way serves (call with ``self._wake`` held), at most :data:`CLAIM_BATCH`."""
        return min(CLAIM_BATCH, self.settings.dispatch_workers - self._busy - self._promised)

    def release_backlog(self) -> None:
        """Put the jobs claimed for other threads back in the queue (this process stops), their attempt not counted."""
        with self._wake:
            left, self._backlog = list(self._backlog), collections.deque()
        for job in left:
            try:
                requeue(self.state.db, job, delay=0.0, count_attempt=False, error="its dispatcher stopped")
            except Exception as exc:  # noqa: BLE001 - the lease runs out and another dispatcher takes the job
                log.warning("job %s: could not put it back in the queue (%s)", job.job_id, type(exc).__name__)
            with self._lock:
                self._inflight.pop(job.job_id, None)

    def _work(self, stop: threading.Event) -> None:
        last_recover, adopting = 0.0, False
        while not stop.is_set():
            try:
                if time.monotonic() - last_recover > min(self.settings.lease_seconds / 3, 2.0):
                    last_recover, adopting = time.monotonic(), True
                    exhausted = recover_expired_leases(self.state.db, self.settings)
                    if exhausted:
                        self.state.metrics.dispatch_failures.labels("lease_exhausted").inc(len(exhausted))
                    for task_id in exhausted:
                        task_finished(self.state, task_id)
                seen = self.wakes()
                # Jobs whose dispatcher died first, one after the other until none is left.
                adopted = self.queue.adopt_expired() if adopting else None
                adopting = adopted is not None
                if adopted is not None:
                    log.info("job %s: its lease expired; asking its node again", adopted.job_id)
                claimed = adopted or self.claim()
                if claimed is None:
                    self._sleep(stop, self.settings.dispatch_poll_interval, seen)
                    continue
                with self._wake:
                    self._busy += 1
                try:
                    self.run(claimed)
                finally:
                    with self._wake:
                        self._busy -= 1
            except Exception as exc:  # noqa: BLE001 - a worker thread must survive database outages
                log.warning("dispatcher loop error (%s); retrying", type(exc).__name__)
                log.debug("dispatcher loop error", exc_info=True)
                stop.wait(1.0)

    def _listen(self, stop: threading.Event) -> None:
        while not stop.is_set():
            try:
                with psycopg.connect(
                    self.state.db.url.replace("postgresql+psycopg://", "postgresql://"),
                    autocommit=True,
                    connect_timeout=5,
                ) as conn:
                    conn.execute(f"LISTEN {NOTIFY_CHANNEL}")
                    while not stop.is_set():
                        # The generator ends only at its timeout; wake workers per notification.
                        for _ in conn.notifies(timeout=1.0):
                            self.wake_all()
            except Exception as exc:  # noqa: BLE001 - reconnect after any failure; polling covers the gap
                log.debug("LISTEN connection lost (%s)", type(exc).__name__)
                stop.wait(1.0)

    def _renew_loop(self, stop: threading.Event) -> None:
        period = max(self.settings.lease_seconds / 3, 0.5)
        while not stop.wait(period):
            with self._lock:
                leases = list(self._inflight.values())
            if leases:
                try:
                    renew_leases(self.state.db, leases, self.settings.lease_seconds)
                except Exception as exc:  # noqa: BLE001 - the next round tries again; leases have slack
                    log.warning("lease renewal failed (%s)", type(exc).__name__)

    # -- one job ----------------------------------------------------------------

    def run(self, job: ClaimedJob) -> None:
        # Log records of this job carry the task's request id and the ids (see cynode_core.logs).
        with log_context(job.request_id, task_id=str(job.task_id), job_id=str(job.job_id), node=str(job.node_id)):
            try:
                self._run(job)
            finally:
                with self._lock:  # a job claimed for this thread by another was renewed from its claim on
                    self._inflight.pop(job.job_id, None)

    def _call(self, job: ClaimedJob) -> Outcome:
        outcome = Outcome(unsupported=True)
        if self.reporting.take_start(job.node_id):
            # The node reports back under this lease; its heartbeats renew it (decisions.md Dispatch 11).
            lease = ReportLease(str(job.lease_id), max(self.settings.lease_seconds / 3, 0.5))
            request = dataclasses.replace(job.request, report=lease)
            outcome = start_job(job.node, request, request_id=job.request_id)
            if outcome.unsupported:
                log.info("job %s: its node does not serve jobs:start; asking with jobs:run", job.job_id)
                self.reporting.run_only(job.node_id)
        if outcome.unsupported:
            timeout = run_timeout(self.settings, job.request.sandbox.timeout_seconds)
            outcome = run_job(job.node, job.request, timeout, request_id=job.request_id)
        if outcome.node_down:
            # Other nodes go first for a while; the node monitor takes it out if readyz fails too.
            self.suspects.add(job.node_id)
        return outcome

    def _run(self, job: ClaimedJob) -> None:
        job = with_mcp_grant(self.state.db, self.settings, job)  # a sandbox agent's tool credential
        try:
            job = with_inputs(self.state, job)
        except InputUnavailable as exc:
            with self.state.db.session() as session:
                failed = fail_job(session, job, exc.detail)
            if failed:
                task_finished(self.state, str(job.task_id))
            return
        with self._lock:
            self._inflight[job.job_id] = job.lease_id
        started = time.perf_counter()
        node_may_run = False
        try:
            first = self._call(job)
            held: Outcome | None = first
            if first.maybe_running:  # the node may be running the job: it stays there (see fence)
                fenced = hold_on_node(
                    self.state.db, self.settings, self._stop, job, first, self._call, self.queue.with_current_node
                )
                job, held, node_may_run = fenced.job, fenced.outcome, fenced.node_may_run
        finally:
            with self._lock:
                self._inflight.pop(job.job_id, None)
        if held is None:
            return  # canceled meanwhile (the cancel went to the node), or this process is stopping
        if held.accepted:
            # Its node runs it and reports back: the end is stored by the report, under this lease.
            log.info("job %s: handed to its node, which reports back", job.job_id)
            return
        outcome = held
        elapsed = time.perf_counter() - started
        self.state.metrics.observe_dispatch(
            (outcome.result.status or "") if outcome.result is not None else None,
            outcome.reason,
            elapsed,
            will_retry=outcome.retryable and job.attempts < self.settings.max_attempts,
        )
        if outcome.result is not None:
            log.info("job %s: node answered %s in %.2f s", job.job_id, outcome.result.status, elapsed)
        if node_may_run:
            # The job leaves a node that never said it stopped: that node is told, until it answers
            # or has surely ended the job on its own timeout.
            window = run_timeout(self.settings, job.request.sandbox.timeout_seconds)
            cancel_in_background(job.node, str(job.job_id), within=window, request_id=job.request_id)
        if outcome.result is not None:
            result = with_outputs(self.state, job, outcome.result)
            with self.state.db.session() as session:
                finished = store_result(session, job, result)
        elif outcome.retry_busy:
            requeue(self.state.db, job, delay=1.0, count_attempt=False, error=outcome.error)
            finished = False
        elif outcome.retryable and job.attempts < self.settings.max_attempts:
            # After a fence waited out, at once; after a refusal (or any other retry), with backoff,
            # so the node monitor can take a dead node out before the next claim.
            delay = 0.0 if node_may_run and not outcome.refused else retry_delay(job.attempts)
            log.info(
                "job %s: %s; retry %d/%d in %.1fs",
                job.job_id,
                outcome.error,
                job.attempts,
                self.settings.max_attempts,
                delay,
            )
            requeue(self.state.db, job, delay=delay, count_attempt=True, error=outcome.error)
            finished = False
        else:
            error = outcome.error if not outcome.retryable else f"{outcome.error} (after {job.attempts} attempts)"
            with self.state.db.session() as session:
                finished = fail_job(session, job, error)
        if finished:
            task_finished(self.state, str(job.task_id))


def start_workers(state: Any, stop: threading.Event) -> list[threading.Thread]:
    if not state.settings.dispatcher_enabled:
        return []
    dispatcher = Dispatcher(state)
    state.dispatcher = dispatcher
    state.metrics.own_leases(dispatcher.owner)
    return dispatcher.start(stop)
