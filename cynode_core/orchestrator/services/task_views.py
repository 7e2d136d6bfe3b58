"""A task as its clients see it: the fields of ``TaskResponse`` and ``TaskResultResponse`` (wire_contract.md#tasks).

The REST routes dump these through their schemas (timestamps stay
``datetime`` here); the MCP task tools answer with them too.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy.orm import Session

from cynode_core.contract.job import TaskStatus, result_text
from cynode_core.orchestrator.models import Task
from cynode_core.orchestrator.services.tasks import TaskWithAttachments, jobs_of


def task_view(found: TaskWithAttachments) -> dict[str, Any]:
    """A ``TaskResponse``; ``None`` stands for a field left out."""
    t = found.task
    return {
        "id": str(t.id),
        "task_id": str(t.id),
        "status": TaskStatus(t.status).api_value,
        "planning_state": t.planning_state,
        "task_name": t.name,
        "prompt": t.prompt,
        "summary": t.name,
        "created_at": t.created_at,
        "updated_at": t.updated_at,
        "attachments": found.attachments or None,
        # Ours: where the task's outputs are stored as artifacts (artifacts_contract.md 8).
        "project_id": str(t.project_id) if t.project_id else None,
    }


def result_view(session: Session, task: Task) -> dict[str, Any]:
    """A ``TaskResultResponse``: the task's status and each of its jobs with its stored result (a JSON string)."""
    jobs = [
        {
            "id": str(j.id),
            "status": j.status,
            "result": result_text(j.result),
            "started_at": j.started_at,
            "ended_at": j.ended_at,
        }
        for j in jobs_of(session, task.id)
    ]
    return {
        "task_id": str(task.id),
        "status": TaskStatus(task.status).api_value,
        "planning_state": task.planning_state,
        "jobs": jobs,
    }
