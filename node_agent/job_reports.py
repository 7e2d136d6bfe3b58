"""Reports to the control plane on the jobs a node took with ``jobs:start`` (docs/wire_contract.md#node-job-report).

While such a job runs, one thread sends a ``running`` report per job every
``heartbeat_seconds`` the orchestrator asked for; each renews the job's lease,
so the orchestrator notices a dead node when the reports stop. When the job
ends, its thread sends the ``finished`` report (or ``not_started`` with the
reason) and repeats it with backoff until the control plane answers: 204
(stored) or 409 (the lease is no longer this one: the job was canceled or
taken over, and whoever holds it now asks the node again, which answers from
its job store). Any orchestrator of the database takes a report.

A job asked for again under a new lease (``jobs:start`` after a take-over)
reports under the newest one from then on. While a followed job runs, its
output goes to the control plane as it is printed (``node_agent.live_output``);
the end report follows the last of it.
"""

from __future__ import annotations

import datetime as dt
import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from cynode_core.contract import OutputSink
from cynode_core.contract.errors import CynodeError
from cynode_core.contract.job import JobReport, ReportLease, ReportState, RunJobRequest, RunJobResponse, report_time
from node_agent.live_output import LiveOutput

log = logging.getLogger(__name__)

# Between two tries of an end report: first short, doubling up to the longest.
RETRY_FIRST, RETRY_MAX = 0.5, 10.0
_TICK = 0.25

Send = Callable[[str, dict[str, Any]], "int | None"]


@dataclass
class _Followed:
    job_id: str
    lease: ReportLease
    next_beat: float
    live: LiveOutput | None = None


class JobReports:
    """The jobs this node reports on, their leases, the heartbeat thread and the end reports."""

    def __init__(self, send: Send, stop: threading.Event, *, give_up_after: float, output_cap: int = 0) -> None:
        self._send = send
        self._output_cap = output_cap
        self._stop = stop
        self._give_up_after = give_up_after
        self._lock = threading.Lock()
        self._jobs: dict[str, _Followed] = {}
        self._thread: threading.Thread | None = None

    def follow(self, request: RunJobRequest) -> None:
        """Report on ``request``'s job under its lease from now on (a newer lease replaces the one before)."""
        assert request.report is not None
        with self._lock:
            followed = self._jobs.get(request.job_key)
            if followed is not None:  # asked for again while it runs: the newest lease, the same live output
                followed.lease = request.report
            else:
                self._jobs[request.job_key] = _Followed(
                    request.job_id, request.report, time.monotonic() + request.report.heartbeat_seconds
                )
            if self._thread is None:
                self._thread = threading.Thread(target=self._beat, name="job-heartbeats", daemon=True)
                self._thread.start()

    def output_for(self, job_key: str) -> OutputSink | None:
        """The ``on_output`` of a followed job's sandbox: its output goes to the control plane live."""
        with self._lock:
            followed = self._jobs.get(job_key)
            if followed is None or self._output_cap <= 0:
                return None
            job = followed

            def send(report: JobReport) -> int | None:
                return self._send(job.job_id, report.to_json())

            job.live = LiveOutput(job_key, lambda: job.lease.lease_id, send, self._output_cap)
            return job.live.feed

    def forget(self, job_key: str) -> None:
        """Stop following a job that did not start here (answered at once, or refused)."""
        with self._lock:
            self._jobs.pop(job_key, None)

    def ended(self, job_key: str, outcome: RunJobResponse | CynodeError) -> None:
        """Send the end of a followed job until the control plane answers (called in the job's own thread)."""
        with self._lock:
            followed = self._jobs.pop(job_key, None)
        if followed is None:
            return  # another waiter of the same run reported it already
        if isinstance(outcome, RunJobResponse):
            ended_at = report_time(dt.datetime.now(dt.UTC))
            streamed = followed.live is not None and followed.live.finish(outcome)
            report = JobReport(
                followed.lease.lease_id, ReportState.FINISHED, result=outcome, ended_at=ended_at, streamed=streamed
            )
        else:
            report = JobReport(followed.lease.lease_id, ReportState.NOT_STARTED, error=str(outcome) or "not started")
        self._deliver(followed.job_id, report)

    def _deliver(self, job_id: str, report: JobReport) -> None:
        deadline, delay = time.monotonic() + self._give_up_after, RETRY_FIRST
        while True:
            status = self._send(job_id, report.to_json())
            if status == 204:
                log.info("job %s: end reported (%s)", job_id, report.state.value)
                return
            if status == 409:
                log.info("job %s: end report refused: the lease moved on; the store answers a new ask", job_id)
                return
            if status is not None and 400 <= status < 500 and status not in (401, 429):
                log.warning("job %s: end report refused with HTTP %s; not sent again", job_id, status)
                return
            if time.monotonic() + delay > deadline or self._stop.is_set():
                log.warning("job %s: end report not delivered; the store answers a new ask", job_id)
                return
            log.info("job %s: end report not taken (%s); again in %.1f s", job_id, status or "no answer", delay)
            if self._stop.wait(delay):
                return
            delay = min(delay * 2, RETRY_MAX)

    def _beat(self) -> None:
        while not self._stop.wait(_TICK):
            now = time.monotonic()
            with self._lock:
                due = [(key, f) for key, f in self._jobs.items() if f.next_beat <= now]
                for _, followed in due:
                    followed.next_beat = now + followed.lease.heartbeat_seconds
            for key, followed in due:
                report = JobReport(followed.lease.lease_id, ReportState.RUNNING)
                status = self._send(followed.job_id, report.to_json())
                if status == 409:
                    log.info("job %s: heartbeat refused under lease %s", key, followed.lease.lease_id)
                elif status is None:
                    # No orchestrator answers: the others' beats would wait out the same timeout.
                    log.info("job %s: heartbeat not taken (no answer); this round's others skipped", key)
                    break
                elif status != 204:
                    log.info("job %s: heartbeat not taken (%s)", key, status)
