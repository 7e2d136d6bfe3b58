"""The per-user queue limit of task creation (decisions.md, Dispatch, "Fair sharing").

A user may have at most ``max_queued_per_user`` jobs waiting in the queue;
creating a task past that is refused with :class:`RateLimited` (429 with
``Retry-After``), and nothing is written. The check runs inside the
creating transaction, after the per-user create lock, so concurrent creates
of one user, on any number of orchestrators, are counted one after the other.
"""

from __future__ import annotations

import math
import uuid

from sqlalchemy import text
from sqlalchemy.orm import Session

from cynode_core.contract.errors import RateLimited
from cynode_core.orchestrator.settings import OrchestratorSettings

# Retry-After bounds (seconds); the upper one is also the answer when the queue is not moving.
RETRY_AFTER_MIN = 1
RETRY_AFTER_MAX = 60

_QUEUED = text(
    "SELECT count(*) FROM (SELECT 1 FROM jobs WHERE owner_id = :user AND status = 'queued' LIMIT :limit) AS q"
)

# The user's recent jobs (from their latest tasks, so a long history costs
# nothing): how many run now, and how long the ones that ended lately took.
_PACE = text(
    """
    WITH recent AS (
        SELECT j.status, j.started_at, j.ended_at FROM tasks t JOIN jobs j ON j.task_id = t.id
        WHERE t.created_by = :user ORDER BY t.created_at DESC LIMIT 1000
    )
    SELECT count(*) FILTER (WHERE status = 'running'),
           avg(extract(epoch FROM ended_at - started_at))
               FILTER (WHERE started_at IS NOT NULL AND ended_at > now() - interval '15 minutes')
    FROM recent
    """
)


def check_queue_room(session: Session, settings: OrchestratorSettings, user_id: uuid.UUID) -> None:
    """Refuse a new job for ``user_id`` when their queue is full. Call it under the user's create lock."""
    limit = settings.max_queued_per_user
    queued = session.execute(_QUEUED, {"user": user_id, "limit": limit}).scalar_one()
    if queued < limit:
        return
    raise RateLimited(
        f"Queue limit reached: {limit} queued jobs per user; retry when some have started",
        retry_after=queue_retry_after(session, user_id),
    )


def queue_retry_after(session: Session, user_id: uuid.UUID) -> int:
    """Seconds until one of the user's queued jobs has likely started.

    Their recent jobs' mean run time divided by how many run now: about when
    the next of their slots frees. Bounded to 1..60 s; 60 when none of their
    jobs runs or ended lately (their queue is not moving, or nothing says how fast).
    """
    running, mean_seconds = session.execute(_PACE, {"user": user_id}).one()
    if not running or mean_seconds is None:
        return RETRY_AFTER_MAX
    return min(max(math.ceil(float(mean_seconds) / running), RETRY_AFTER_MIN), RETRY_AFTER_MAX)
