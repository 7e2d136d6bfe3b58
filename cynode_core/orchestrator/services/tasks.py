"""Tasks and their jobs: create, look up, list, result, logs, cancel (docs/wire_contract.md#tasks).

Creating a task writes the task, its attachments and its one job in a
single transaction and wakes the dispatchers with ``NOTIFY`` (delivered on
commit), so a task is never half-created and never waits for a poll.
"""

from __future__ import annotations

import re
import uuid
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import func, select, text, update
from sqlalchemy.orm import Session

from cynode_core.contract.errors import InvalidInput, NotFound
from cynode_core.contract.job import (
    JOB_TERMINAL,
    TASK_TERMINAL,
    JobStatus,
    SandboxRequest,
    TaskStatus,
    result_from_storage,
)
from cynode_core.orchestrator.models import Job, Node, Project, Task, TaskArtifact
from cynode_core.orchestrator.node_client import NodeEndpoint, cancel_in_background, run_timeout
from cynode_core.orchestrator.services.nodes import worker_token
from cynode_core.orchestrator.services.prompt_job import prompt_payload
from cynode_core.orchestrator.services.secrets import TokenCipher
from cynode_core.orchestrator.services.task_events import task_finished
from cynode_core.orchestrator.services.task_limits import check_queue_room
from cynode_core.orchestrator.settings import OrchestratorSettings

NOTIFY_CHANNEL = "cynode_jobs"
MAX_ATTACHMENT_LEN = 2048


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
class TaskWithAttachments:
    """A task and the paths of its attachments, as the API shows it."""

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
            select(Task.name).where(Task.created_by == user_id, Task.name.op("~")(f"^{re.escape(name)}(-[0-9]+)?$"))
        )
    )
    if name not in taken:
        return name
    n = 2
    while f"{name}-{n}" in taken:
        n += 1
    return f"{name}-{n}"


def job_payload(settings: OrchestratorSettings, new: NewTask) -> SandboxRequest:
    """The sandbox request a new task's job carries (docs/wire_contract.md#job-payload)."""
    if new.input_mode == "prompt":
        return prompt_payload(settings.prompt_image, new.prompt, settings.inference_model)
    # A command task that asks for inference needs a client of the proxy: it
    # gets the prompt image (python and curl), as inference jobs do in the reference
    # implementation, CyNodeAI (docs/wire_contract.md#job-payload-command).
    if new.use_inference:
        return SandboxRequest(
            image=settings.prompt_image,
            command=("sh", "-c", new.prompt),
            env={"CYNODE_MODEL": settings.inference_model},
            use_inference=True,
        )
    return SandboxRequest(image=settings.task_image, command=("sh", "-c", new.prompt))


