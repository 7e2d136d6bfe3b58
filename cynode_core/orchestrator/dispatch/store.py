"""The dispatcher's writes after a claim: store a result, fail, requeue, count a call, renew leases, recover.

Every write that ends a job is guarded by its ``lease_id`` and
``status = 'running'``: a dispatcher that lost its lease, or a job canceled
meanwhile, can never overwrite the job's state (a late result is kept in
``result`` only). Results are stored as jsonb objects in the job contract's
codec (``cynode_core.contract.job``). A job whose lease expired is left
``running`` on its node for a dispatcher to take over
(``JobQueue.adopt_expired``), never put back in the queue for any node.

The writes that act on a node's answer or report (:func:`store_result`,
:func:`store_output`, :func:`fail_job`, :func:`renew_reported`) run in the
caller's transaction, so a report is read, checked and stored in one.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import uuid
from collections.abc import Sequence
from typing import Any

from sqlalchemy import text
from sqlalchemy.orm import Session

from cynode_core.contract.job import (
    TASK_TERMINAL,
    DispatchFailure,
    JobResult,
    OutputPiece,
    RunJobResponse,
    TaskStatus,
    Truncation,
    sql_list,
)
from cynode_core.orchestrator.db import Database
from cynode_core.orchestrator.dispatch.claimed_job import ClaimedJob, Leased
from cynode_core.orchestrator.services import job_grants, job_output
from cynode_core.orchestrator.services.tasks import NOTIFY_CHANNEL
from cynode_core.orchestrator.settings import OrchestratorSettings

log = logging.getLogger(__name__)

_TERMINAL = sql_list(TASK_TERMINAL)


def _encoded(result: JobResult) -> str:
    return json.dumps(result.to_json())


def finish_task(session: Any, task_id: uuid.UUID | str, status: TaskStatus) -> None:
    """Close a task with ``status`` unless it already reached a terminal one; its jobs' MCP grants die with it.

    Its job left a node's slot: the dispatchers are woken at the commit (as for a new job), so a queued job
    takes that slot now, not at their next poll.
    """
    session.execute(
        text(
            f"UPDATE tasks SET status = :s, closed = true, updated_at = now() WHERE id = :id AND status NOT IN {_TERMINAL}"
        ),
        {"s": status.value, "id": task_id},
    )
    job_grants.revoke_task_grants(session, task_id, "job_ended")
    session.execute(text("SELECT pg_notify(:c, '')"), {"c": NOTIFY_CHANNEL})


def fail_unusable(session: Any, job_id: uuid.UUID, task_id: uuid.UUID, message: str) -> None:
    """Fail a job whose stored payload no node could run, with the reason."""
    session.execute(
        text(
            "UPDATE jobs SET status = 'failed', result = CAST(:r AS jsonb), ended_at = now(), "
            "last_error = :m, lease_id = NULL, lease_owner = NULL, lease_expires_at = NULL, updated_at = now() "
            "WHERE id = :id"
        ),
        {"r": _encoded(DispatchFailure(message)), "m": message, "id": job_id},
    )
    finish_task(session, task_id, TaskStatus.FAILED)


def store_result(session: Session, job: Leased, result: RunJobResponse, *, append_output: bool = True) -> bool:
    """Store a node's answer; True when this ended the job (False: canceled or lease lost).

    ``append_output=False``: the node sent the output already (``output`` reports), followers have it.
    """
    result = result.with_final_answer()
    status = TaskStatus.COMPLETED if result.succeeded else TaskStatus.FAILED
    encoded = _encoded(result)
    updated = session.execute(
        text(
            "UPDATE jobs SET status = :s, result = CAST(:r AS jsonb), ended_at = now(), lease_id = NULL, "
            "lease_owner = NULL, lease_expires_at = NULL, updated_at = now() "
            "WHERE id = :id AND lease_id = :lease AND status = 'running'"
        ),
        {"s": status.value, "r": encoded, "id": job.job_id, "lease": job.lease_id},
    ).rowcount  # type: ignore[attr-defined]
    if not updated:
        # Canceled meanwhile: keep 'canceled' but record what the node reported.
        session.execute(
            text(
                "UPDATE jobs SET result = CAST(:r AS jsonb), updated_at = now() WHERE id = :id AND status = 'canceled'"
            ),
            {"r": encoded, "id": job.job_id},
        )
        return False
    if append_output:
        # Followers of the task see what the node returned beyond what it streamed (services/job_output.py).
        cut = result.truncated or Truncation()
        for stream, data, was_cut in (
            ("stdout", result.stdout or "", cut.stdout),
            ("stderr", result.stderr or "", cut.stderr),
        ):
            job_output.append_run(session, job.job_id, job.task_id, job.node_id, stream, data, offset=0, cut=was_cut)
    finish_task(session, job.task_id, status)
    return True


def store_output(session: Session, job: Leased, pieces: Sequence[OutputPiece]) -> bool:
    """Append output a node sent while its job runs; False when the job no longer runs there under the lease.

    The job row is read ``FOR SHARE``: the end report's update waits for this
    append, so a task's output never follows its terminal status.
    """
    held = session.execute(
        text(
            "SELECT 1 FROM jobs WHERE id = :id AND node_id = :node AND lease_id = :lease "
            "AND status = 'running' FOR SHARE"
        ),
        {"id": job.job_id, "node": job.node_id, "lease": job.lease_id},
    ).first()
    if held is None:
        return False
    for piece in pieces:
        job_output.append_run(
            session,
            job.job_id,
            job.task_id,
            job.node_id,
            piece.stream,
            piece.data,
            offset=piece.offset,
            cut=piece.cut,
        )
    return True


def fail_job(session: Session, job: Leased, message: str) -> bool:
    """Fail a job with ``message``; True when this ended it (False: canceled or lease lost)."""
    updated = session.execute(
        text(
            "UPDATE jobs SET status = 'failed', result = CAST(:r AS jsonb), ended_at = now(), last_error = :m, "
            "lease_id = NULL, lease_owner = NULL, lease_expires_at = NULL, updated_at = now() "
            "WHERE id = :id AND lease_id = :lease AND status = 'running'"
        ),
        {"r": _encoded(DispatchFailure(message)), "m": message, "id": job.job_id, "lease": job.lease_id},
    ).rowcount  # type: ignore[attr-defined]
    if updated:
        finish_task(session, job.task_id, TaskStatus.FAILED)
    log.warning("job %s failed: %s", job.job_id, message)
    return bool(updated)


def requeue(db: Database, job: ClaimedJob, *, delay: float, count_attempt: bool, error: str) -> None:
    """Put a job back in the queue for any node: its node never got it, said it does not run it, or was fenced off."""
    with db.session() as session:
        requeued = session.execute(
            text(
                "UPDATE jobs SET status = 'queued', lease_id = NULL, lease_owner = NULL, lease_expires_at = NULL, "
                "next_attempt_at = now() + make_interval(secs => :d), last_error = :e, updated_at = now(), "
                f"attempts = attempts - {0 if count_attempt else 1}, node_id = NULL "
                "WHERE id = :id AND lease_id = :lease AND status = 'running'"
            ),
            {"d": delay, "e": error, "id": job.job_id, "lease": job.lease_id},
        ).rowcount  # type: ignore[attr-defined]
        if requeued and job.request.mcp is not None:  # the next hand-over mints its own
            job_grants.revoke_task_grants(session, job.task_id, "job_requeued")


def take_attempt(db: Database, job: ClaimedJob, error: str, lease_seconds: float) -> ClaimedJob | None:
    """Count one more call of a held job to its node (and renew its lease); None when the lease is gone (canceled)."""
    with db.session() as session:
        attempts = session.execute(
            text(
                "UPDATE jobs SET attempts = attempts + 1, last_error = :e, updated_at = now(), "
                "lease_expires_at = now() + make_interval(secs => :s) "
                "WHERE id = :id AND lease_id = :lease AND status = 'running' RETURNING attempts"
            ),
            {"e": error, "s": lease_seconds, "id": job.job_id, "lease": job.lease_id},
        ).scalar()
    return dataclasses.replace(job, attempts=attempts) if attempts is not None else None


def renew_leases(db: Database, leases: list[uuid.UUID], seconds: float) -> None:
    with db.session() as session:
        session.execute(
            text(
                "UPDATE jobs SET lease_expires_at = now() + make_interval(secs => :s) "
                "WHERE lease_id = ANY(:ids) AND status = 'running'"
            ),
            {"s": seconds, "ids": leases},
        )


def renew_reported(session: Session, job: Leased, seconds: float) -> bool:
    """Renew the lease of a job its node reports running; False when it no longer runs there under that lease."""
    renewed = session.execute(
        text(
            "UPDATE jobs SET lease_expires_at = now() + make_interval(secs => :s) "
            "WHERE id = :id AND node_id = :node AND lease_id = :lease AND status = 'running'"
        ),
        {"s": seconds, "id": job.job_id, "node": job.node_id, "lease": job.lease_id},
    ).rowcount  # type: ignore[attr-defined]
    return bool(renewed)


def recover_expired_leases(db: Database, settings: OrchestratorSettings) -> list[str]:
    """Fail jobs whose lease expired once too often, and queued retries no node can take; their task ids.

    A job whose lease expired with attempts left stays with its node for a
    dispatcher to take over (``JobQueue.adopt_expired``).
    """
    with db.session() as session:
        message = f"dispatch attempts exhausted: the lease expired {settings.max_attempts} times without a result"
        failed = session.execute(
            text(
                "UPDATE jobs SET status = 'failed', result = CAST(:r AS jsonb), ended_at = now(), last_error = :m, "
                "lease_id = NULL, lease_owner = NULL, lease_expires_at = NULL, updated_at = now() "
                "WHERE status = 'running' AND lease_expires_at < now() AND attempts >= :max RETURNING task_id"
            ),
            {"r": _encoded(DispatchFailure(message)), "m": message, "max": settings.max_attempts},
        ).all()
        # A job whose node refused it, while no node at all can take work: fail it with
        # that reason rather than let it wait forever (a never-tried job does wait).
        stranded = session.execute(
            text(
                "UPDATE jobs SET status = 'failed', ended_at = now(), updated_at = now(), "
                "result = jsonb_build_object('error', last_error || '; no ready node took the retry', "
                "'status', 'failed', 'version', 1) "
                "WHERE status = 'queued' AND attempts > 0 AND last_error LIKE 'worker api call failed%' "
                "AND next_attempt_at < now() - make_interval(secs => :grace) "
                "AND NOT EXISTS (SELECT 1 FROM nodes n WHERE n.status = 'active' AND n.config_ack_status = 'applied' "
                "AND n.config_ack_version = n.config_version AND coalesce(n.worker_api_target_url, '') <> '' "
                "AND n.worker_api_bearer_token IS NOT NULL "
                "AND n.last_seen_at > now() - make_interval(secs => :heartbeat)) RETURNING task_id"
            ),
            {"grace": settings.retry_placement_timeout, "heartbeat": settings.node_heartbeat_timeout},
        ).all()
        for (task_id,) in [*failed, *stranded]:
            finish_task(session, task_id, TaskStatus.FAILED)
    return [str(t) for (t,) in [*failed, *stranded]]
