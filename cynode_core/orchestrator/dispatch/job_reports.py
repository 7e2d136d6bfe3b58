"""Jobs handed over with ``jobs:start``: which nodes take them, and the reports those nodes send back.

A node that advertises ``worker_api.job_reports`` in its capability takes a
job with ``jobs:start`` and answers at once; the dispatcher thread is then
free (decisions.md Dispatch 11). The node reports to the control plane
(``POST /v1/nodes/jobs/{job_id}/report``, docs/wire_contract.md#node-job-report):
``running`` reports renew the job's lease, ``output`` reports append what the
job printed to the task's log as it runs (followers see it at once), the end
report stores the result.
Every report is fenced like a dispatcher's own writes: it counts only while
the job runs on the reporting node under the lease the report names. A late
report (the job was taken over, canceled or ended meanwhile) is refused with
409 and logged, and changes nothing.
"""

from __future__ import annotations

import dataclasses
import logging
import threading
import time
import uuid
from typing import Any, NoReturn

from sqlalchemy import text
from sqlalchemy.orm import Session

from cynode_core.contract.errors import Conflict
from cynode_core.contract.job import JobReport, ReportState
from cynode_core.orchestrator.db import Database
from cynode_core.orchestrator.dispatch.claimed_job import ReportedJob
from cynode_core.orchestrator.dispatch.job_files import with_outputs
from cynode_core.orchestrator.dispatch.store import fail_job, renew_reported, store_output, store_result
from cynode_core.orchestrator.services.nodes import latest_capability
from cynode_core.orchestrator.services.task_events import task_finished

log = logging.getLogger(__name__)

LATE_REPORT = "the job no longer runs on this node under this lease"


class ReportingNodes:
    """Whether a node takes ``jobs:start``, from its latest capability report, re-read at most every ``ttl`` s."""

    def __init__(self, db: Database, ttl: float = 5.0):
        self.db = db
        self.ttl = ttl
        self._known: dict[uuid.UUID, tuple[bool, float]] = {}
        self._lock = threading.Lock()

    def take_start(self, node_id: uuid.UUID) -> bool:
        with self._lock:
            known = self._known.get(node_id)
        if known is not None and time.monotonic() - known[1] < self.ttl:
            return known[0]
        with self.db.session() as session:
            worker_api = latest_capability(session, node_id).get("worker_api")
        takes = isinstance(worker_api, dict) and worker_api.get("job_reports") is True
        with self._lock:
            self._known[node_id] = (takes, time.monotonic())
        return takes

    def run_only(self, node_id: uuid.UUID) -> None:
        """The node answered that it does not serve ``jobs:start``: ask it with ``jobs:run`` for a while."""
        with self._lock:
            self._known[node_id] = (False, time.monotonic())


def take_report(state: Any, node_id: uuid.UUID, job_id: uuid.UUID, body: Any) -> None:
    """Act on one report of ``node_id`` on ``job_id``; ``Conflict`` (logged) when it comes too late.

    The job is read, checked and written in one transaction.
    """
    report = JobReport.from_json(body)
    lease_id = uuid.UUID(report.lease_id)
    if report.state is ReportState.FINISHED and report.result is not None and report.result.extras.get("artifacts"):
        task_id = _task_of(state, job_id, node_id)
        if task_id is not None:  # the job's files become artifacts before its result is written
            report = dataclasses.replace(report, result=with_outputs(state, _Files(task_id, job_id), report.result))
    with state.db.session() as session:
        row = session.execute(
            text(
                "SELECT task_id, node_id, extract(epoch FROM now() - coalesce(started_at, now())) "
                "FROM jobs WHERE id = :id"
            ),
            {"id": job_id},
        ).first()
        mine = row is not None and row[1] == node_id
        job = ReportedJob(job_id, row[0], lease_id, node_id) if mine else None
        taken = job is not None and _store(state, session, job, report)
    if job is None:
        _refuse(job_id, node_id, report, "the job is not this node's")
    if not taken:
        _refuse(job_id, node_id, report, LATE_REPORT)
    if report.state is ReportState.FINISHED:
        assert report.result is not None and row is not None
        state.metrics.observe_dispatch(report.result.status or "", "", float(row[2]), will_retry=False)
        state.metrics.observe_report(report.ended())
        log.info("job %s: its node reported %s", job_id, report.result.status)
    if report.state in (ReportState.FINISHED, ReportState.NOT_STARTED):
        task_finished(state, str(job.task_id))


@dataclasses.dataclass(frozen=True)
class _Files:
    task_id: uuid.UUID
    job_id: uuid.UUID


def _task_of(state: Any, job_id: uuid.UUID, node_id: uuid.UUID) -> uuid.UUID | None:
    """The task of a job that runs on ``node_id`` (None for another node's: its report is refused anyway)."""
    with state.db.session() as session:
        row = session.execute(
            text("SELECT task_id FROM jobs WHERE id = :id AND node_id = :node"), {"id": job_id, "node": node_id}
        ).first()
    return row[0] if row is not None else None


def _store(state: Any, session: Session, job: ReportedJob, report: JobReport) -> bool:
    """Write what ``report`` says of ``job``; False when the job no longer runs on its node under the lease."""
    if report.state is ReportState.OUTPUT:
        return store_output(session, job, report.output)
    if report.state is ReportState.RUNNING:
        return renew_reported(session, job, state.settings.lease_seconds)
    if report.state is ReportState.FINISHED:
        assert report.result is not None
        return store_result(session, job, report.result, append_output=not report.streamed)
    return fail_job(session, job, f"the node could not start the job: {report.error}")


def _refuse(job_id: uuid.UUID, node_id: uuid.UUID, report: JobReport, why: str) -> NoReturn:
    log.warning(
        "job %s: %s report of node %s under lease %s refused: %s",
        job_id,
        report.state.value,
        node_id,
        report.lease_id,
        why,
    )
    raise Conflict(f"Report refused: {why}")
