"""The agent tokens a sandbox job is given, and their end (mcp_contract.md 3.2).

The dispatcher mints a ``sandbox`` token for each hand-over of an SBA job
(``dispatch.sandbox_grant``), issued by ``dispatcher``. They die with the
job: :func:`revoke_task_grants` runs when the task becomes terminal
(``dispatch.store.finish_task``), when it is canceled (``tasks.cancel``) and
when the job goes back to the queue. Separate from ``agent_tokens`` so that
the task services can call it without importing the token service.
"""

from __future__ import annotations

import datetime as dt
import uuid

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from cynode_core.orchestrator.models import AgentToken, Job

# Who issues a sandbox job's token.
DISPATCHER_ISSUER = "dispatcher"


def _as_uuid(value: uuid.UUID | str) -> uuid.UUID:
    return value if isinstance(value, uuid.UUID) else uuid.UUID(str(value))


def revoke_task_grants(session: Session, task_id: uuid.UUID | str, reason: str) -> None:
    """Revoke the live tokens the dispatcher issued for a task's jobs (the task ended, was canceled, or its job
    went back to the queue); an administrator's tokens bound to the task stay theirs to revoke."""
    session.execute(
        update(AgentToken)
        .where(
            # Through the jobs (both sides indexed): this runs at the end of every job.
            AgentToken.job_id.in_(select(Job.id).where(Job.task_id == _as_uuid(task_id))),
            AgentToken.issued_by == DISPATCHER_ISSUER,
            AgentToken.revoked_at.is_(None),
        )
        .values(revoked_at=dt.datetime.now(dt.UTC), revoked_reason=reason)
        .execution_options(synchronize_session=False)
    )
