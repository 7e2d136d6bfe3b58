"""Tasks and their jobs: create, look up, list, result, logs, cancel (contract 3.4-3.7).

Creating a task writes the task, its attachments and its one job in a
single transaction and wakes the dispatchers with ``NOTIFY`` (delivered on
commit), so a task is never half-created and never waits for a poll.
"""

from __future__ import annotations

import json
import re
import uuid
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import func, select, text, update
from sqlalchemy.orm import Session

from cynode_core.config import OrchestratorSettings
from cynode_core.errors import BadRequest, NotFound
from cynode_core.models import Job, Project, Task, TaskArtifact
from cynode_core.models.tasks import JOB_TERMINAL, TASK_TERMINAL
from cynode_core.services.prompt_job import prompt_payload

API_STATUSES = ("queued", "running", "completed", "failed", "canceled", "superseded")
NOTIFY_CHANNEL = "cynode_jobs"
MAX_ATTACHMENT_LEN = 2048


def api_status(db_status: str) -> str:
    return "queued" if db_status == "pending" else db_status


def db_status(api_value: str) -> str:
    return "pending" if api_value == "queued" else api_value


def normalize_name(name: str | None) -> str:
    return re.sub(r"[^a-z0-9]+", "-", (name or "").strip().lower()).strip("-")


@dataclass
class NewTask:
    prompt: str
    input_mode: str = "prompt"
    use_inference: bool = False
    task_name: str | None = None
    project_id: str | None = None
    attachments: list[str] = field(default_factory=list)
    request_id: str | None = None


@dataclass
class TaskView:
    task: Task
    attachments: list[str]


def default_project(session: Session, user_id: uuid.UUID) -> uuid.UUID:
    slug = f"default-{user_id}"
    project_id = session.scalar(select(Project.id).where(Project.slug == slug))
    if project_id is not None:
        return project_id
    session.execute(
        text(
            "INSERT INTO projects (id, slug, display_name, is_active) VALUES (:id, :slug, 'Default Project', true) "
            "ON CONFLICT (slug) DO NOTHING"
        ),
        {"id": uuid.uuid4(), "slug": slug},
    )
    return session.scalar(select(Project.id).where(Project.slug == slug))  # type: ignore[return-value]


def _unique_name(session: Session, user_id: uuid.UUID, requested: str | None) -> str:
    name = normalize_name(requested)
    if not name:
        count = session.scalar(select(func.count()).select_from(Task).where(Task.created_by == user_id)) or 0
        return f"task_name_{count + 1:03d}"
    taken = set(
        session.scalars(
            select(Task.summary).where(
                Task.created_by == user_id, Task.summary.op("~")(f"^{re.escape(name)}(-[0-9]+)?$")
            )
        )
    )
    if name not in taken:
        return name
    n = 2
    while f"{name}-{n}" in taken:
        n += 1
    return f"{name}-{n}"


def job_payload(settings: OrchestratorSettings, new: NewTask) -> dict[str, Any]:
    """The stored job payload for a task (contract 6.1)."""
    if new.input_mode == "prompt":
        return prompt_payload(settings.prompt_image, new.prompt, settings.inference_model)
    # A command task that asks for inference needs a client of the proxy: it
    # gets the prompt image (python and curl), as upstream's inference jobs do.
    image = settings.prompt_image if new.use_inference else settings.task_image
    payload: dict[str, Any] = {"image": image, "command": ["sh", "-c", new.prompt]}
    if new.use_inference:
        payload["use_inference"] = True
        payload["env"] = {"CYNODE_MODEL": settings.inference_model}
    return payload


def create_task(session: Session, settings: OrchestratorSettings, user_id: uuid.UUID, new: NewTask) -> TaskView:
    project_id: uuid.UUID
    if new.project_id and new.project_id.strip():
        try:
            project_id = uuid.UUID(new.project_id.strip())
        except ValueError as exc:
            raise BadRequest("Invalid project_id") from exc
        if session.get(Project, project_id) is None:
            raise BadRequest("Invalid project_id")
    else:
        project_id = default_project(session, user_id)
    # Names are unique per user: serialise this user's creates on their row.
    session.execute(text("SELECT pg_advisory_xact_lock(hashtext(:k))"), {"k": f"task-name:{user_id}"})
    name = _unique_name(session, user_id, new.task_name)
    task = Task(
        created_by=user_id,
        project_id=project_id,
        status="pending",
        prompt=new.prompt,
        summary=name,
        input_mode=new.input_mode,
        request_id=new.request_id,
    )
    session.add(task)
    session.flush()
    kept: list[str] = []
    for raw in new.attachments:
        path = raw.strip()
        if path and len(path) <= MAX_ATTACHMENT_LEN and path not in kept:
            kept.append(path)
            session.add(TaskArtifact(task_id=task.id, path=path, storage_ref=""))
    session.add(Job(task_id=task.id, status="queued", payload=json.dumps(job_payload(settings, new))))
    session.execute(text("SELECT pg_notify(:c, '')"), {"c": NOTIFY_CHANNEL})
    session.flush()
    return TaskView(task, kept)


