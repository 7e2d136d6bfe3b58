"""A task's files on the orchestrator's side: the artifacts it takes in, the files its job gives back.

**Inputs** (artifacts_contract.md 7). A task names artifacts among its
attachments as ``artifact:<uuid>``; when its job is sent, each is read
(its current content, as the task's creator may read it) and sent in
``sandbox.inputs`` as ``inputs/<last path segment>`` (a repeated name gets
``-2``, ``-3``). One that is gone or no longer readable fails the job before
it is sent: ``input artifact:<uuid> is not available``.

**Outputs** (artifacts_contract.md 8). Each file a node returned with its
content becomes an artifact of the task's project (owner: the task's
creator) at ``tasks/<task_id>/<path>``, created by the job or, when one is
there already, replaced by it. In the stored result each item keeps its
size, SHA-256 and type, loses its content and gains ``artifact_id``; an item
that could not be stored gets ``"error": "store_failed"`` (logged; the job's
status stays what the node said).
"""

from __future__ import annotations

import dataclasses
import io
import logging
import re
import uuid
from collections.abc import Sequence
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from cynode_core.contract.errors import CynodeError, InvalidInput, NotFound, TooLarge
from cynode_core.contract.job import RunJobResponse
from cynode_core.contract.job.files import MAX_INPUT_BYTES, JobInput, JobOutput, unique_input_names
from cynode_core.orchestrator.models import Task, TaskArtifact
from cynode_core.orchestrator.models.artifacts import Artifact
from cynode_core.orchestrator.services.artifact_access import Actor, Scope, clean_path, may_read
from cynode_core.orchestrator.services.artifacts import Artifacts, Lineage, Upload, at_path

log = logging.getLogger(__name__)

ARTIFACT_REF = re.compile(r"artifact:([0-9a-fA-F-]{36})", re.IGNORECASE)
NOT_READABLE = "attachment artifact:{} is not readable"
NOT_AVAILABLE = "input artifact:{} is not available"


class InputUnavailable(CynodeError):
    """An input artifact of a job is gone or no longer readable by the task's creator."""


def referenced(item: str) -> uuid.UUID | None:
    """The artifact an attachment names (``artifact:<uuid>``, any case), or None for a plain path."""
    match = ARTIFACT_REF.fullmatch(item.strip())
    if match is None:
        return None
    try:
        return uuid.UUID(match.group(1))
    except ValueError:
        return None


def check_attachments(session: Session, creator: uuid.UUID, items: Sequence[str]) -> None:
    """At task create: every referenced artifact readable by the creator, all of them within the input cap."""
    total = 0
    for item in items:
        artifact_id = referenced(item)
        if artifact_id is None:
            continue
        row = session.get(Artifact, artifact_id)
        if row is None or not may_read(session, Actor(creator), row):
            raise InvalidInput(NOT_READABLE.format(artifact_id))
        total += row.size_bytes
    if total > MAX_INPUT_BYTES:
        raise TooLarge(f"the attached artifacts total {total} bytes; a job takes at most {MAX_INPUT_BYTES}")


def job_inputs(artifacts: Artifacts, task_id: uuid.UUID) -> tuple[JobInput, ...]:
    """The inputs of the task's job, read now; ``InputUnavailable`` for one that cannot be read."""
    with artifacts.db.session() as session:
        # One indexed query for the tasks that have none (nearly all): no other is made for them.
        refs = session.scalars(
            select(TaskArtifact.storage_ref).where(
                TaskArtifact.task_id == task_id, TaskArtifact.storage_ref.like("artifact:%")
            )
        ).all()
        wanted = [r for r in (referenced(ref) for ref in refs) if r is not None]
        if not wanted:
            return ()
        creator = session.scalar(select(Task.created_by).where(Task.id == task_id))
        rows = []
        for artifact_id in wanted:
            row = session.get(Artifact, artifact_id)
            if row is None or creator is None or not may_read(session, Actor(creator), row):
                raise InputUnavailable(NOT_AVAILABLE.format(artifact_id))
            rows.append(row)
    if not rows:
        return ()
    if sum(row.size_bytes for row in rows) > MAX_INPUT_BYTES:
        raise InputUnavailable(f"the input artifacts total more than {MAX_INPUT_BYTES} bytes")
    names = unique_input_names([row.path.rsplit("/", 1)[-1] for row in rows])
    inputs = []
    for name, row in zip(names, rows, strict=True):
        try:
            content = b"".join(artifacts.content(row))
        except NotFound:
            raise InputUnavailable(NOT_AVAILABLE.format(row.id)) from None
        inputs.append(JobInput.of(name, content))
    return tuple(inputs)


def stored_outputs(
    artifacts: Artifacts, task_id: uuid.UUID, job_id: uuid.UUID, result: RunJobResponse
) -> RunJobResponse:
    """``result`` with its outputs stored as artifacts: each item's content replaced by its ``artifact_id``."""
    items = result.extras.get("artifacts")
    if not isinstance(items, list) or not items:
        return result
    with artifacts.db.session() as session:
        task = session.get(Task, task_id)
        owner, project = (task.created_by, task.project_id) if task is not None else (None, None)
    kept: list[Any] = []
    for raw in items:
        output = JobOutput.from_json(raw)
        if output is None:
            continue  # not well formed: dropped, never stored
        item = {k: v for k, v in output.to_json().items() if k != "content_base64"}
        if output.content is not None:
            item.update(_store_one(artifacts, owner, project, task_id, job_id, output))
        kept.append(item)
    return dataclasses.replace(result, extras=dict(result.extras, artifacts=kept))


def _store_one(
    artifacts: Artifacts,
    owner: uuid.UUID | None,
    project: uuid.UUID | None,
    task_id: uuid.UUID,
    job_id: uuid.UUID,
    output: JobOutput,
) -> dict[str, Any]:
    assert output.content is not None
    if owner is None:
        return {"error": "store_failed"}
    actor = Actor(owner)
    scope = Scope("project", project_id=project) if project is not None else Scope("user", owner_user_id=owner)
    try:
        path = clean_path(f"tasks/{task_id}/{output.path}")
        upload = Upload(io.BytesIO(output.content), output.content_type)
        with artifacts.db.session() as session:
            present = at_path(session, scope, path)
        if present is not None:
            row = artifacts.replace(actor, present.id, upload, job_id)
        else:
            row = artifacts.create(actor, scope, path, upload, Lineage(job_id=job_id, task_id=task_id))
    except Exception:  # noqa: BLE001 - one output that cannot be kept must not lose the job's result
        log.exception("job %s: output %s could not be stored as an artifact", job_id, output.path)
        return {"error": "store_failed"}
    return {"artifact_id": str(row.id)}
