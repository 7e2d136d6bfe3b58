"""Telling plugins that a task ended (the ``cynode_task_finished`` event)."""

from __future__ import annotations

import logging
from typing import Any

from sqlalchemy import text

from cynode_core.contract import TaskEvent
from cynode_core.contract.job import TaskStatus

log = logging.getLogger(__name__)


def task_finished(state: Any, task_id: str) -> None:
    """Call ``cynode_task_finished`` if the task is terminal; a failing plugin never breaks the caller.

    ``state`` is the orchestrator's (its ``db`` and ``pm`` are used).
    """
    try:
        with state.db.session() as session:
            row = session.execute(text("SELECT status, created_by FROM tasks WHERE id = :id"), {"id": task_id}).first()
        if row is None or not TaskStatus(row[0]).is_terminal:
            return
        state.pm.hook.cynode_task_finished(
            task=TaskEvent(
                task_id=str(task_id),
                status=TaskStatus(row[0]).api_value,
                created_by=str(row[1]) if row[1] else None,
            )
        )
    except Exception:  # noqa: BLE001 - plugins are not allowed to break dispatch or the API
        log.exception("cynode_task_finished hook failed for task %s", task_id)
