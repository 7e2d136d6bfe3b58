"""Tasks and their jobs: create, look up, list, result, logs, cancel (docs/wire_contract.md#tasks).

Creating a task writes the task, its attachments and its one job in a
single transaction and wakes the dispatchers with ``NOTIFY`` (delivered on
commit), so a task is never half-created and never waits for a poll. A
draft (``planning_state`` ``draft``) gets no job: the options its job will
be built from wait in ``tasks.metadata`` until it is made ready
(``services/task_ready.py``), which builds the job with :func:`start_task`
as a ready create does.
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
from cynode_core.orchestrator.db import new_id
from cynode_core.orchestrator.models import Job, Node, Project, Task, TaskArtifact
from cynode_core.orchestrator.models.tasks import NO_OWNER, PlanningState
from cynode_core.orchestrator.node_client import NodeEndpoint, cancel_in_background, run_timeout
from cynode_core.orchestrator.services import job_grants
from cynode_core.orchestrator.services.job_files import check_attachments, referenced
from cynode_core.orchestrator.services.nodes import worker_token
from cynode_core.orchestrator.services.prompt_job import prompt_payload
from cynode_core.orchestrator.services.sba_payload import read_steps, sba_payload
from cynode_core.orchestrator.services.secrets import TokenCipher
from cynode_core.orchestrator.services.task_events import task_finished
from cynode_core.orchestrator.services.task_limits import check_queue_room
from cynode_core.orchestrator.settings import OrchestratorSettings

NOTIFY_CHANNEL = "cynode_jobs"
MAX_ATTACHMENT_LEN = 2048
# The key of ``tasks.metadata`` under which a draft keeps its execution options (upstream's name).
PENDING_EXEC_KEY = "cynode_pending_exec"


def normalize_name(name: str | None) -> str:
    return re.sub(r"[^a-z0-9]+", "-", (name or "").strip().lower()).strip("-")


@dataclass(frozen=True)
class ExecOptions:
    """What a task's job is built from besides its prompt; a draft keeps them in ``tasks.metadata``."""

    input_mode: str = "prompt"
    use_inference: bool = False
    use_sba: bool = False
    # The program of a direct_steps sandbox agent (``sba_steps``: ``{type, args}`` objects).
    sba_steps: tuple[dict[str, Any], ...] = ()

    def to_json(self) -> dict[str, Any]:
        out = {"use_sba": self.use_sba, "use_inference": self.use_inference, "input_mode": self.input_mode}
        if self.sba_steps:
            out["sba_steps"] = list(self.sba_steps)
        return out

    @classmethod
    def pending(cls, task: Task) -> ExecOptions:
        """A draft's kept options; a draft without them gets its input mode's defaults (as a REST create)."""
        kept = (task.metadata_ or {}).get(PENDING_EXEC_KEY)
        mode = task.input_mode or "prompt"
        if not isinstance(kept, dict):
            return cls(input_mode=mode, use_inference=mode == "prompt")
        steps = kept.get("sba_steps")
        return cls(
            input_mode=str(kept.get("input_mode") or mode),
            use_inference=kept.get("use_inference") is True,
            use_sba=kept.get("use_sba") is True,
            sba_steps=tuple(s for s in steps if isinstance(s, dict)) if isinstance(steps, list) else (),
        )


@dataclass
class NewTask:
    prompt: str
    input_mode: str = "prompt"
    use_inference: bool = False
    task_name: str | None = None
    project_id: str | None = None
    attachments: list[str] = field(default_factory=list)
    request_id: str | None = None
    # A draft gets no job until it is made ready (agents_contract.md 2).
    draft: bool = False
    use_sba: bool = False
    sba_steps: tuple[dict[str, Any], ...] = ()

    @property
    def options(self) -> ExecOptions:
        return ExecOptions(self.input_mode, self.use_inference, self.use_sba, self.sba_steps)


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


def job_payload(settings: OrchestratorSettings, prompt: str, options: ExecOptions) -> SandboxRequest:
    """The sandbox request a task's job carries (docs/wire_contract.md#job-payload)."""
    if options.input_mode == "prompt":
        return prompt_payload(settings.prompt_image, prompt, settings.inference_model)
    # A command task that asks for inference needs a client of the proxy: it
    # gets the prompt image (python and curl), as inference jobs do in the reference
    # implementation, CyNodeAI (docs/wire_contract.md#job-payload-command).
    if options.use_inference:
        return SandboxRequest(
            image=settings.prompt_image,
            command=("sh", "-c", prompt),
            env={"CYNODE_MODEL": settings.inference_model},
            use_inference=True,
        )
    return SandboxRequest(image=settings.task_image, command=("sh", "-c", prompt))


