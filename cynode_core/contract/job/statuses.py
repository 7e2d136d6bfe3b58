"""Every status a task, a job and a run can have, and which of them are final.

One enum per concept; everything else (models, SQL, services, the node, the
CLI) takes its values and terminal sets from here.
"""

from __future__ import annotations

from enum import StrEnum


class TaskStatus(StrEnum):
    """A task's status as stored (``tasks.status``)."""

    PENDING = "pending"
    RUNNING = "running"
    COMPLETED = "completed"
    FAILED = "failed"
    CANCELED = "canceled"
    SUPERSEDED = "superseded"

    @property
    def api_value(self) -> str:
        """The name clients see: ``pending`` is shown as ``queued`` (docs/wire_contract.md#statuses)."""
        return "queued" if self is TaskStatus.PENDING else self.value

    @classmethod
    def from_api(cls, value: str) -> TaskStatus:
        """The stored status of an API name; ``ValueError`` for an unknown one."""
        if value == "queued":
            return cls.PENDING
        if value == cls.PENDING.value:
            raise ValueError(value)
        return cls(value)

    @property
    def is_terminal(self) -> bool:
        return self in TASK_TERMINAL


class JobStatus(StrEnum):
    """A job's status as stored (``jobs.status``)."""

    QUEUED = "queued"
    RUNNING = "running"
    COMPLETED = "completed"
    FAILED = "failed"
    CANCELED = "canceled"
    LEASE_EXPIRED = "lease_expired"


class RunStatus(StrEnum):
    """How a run on a node ended (``RunJobResponse.status``)."""

    COMPLETED = "completed"
    FAILED = "failed"
    TIMEOUT = "timeout"


TASK_TERMINAL = frozenset({TaskStatus.COMPLETED, TaskStatus.FAILED, TaskStatus.CANCELED, TaskStatus.SUPERSEDED})
JOB_TERMINAL = frozenset({JobStatus.COMPLETED, JobStatus.FAILED, JobStatus.CANCELED})
# The task statuses clients may see and filter on, in the documented order.
TASK_API_STATUSES = tuple(s.api_value for s in TaskStatus)


def sql_list(statuses: frozenset[TaskStatus] | frozenset[JobStatus]) -> str:
    """``('a', 'b')`` for statuses written into SQL text, in declaration order (fixed identifiers, never input)."""
    members: list[StrEnum] = list(statuses)
    declared: list[StrEnum] = list(type(members[0]))
    ordered = [status for status in declared if status in statuses]
    return "(" + ", ".join(f"'{status.value}'" for status in ordered) + ")"