def find_task(session: Session, user_id: uuid.UUID, is_admin: bool, ref: str) -> Task:
    """A task by UUID or by name; another user's task is a 404 (decisions.md, Acceptance 1)."""
    try:
        task_id = uuid.UUID(ref)
    except ValueError:
        task = session.scalar(
            select(Task)
            .where(Task.created_by == user_id, Task.summary == ref)
            .order_by(Task.created_at.desc())
            .limit(1)
        )
    else:
        task = session.get(Task, task_id)
        if task is not None and task.created_by != user_id and not is_admin:
            task = None
    if task is None:
        raise NotFound("Task not found")
    return task


def attachments_of(session: Session, task_ids: list[uuid.UUID]) -> dict[uuid.UUID, list[str]]:
    out: dict[uuid.UUID, list[str]] = {}
    if not task_ids:
        return out
    rows = session.execute(
        select(TaskArtifact.task_id, TaskArtifact.path)
        .where(TaskArtifact.task_id.in_(task_ids), TaskArtifact.storage_ref == "")
        .order_by(TaskArtifact.created_at, TaskArtifact.id)
    )
    for task_id, path in rows:
        out.setdefault(task_id, []).append(path)
    return out


def list_tasks(
    session: Session, user_id: uuid.UUID, *, limit: int, offset: int, status: str | None
) -> tuple[list[TaskView], int | None]:
    stmt = select(Task).where(Task.created_by == user_id)
    if status is not None:
        stmt = stmt.where(Task.status == db_status(status))
    rows = list(session.scalars(stmt.order_by(Task.created_at.desc(), Task.id.desc()).offset(offset).limit(limit + 1)))
    more = len(rows) > limit
    rows = rows[:limit]
    atts = attachments_of(session, [t.id for t in rows])
    return [TaskView(t, atts.get(t.id, [])) for t in rows], (offset + limit if more else None)


def jobs_of(session: Session, task_id: uuid.UUID) -> list[Job]:
    return list(session.scalars(select(Job).where(Job.task_id == task_id).order_by(Job.created_at, Job.id)))


def result_text(job: Job) -> str | None:
    """The stored result as the string clients see (it is a JSON string inside jsonb)."""
    if job.result is None:
        return None
    return job.result if isinstance(job.result, str) else json.dumps(job.result)


def logs(jobs: list[Job], stream: str) -> tuple[str, str]:
    out, err = [], []
    for job in jobs:
        raw = result_text(job)
        if raw is None:
            continue
        try:
            parsed = json.loads(raw)
        except ValueError:
            continue
        if not isinstance(parsed, dict):
            continue
        if stream in ("all", "stdout"):
            out.append(str(parsed.get("stdout") or ""))
        if stream in ("all", "stderr"):
            err.append(str(parsed.get("stderr") or ""))
    return "".join(out), "".join(err)


@dataclass(frozen=True)
class CancelTarget:
    job_id: uuid.UUID
    node_id: uuid.UUID


def cancel(session: Session, task: Task) -> list[CancelTarget]:
    """Mark the task and its open jobs canceled; return the running jobs a node must stop."""
    session.execute(
        update(Task)
        .where(Task.id == task.id, Task.status.not_in(TASK_TERMINAL))
        .values(status="canceled", closed=True, updated_at=func.now())
    )
    running = session.execute(
        update(Job)
        .where(Job.task_id == task.id, Job.status.not_in(JOB_TERMINAL))
        .values(status="canceled", ended_at=func.now(), lease_id=None, lease_expires_at=None, updated_at=func.now())
        .returning(Job.id, Job.node_id, Job.started_at)
    ).all()
    return [CancelTarget(job_id, node_id) for job_id, node_id, started in running if node_id is not None and started]
