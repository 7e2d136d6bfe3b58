"""Making a draft task ready: its job is created then, as a ready create would have (agents_contract.md 2.3).

``POST /v1/tasks/{id}/ready`` and the MCP tool ``task.ready`` both call
:func:`ready_task` in the caller's transaction: the task row is locked
``FOR UPDATE``, so two readies of one draft make one job, and a failure to
build the job rolls the state change back with it.
"""

from __future__ import annotations

from sqlalchemy import exists, select
from sqlalchemy.orm import Session

from cynode_core.contract.errors import Conflict, NotFound
from cynode_core.contract.job import TaskStatus
from cynode_core.orchestrator.models import Job, Task
from cynode_core.orchestrator.models.tasks import PlanningState
from cynode_core.orchestrator.services.tasks import ExecOptions, lock_user_queue, start_task
from cynode_core.orchestrator.settings import OrchestratorSettings


def ready_task(session: Session, settings: OrchestratorSettings, task: Task) -> Task:
    """Set ``task`` ready and queue its job; a task already ready is returned as it is (no new job).

    ``Conflict`` for a draft that ended (canceled, say) or already has jobs;
    ``RateLimited`` when its owner's queue is full, as a create would be.
    """
    locked = session.scalar(
        select(Task).where(Task.id == task.id).with_for_update().execution_options(populate_existing=True)
    )
    if locked is None:
        raise NotFound("Task not found")
    if locked.planning_state == PlanningState.READY:
        return locked
    if TaskStatus(locked.status).is_terminal:
        raise Conflict("task is not in a runnable state")
    if session.scalar(select(exists().where(Job.task_id == locked.id))):
        raise Conflict("task already has jobs")
    if locked.created_by is not None:
        lock_user_queue(session, settings, locked.created_by, check=True)
    start_task(session, settings, locked, ExecOptions.pending(locked))
    return locked
