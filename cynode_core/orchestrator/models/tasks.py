"""Projects, tasks, their jobs and attachment references."""

from __future__ import annotations

import datetime as dt
import uuid
from enum import StrEnum
from typing import Any

from sqlalchemy import (
    Boolean,
    CheckConstraint,
    DateTime,
    ForeignKey,
    Index,
    Integer,
    Text,
    UniqueConstraint,
    Uuid,
    text,
)
from sqlalchemy.dialects.postgresql import BIGINT, JSONB
from sqlalchemy.orm import Mapped, mapped_column

from cynode_core.contract.job import JobStatus, TaskStatus
from cynode_core.orchestrator.db import Base, new_id
from cynode_core.orchestrator.models.auth import TimestampMixin

# The owner of jobs whose task has no creator (jobs.owner_id is never NULL).
NO_OWNER = uuid.UUID(int=0)


def _single_column_indexes(table: str, *columns: str) -> tuple[Index, ...]:
    """``idx_<table>_<column>`` on each column."""
    return tuple(Index(f"idx_{table}_{column}", column) for column in columns)


def _in(column: str, values: type[StrEnum]) -> str:
    return f"{column} IN ({', '.join(repr(v.value) for v in values)})"


class Project(TimestampMixin, Base):
    __tablename__ = "projects"

    id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True, default=new_id)
    slug: Mapped[str] = mapped_column(Text, unique=True)
    display_name: Mapped[str] = mapped_column(Text)
    description: Mapped[str | None] = mapped_column(Text)
    is_active: Mapped[bool] = mapped_column(Boolean, server_default=text("true"), default=True)
    updated_by: Mapped[str | None] = mapped_column(Text)


class PlanningState(StrEnum):
    """Whether a task may run: a ``draft`` has no job until it is made ``ready`` (agents_contract.md 2)."""

    DRAFT = "draft"
    READY = "ready"


class Task(TimestampMixin, Base):
    __tablename__ = "tasks"
    __table_args__ = (
        CheckConstraint(_in("status", TaskStatus), name="status"),
        CheckConstraint(_in("planning_state", PlanningState), name="planning_state"),
        *_single_column_indexes(
            "tasks", "created_by", "project_id", "plan_id", "status", "closed", "created_at", "planning_state"
        ),
        Index("idx_tasks_owner_created", "created_by", "created_at"),
        Index("idx_tasks_owner_summary", "created_by", "summary"),
    )

    id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True, default=new_id)
    created_by: Mapped[uuid.UUID | None] = mapped_column(Uuid, ForeignKey("users.id", ondelete="SET NULL"))
    project_id: Mapped[uuid.UUID | None] = mapped_column(Uuid, ForeignKey("projects.id", ondelete="SET NULL"))
    plan_id: Mapped[uuid.UUID | None] = mapped_column(Uuid)
    status: Mapped[str] = mapped_column(Text, server_default=text("'pending'"), default="pending")
    closed: Mapped[bool] = mapped_column(Boolean, server_default=text("false"), default=False)
    prompt: Mapped[str | None] = mapped_column(Text)
    input_mode: Mapped[str | None] = mapped_column(Text)
    acceptance_criteria: Mapped[Any | None] = mapped_column(JSONB)
    # The task's name (unique per owner); the column keeps its historical name ``summary``.
    name: Mapped[str | None] = mapped_column("summary", Text)
    description: Mapped[str | None] = mapped_column(Text)
    metadata_: Mapped[dict[str, Any] | None] = mapped_column("metadata", JSONB)
    # The X-Request-Id of the call that created the task; it follows the task to the node.
    request_id: Mapped[str | None] = mapped_column(Text)
    planning_state: Mapped[str] = mapped_column(Text, server_default=text("'draft'"), default=PlanningState.DRAFT.value)


class Job(TimestampMixin, Base):
    """One unit of work sent to a node.

    ``payload`` is a :class:`~cynode_core.contract.job.SandboxRequest` and
    ``result`` a stored :data:`~cynode_core.contract.job.JobResult`, both as
    jsonb objects (their codec is the job contract's). The lease columns drive dispatch: a claimed job carries a
    ``lease_id`` and ``lease_expires_at``; an expired lease puts it back.
    """

    __tablename__ = "jobs"
    __table_args__ = (
        CheckConstraint(_in("status", JobStatus), name="status"),
        *_single_column_indexes("jobs", "task_id", "node_id", "status", "created_at"),
        Index("idx_jobs_lease_id", "lease_id", postgresql_where=text("lease_id IS NOT NULL")),
        Index("idx_jobs_lease_expires_at", "lease_expires_at", postgresql_where=text("lease_expires_at IS NOT NULL")),
        Index("idx_jobs_queue", "created_at", "id", postgresql_where=text("status = 'queued'")),
        Index("idx_jobs_running_node", "node_id", postgresql_where=text("status = 'running'")),
        # The fair claim walks owners of queued jobs and counts each owner's running ones (dispatch/fair_order.py).
        Index("idx_jobs_queue_owner", "owner_id", "created_at", "id", postgresql_where=text("status = 'queued'")),
        Index("idx_jobs_running_owner", "owner_id", postgresql_where=text("status = 'running'")),
    )

    id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True, default=new_id)
    task_id: Mapped[uuid.UUID] = mapped_column(Uuid, ForeignKey("tasks.id", ondelete="CASCADE"))
    # Whose share of the dispatch the job takes: its task's creator, the nil UUID for a task without one.
    owner_id: Mapped[uuid.UUID] = mapped_column(Uuid, server_default=text(f"'{NO_OWNER}'"), default=NO_OWNER)
    node_id: Mapped[uuid.UUID | None] = mapped_column(Uuid, ForeignKey("nodes.id", ondelete="SET NULL"))
    status: Mapped[str] = mapped_column(Text, server_default=text("'queued'"), default="queued")
    payload: Mapped[dict[str, Any] | None] = mapped_column(JSONB)
    result: Mapped[dict[str, Any] | None] = mapped_column(JSONB)
    attempts: Mapped[int] = mapped_column(Integer, server_default=text("0"), default=0)
    next_attempt_at: Mapped[dt.datetime | None] = mapped_column(DateTime(timezone=True))
    last_error: Mapped[str | None] = mapped_column(Text)
    lease_id: Mapped[uuid.UUID | None] = mapped_column(Uuid)
    lease_owner: Mapped[str | None] = mapped_column(Text)
    lease_expires_at: Mapped[dt.datetime | None] = mapped_column(DateTime(timezone=True))
    started_at: Mapped[dt.datetime | None] = mapped_column(DateTime(timezone=True))
    ended_at: Mapped[dt.datetime | None] = mapped_column(DateTime(timezone=True))


class TaskArtifact(TimestampMixin, Base):
    __tablename__ = "task_artifacts"
    __table_args__ = (
        UniqueConstraint("task_id", "path", name="uix_task_artifact_path"),
        Index("idx_task_artifacts_run_id", "run_id"),
    )

    id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True, default=new_id)
    task_id: Mapped[uuid.UUID] = mapped_column(Uuid, ForeignKey("tasks.id", ondelete="CASCADE"))
    run_id: Mapped[uuid.UUID | None] = mapped_column(Uuid)
    path: Mapped[str] = mapped_column(Text)
    storage_ref: Mapped[str] = mapped_column(Text, server_default=text("''"), default="")
    size_bytes: Mapped[int | None] = mapped_column(BIGINT)
    content_type: Mapped[str | None] = mapped_column(Text)
    checksum_sha256: Mapped[str | None] = mapped_column(Text)
