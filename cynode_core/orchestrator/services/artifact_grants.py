"""Read grants on user-scoped artifacts (artifacts_contract.md 3.6): the owner lets another user read one.

Only the owner manages them; a caller who cannot read the artifact gets
404 (as for any artifact), one who can but is not its owner, or an artifact
of another scope, 403. A grantee must be an active user (404 ``User not
found``). Granting twice and revoking what is not granted change nothing.
"""

from __future__ import annotations

import uuid

from sqlalchemy import delete, select
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.orm import Session

from cynode_core.contract.errors import NotFound, NotPermitted
from cynode_core.orchestrator.models import User
from cynode_core.orchestrator.models.artifacts import Artifact, ArtifactReadGrant
from cynode_core.orchestrator.services.artifact_access import Actor, may_read
from cynode_core.orchestrator.services.artifacts import ACCESS_DENIED, NOT_FOUND


def _owned(session: Session, actor: Actor, artifact_id: uuid.UUID) -> Artifact:
    row = session.get(Artifact, artifact_id)
    if row is None or not may_read(session, actor, row):
        raise NotFound(NOT_FOUND)
    if row.scope_level != "user" or row.owner_user_id != actor.user_id:
        raise NotPermitted(ACCESS_DENIED)
    return row


def listed(session: Session, actor: Actor, artifact_id: uuid.UUID) -> list[ArtifactReadGrant]:
    row = _owned(session, actor, artifact_id)
    query = select(ArtifactReadGrant).where(ArtifactReadGrant.artifact_id == row.id)
    return list(session.scalars(query.order_by(ArtifactReadGrant.created_at, ArtifactReadGrant.id)))


def grant(session: Session, actor: Actor, artifact_id: uuid.UUID, grantee: uuid.UUID) -> None:
    row = _owned(session, actor, artifact_id)
    active = session.scalar(select(User.id).where(User.id == grantee, User.is_active.is_(True)))
    if active is None:
        raise NotFound("User not found")
    session.execute(
        insert(ArtifactReadGrant)
        .values(id=uuid.uuid4(), artifact_id=row.id, grantee_user_id=grantee, created_by=actor.user_id)
        .on_conflict_do_nothing(constraint="idx_artifact_read_grant_pair")
    )


def revoke(session: Session, actor: Actor, artifact_id: uuid.UUID, grantee: uuid.UUID) -> None:
    row = _owned(session, actor, artifact_id)
    session.execute(
        delete(ArtifactReadGrant).where(
            ArtifactReadGrant.artifact_id == row.id, ArtifactReadGrant.grantee_user_id == grantee
        )
    )
