"""The dispatcher: claims queued jobs with leases and runs them on nodes' Worker APIs.

PostgreSQL is the coordination engine. A claim is ``SELECT ... FOR UPDATE
SKIP LOCKED`` plus a lease (``lease_id``, ``lease_expires_at``) renewed
while the node runs the job; any number of dispatcher threads, in any number
of orchestrator processes, share the queue without a protocol of their own.
An expired lease (its dispatcher died) puts the job back, preferring the same
node, and the Worker API's idempotency by ``job_id`` keeps it from running
twice; after ``max_attempts`` the job fails with the reason. ``LISTEN/NOTIFY``
wakes idle workers at once; polling is the fallback.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import time
import uuid
from typing import Any

import psycopg

from cynode_core.logs import log_context
from cynode_core.orchestrator.dispatch.claimed_job import ClaimedJob
from cynode_core.orchestrator.dispatch.queue import CandidateCache, JobQueue, SuspectNodes
from cynode_core.orchestrator.dispatch.store import (
    fail_job,
    recover_expired_leases,
    renew_leases,
    requeue,
    store_result,
)
from cynode_core.orchestrator.node_client import run_job
from cynode_core.orchestrator.services.task_events import task_finished
from cynode_core.orchestrator.services.tasks import NOTIFY_CHANNEL

log = logging.getLogger(__name__)


class Dispatcher:
    """Worker threads, a LISTEN thread and a lease renewer for one process."""

    def __init__(self, state: Any):
        self.state = state
        self.settings = state.settings
        self.owner = f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:6]}"
        self._wake = threading.Condition()
        self._inflight: dict[uuid.UUID, uuid.UUID] = {}
        self.suspects = SuspectNodes()
        self.queue = JobQueue(
            state.db,
            self.settings,
            state.cipher,
            self.owner,
            candidates=CandidateCache(ttl=1.0, heartbeat_timeout=self.settings.node_heartbeat_timeout),
            suspects=self.suspects,
        )
        self._lock = threading.Lock()

    # -- threads --------------------------------------------------------------

    def start(self, stop: threading.Event) -> list[threading.Thread]:
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
        with self._wake:
            self._wake.notify_all()

    def _sleep(self, stop: threading.Event, seconds: float) -> None:
        with self._wake:
            if not stop.is_set():
                self._wake.wait(timeout=seconds)

    def _work_loop(self, stop: threading.Event) -> None:
        try:
            self._work(stop)
        finally:
            self.queue.close()  # this thread's claim connection

    def claim(self) -> ClaimedJob | None:
        """The next job this process should run, as the claim hook places it."""
        pm = self.state.pm
        attempt = pm.hook.cynode_claim_job(queue=self.queue, select_node=pm.hook.cynode_select_node)
        return attempt.job if attempt is not None else None

    def _work(self, stop: threading.Event) -> None:
        last_recover = 0.0
        while not stop.is_set():
            try:
                if time.monotonic() - last_recover > min(self.settings.lease_seconds / 3, 2.0):
                    last_recover = time.monotonic()
                    exhausted = recover_expired_leases(self.state.db, self.settings)
                    if exhausted:
                        self.state.metrics.dispatch_failures.labels("lease_exhausted").inc(len(exhausted))
                    for task_id in exhausted:
                        task_finished(self.state, task_id)
                claimed = self.claim()
                if claimed is None:
                    self._sleep(stop, self.settings.dispatch_poll_interval)
                    continue
                self.run(claimed)
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
            self._run(job)

    def _run(self, job: ClaimedJob) -> None:
        with self._lock:
            self._inflight[job.job_id] = job.lease_id
        started = time.perf_counter()
        try:
            outcome = run_job(
                job.node,
                job.request,
                (job.request.sandbox.timeout_seconds or self.settings.job_timeout_seconds)
                + self.settings.dispatch_http_margin,
                request_id=job.request_id,
            )
        finally:
            with self._lock:
                self._inflight.pop(job.job_id, None)
        elapsed = time.perf_counter() - started
        self.state.metrics.observe_dispatch(
            (outcome.result.status or "") if outcome.result is not None else None,
            outcome.reason,
            elapsed,
            will_retry=outcome.retryable and job.attempts < self.settings.max_attempts,
        )
        if outcome.result is not None:
            log.info("job %s: node answered %s in %.2f s", job.job_id, outcome.result.status, elapsed)
        if outcome.node_down:
            # Other nodes go first for a while; the node monitor takes it out if readyz fails too.
            self.suspects.add(job.node_id)
        if outcome.result is not None:
            finished = store_result(self.state.db, job, outcome.result)
        elif outcome.retry_busy:
            requeue(self.state.db, job, delay=1.0, count_attempt=False, error=outcome.error, keep_node=False)
            finished = False
        elif outcome.retryable and job.attempts < self.settings.max_attempts:
            delay = min(0.5 * 2 ** (job.attempts - 1), 10.0)
            log.info(
                "job %s: %s; retry %d/%d in %.1fs",
                job.job_id,
                outcome.error,
                job.attempts,
                self.settings.max_attempts,
                delay,
            )
            requeue(self.state.db, job, delay=delay, count_attempt=True, error=outcome.error, keep_node=False)
            finished = False
        else:
            error = outcome.error if not outcome.retryable else f"{outcome.error} (after {job.attempts} attempts)"
            finished = fail_job(self.state.db, job, error)
        if finished:
            task_finished(self.state, str(job.task_id))


def start_workers(state: Any, stop: threading.Event) -> list[threading.Thread]:
    if not state.settings.dispatcher_enabled:
        return []
    dispatcher = Dispatcher(state)
    state.dispatcher = dispatcher
    return dispatcher.start(stop)