def create_task(
    session: Session, settings: OrchestratorSettings, user_id: uuid.UUID, new: NewTask
) -> TaskWithAttachments:
    project_id: uuid.UUID
    if new.project_id and new.project_id.strip():
        try:
            project_id = uuid.UUID(new.project_id.strip())
        except ValueError as exc:
            raise InvalidInput("Invalid project_id") from exc
        if session.get(Project, project_id) is None:
            raise InvalidInput("Invalid project_id")
    else:
        project_id = default_project(session, user_id)
    # One create per user at a time, on every orchestrator: the queue limit
    # and the unique name count what the previous create wrote.
    session.execute(text("SELECT pg_advisory_xact_lock(hashtext(:k))"), {"k": f"task-name:{user_id}"})
    check_queue_room(session, settings, user_id)
    name = _unique_name(session, user_id, new.task_name)
    task = Task(
        created_by=user_id,
        project_id=project_id,
        status=TaskStatus.PENDING,
        prompt=new.prompt,
        name=name,
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
    session.add(
        Job(task_id=task.id, owner_id=user_id, status=JobStatus.QUEUED, payload=job_payload(settings, new).to_json())
    )
    session.execute(text("SELECT pg_notify(:c, '')"), {"c": NOTIFY_CHANNEL})
    session.flush()
    return TaskWithAttachments(task, kept)


def find_task(session: Session, user_id: uuid.UUID, is_admin: bool, ref: str) -> Task:
    """A task by UUID or by name; another user's task is a 404 (docs/wire_contract.md#task-lookup)."""
    try:
        task_id = uuid.UUID(ref)
    except ValueError:
        task = session.scalar(
            select(Task).where(Task.created_by == user_id, Task.name == ref).order_by(Task.created_at.desc()).limit(1)
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
) -> tuple[list[TaskWithAttachments], int | None]:
    stmt = select(Task).where(Task.created_by == user_id)
    if status is not None:
        stmt = stmt.where(Task.status == TaskStatus.from_api(status))
    rows = list(session.scalars(stmt.order_by(Task.created_at.desc(), Task.id.desc()).offset(offset).limit(limit + 1)))
    more = len(rows) > limit
    rows = rows[:limit]
    atts = attachments_of(session, [t.id for t in rows])
    return [TaskWithAttachments(t, atts.get(t.id, [])) for t in rows], (offset + limit if more else None)


def jobs_of(session: Session, task_id: uuid.UUID) -> list[Job]:
    return list(session.scalars(select(Job).where(Job.task_id == task_id).order_by(Job.created_at, Job.id)))


def logs(jobs: list[Job], stream: str) -> tuple[str, str]:
    """The jobs' captured stdout and stderr, concatenated in job order."""
    out, err = [], []
    for job in jobs:
        result = result_from_storage(job.result)
        if result is None:
            continue
        if stream in ("all", "stdout"):
            out.append(result.stdout or "")
        if stream in ("all", "stderr"):
            err.append(result.stderr or "")
    return "".join(out), "".join(err)


@dataclass(frozen=True)
class CancelTarget:
    """A running job a node must be told to stop."""

    job_id: uuid.UUID
    node: NodeEndpoint


def cancel(session: Session, cipher: TokenCipher, task: Task) -> list[CancelTarget]:
    """Mark the task and its open jobs canceled; return the jobs a node must stop.

    That is every open job that was sent to a node (``node_id``): a job the
    dispatcher holds on a node it lost contact with keeps that node until
    the node has said it does not run it (decisions.md Dispatch 9).
    """
    session.execute(
        update(Task)
        .where(Task.id == task.id, Task.status.not_in(TASK_TERMINAL))
        .values(status=TaskStatus.CANCELED, closed=True, updated_at=func.now())
    )
    running = session.execute(
        update(Job)
        .where(Job.task_id == task.id, Job.status.not_in(JOB_TERMINAL))
        .values(
            status=JobStatus.CANCELED, ended_at=func.now(), lease_id=None, lease_expires_at=None, updated_at=func.now()
        )
        .returning(Job.id, Job.node_id, Job.started_at)
    ).all()
    targets = []
    for job_id, node_id, started in running:
        node = session.get(Node, node_id) if node_id is not None and started else None
        if node is not None and node.worker_api_target_url:
            token = worker_token(cipher, node)
            if token:
                targets.append(CancelTarget(job_id, NodeEndpoint(node.worker_api_target_url, token)))
    return targets


def cancel_task(state: Any, task: Task, request_id: str | None) -> None:
    """Cancel a task: in the database at once, then on the nodes holding its jobs (in the background).

    ``state`` is the orchestrator's (``db``, ``cipher``, ``pm``,
    ``settings``). The node a job was sent to hears of it under
    ``request_id``, also when it is out of reach for now: the cancel is sent
    again until it answers, for as long as it may still run the job
    (decisions.md Dispatch 9). Plugins get ``cynode_task_finished``.
    """
    with state.db.session() as session:
        targets = cancel(session, state.cipher, session.merge(task))
    for target in targets:
        cancel_in_background(target.node, str(target.job_id), within=run_timeout(state.settings), request_id=request_id)
    task_finished(state, str(task.id))
