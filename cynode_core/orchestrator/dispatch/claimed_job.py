"""A claimed job: what the dispatcher holds between the claim and the node's answer (or a node's report)."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import Protocol

from cynode_core.contract.job import RunJobRequest
from cynode_core.orchestrator.node_client import NodeEndpoint


@dataclass(frozen=True)
class ClaimedJob:
    """A job this dispatcher holds the lease of, ready to send."""

    request: RunJobRequest
    lease_id: uuid.UUID
    attempts: int
    node_id: uuid.UUID
    node: NodeEndpoint
    # The request id the task was created with: sent to the node as X-Request-Id.
    request_id: str | None = None

    @property
    def job_id(self) -> uuid.UUID:
        return uuid.UUID(self.request.job_id)

    @property
    def task_id(self) -> uuid.UUID:
        return uuid.UUID(self.request.task_id)


class Leased(Protocol):
    """What the writes that end a job need: the job, its task and the lease that fences them."""

    @property
    def job_id(self) -> uuid.UUID: ...

    @property
    def task_id(self) -> uuid.UUID: ...

    @property
    def lease_id(self) -> uuid.UUID: ...

    @property
    def node_id(self) -> uuid.UUID: ...


@dataclass(frozen=True)
class ReportedJob:
    """A job as a node's report names it: the ends it reports are fenced by its lease like a dispatcher's."""

    job_id: uuid.UUID
    task_id: uuid.UUID
    lease_id: uuid.UUID
    node_id: uuid.UUID