def lock_user_queue(session: Session, settings: OrchestratorSettings, user_id: uuid.UUID, *, check: bool) -> None:
    """Take the user's create lock (until the transaction ends); with ``check``, refuse a job past their queue limit.

    One create or ready per user at a time, on every orchestrator: the queue
    limit and the unique name count what the previous one wrote.
    """
    session.execute(text("SELECT pg_advisory_xact_lock(hashtext(:k))"), {"k": f"task-name:{user_id}"})
    if check:
        check_queue_room(session, settings, user_id)


def start_task(session: Session, settings: OrchestratorSettings, task: Task, options: ExecOptions) -> Job:
    """Make ``task`` ready: its one job queued (built from its prompt and ``options``), the dispatchers woken.

    The ``NOTIFY`` is delivered on commit; the caller holds the owner's
    create lock and has checked their queue (:func:`lock_user_queue`).
    """
    task.planning_state = PlanningState.READY.value
    if task.metadata_ and PENDING_EXEC_KEY in task.metadata_:
        task.metadata_ = {k: v for k, v in task.metadata_.items() if k != PENDING_EXEC_KEY} or None
    job_id = new_id()
    if options.use_sba:
        payload = sba_payload(
            settings,
            job_id=job_id,
            task_id=task.id,
            prompt=task.prompt or "",
            project=_project_line(session, task.project_id),
            steps=read_steps(list(options.sba_steps)),
            acceptance_criteria=task.acceptance_criteria,
        )
    else:
        payload = job_payload(settings, task.prompt or "", options)
    job = Job(
        id=job_id,
        task_id=task.id,
        owner_id=task.created_by or NO_OWNER,
        status=JobStatus.QUEUED,
        payload=payload.to_json(),
    )
    session.add(job)
    session.execute(text("SELECT pg_notify(:c, '')"), {"c": NOTIFY_CHANNEL})
    session.flush()
    return job


def _project_line(session: Session, project_id: uuid.UUID | None) -> str:
    """``project <slug> (<id>)``: the project context an agent is told."""
    project = session.get(Project, project_id) if project_id is not None else None
    return f"project {project.slug} ({project.id})" if project is not None else ""


def create_task(
    session: Session, settings: OrchestratorSettings, user_id: uuid.UUID, new: NewTask
) -> TaskWithAttachments:
    """Write a task and its attachments; unless it is a draft, its job too (docs/wire_contract.md#tasks-create).

    It is a draft when ``new.draft`` asks for one or ``task_auto_ready`` is
    off: status pending, ``planning_state`` draft, no job, its options kept
    under :data:`PENDING_EXEC_KEY` for the ready.
    """
    draft = new.draft or not settings.task_auto_ready
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
    check_attachments(session, user_id, new.attachments)  # artifact:<uuid> items: readable, within the cap
    # A draft queues no job: only its name needs the lock.
    lock_user_queue(session, settings, user_id, check=not draft)
    name = _unique_name(session, user_id, new.task_name)
    task = Task(
        created_by=user_id,
        project_id=project_id,
        status=TaskStatus.PENDING,
        prompt=new.prompt,
        name=name,
        input_mode=new.input_mode,
        request_id=new.request_id,
        planning_state=(PlanningState.DRAFT if draft else PlanningState.READY).value,
        metadata_={PENDING_EXEC_KEY: new.options.to_json()} if draft else None,
    )
    session.add(task)
    session.flush()
    kept: list[str] = []
    for raw in new.attachments:
        path = raw.strip()
        if path and len(path) <= MAX_ATTACHMENT_LEN and path not in kept:
            kept.append(path)
            artifact = referenced(path)
            ref = f"artifact:{artifact}" if artifact is not None else ""
            session.add(TaskArtifact(task_id=task.id, path=path, storage_ref=ref))
    if draft:
        session.flush()
    else:
        start_task(session, settings, task, new.options)
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


def with_attachments(session: Session, task: Task) -> TaskWithAttachments:
    return TaskWithAttachments(task, attachments_of(session, [task.id]).get(task.id, []))


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
    job_grants.revoke_task_grants(session, task.id, "task_canceled")
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
    tell_canceled(state, task.id, targets, request_id)


def tell_canceled(state: Any, task_id: uuid.UUID, targets: list[CancelTarget], request_id: str | None) -> None:
    """After a cancel committed: the nodes holding its jobs are told (in the background), plugins get
    ``cynode_task_finished``."""
    for target in targets:
        cancel_in_background(target.node, str(target.job_id), within=run_timeout(state.settings), request_id=request_id)
    task_finished(state, str(task_id))
