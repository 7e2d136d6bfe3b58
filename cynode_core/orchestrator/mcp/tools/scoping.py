"""What a caller may reach through the built-in tools (mcp_contract.md 6), U being the token's user.

Agents never get administrator rights, so every lookup is made as for a
non-admin U. Another user's task, job or project is refused with 404
``not found`` (audited as ``scope_mismatch``); an object that does not
exist is a 404 ``not_found`` failure. A lookup that succeeds records the
object on the call for the audit row.
"""

from __future__ import annotations

import uuid

from sqlalchemy.orm import Session

from cynode_core.contract.errors import NotFound
from cynode_core.orchestrator.mcp.registry import ToolCall, ToolDenied, ToolFailed
from cynode_core.orchestrator.mcp.tools.results import invalid_arguments
from cynode_core.orchestrator.models import Job, Task
from cynode_core.orchestrator.services.tasks import default_project, find_task

NOT_FOUND = "not found"


def not_found() -> ToolFailed:
    return ToolFailed(404, "not_found", NOT_FOUND)


def not_yours() -> ToolDenied:
    return ToolDenied(404, "scope_mismatch", NOT_FOUND)


def uuid_argument(value: str, name: str) -> uuid.UUID:
    """An id argument (the gateway has checked its form against the schema; this holds for direct calls too)."""
    try:
        return uuid.UUID(value)
    except (TypeError, ValueError) as exc:
        raise invalid_arguments(f"{name} must be a UUID") from exc


def owned_task(call: ToolCall, task_id: str) -> Task:
    """U's task ``task_id``."""
    wanted = uuid_argument(task_id, "task_id")
    try:
        task = find_task(call.session, call.principal.user_id, False, str(wanted))
    except NotFound:
        raise (not_found() if call.session.get(Task, wanted) is None else not_yours()) from None
    call.task_id, call.project_id = task.id, task.project_id
    return task


def owned_job(call: ToolCall, job_id: str) -> Job:
    """A job of one of U's tasks."""
    job = call.session.get(Job, uuid_argument(job_id, "job_id"))
    if job is None:
        raise not_found()
    task = call.session.get(Task, job.task_id)
    if task is None or task.created_by != call.principal.user_id:
        raise not_yours()
    call.job_id, call.task_id, call.project_id = job.id, task.id, task.project_id
    return job


def authorized_projects(session: Session, user_id: uuid.UUID) -> list[uuid.UUID]:
    """The projects U may use: in Phase 2 their default project only (made on first use)."""
    return [default_project(session, user_id)]
