"""Who may do what with an artifact, and what a path and a scope are (artifacts_contract.md 2.3, 3.1, 4).

A scope is a level and its anchor; its partition string (``user:<uuid>``,
``project:<uuid>``, ``group:<uuid>``, ``global``) and the path are the
artifact's unique key. The rules (deny by default):

| scope | read | write | list |
| --- | --- | --- | --- |
| user | owner, read grantees | owner | owner |
| project | members, admin | members, admin | members, admin |
| group, global | admin | admin | admin |

A project's members are, in this phase, its owner: the user whose default
project it is. An agent acts as its user and is never admin.
"""

from __future__ import annotations

import posixpath
import uuid
from dataclasses import dataclass

from sqlalchemy import select
from sqlalchemy.orm import Session

from cynode_core.contract.errors import InvalidInput
from cynode_core.orchestrator.models import Project
from cynode_core.orchestrator.models.artifacts import SCOPE_LEVELS, Artifact, ArtifactReadGrant

MAX_PATH_CHARS = 1024
INVALID_PATH = "invalid path"


@dataclass(frozen=True)
class Actor:
    """Who acts: a user, and whether with administrator rights (never for an agent)."""

    user_id: uuid.UUID
    admin: bool = False


@dataclass(frozen=True)
class Scope:
    """A scope level with its anchor."""

    level: str
    owner_user_id: uuid.UUID | None = None
    project_id: uuid.UUID | None = None
    group_id: uuid.UUID | None = None

    @property
    def partition(self) -> str:
        if self.level == "user":
            return f"user:{self.owner_user_id}"
        if self.level == "project":
            return f"project:{self.project_id}"
        if self.level == "group":
            return f"group:{self.group_id}"
        return "global"

    @classmethod
    def of(cls, artifact: Artifact) -> Scope:
        return cls(artifact.scope_level, artifact.owner_user_id, artifact.project_id, artifact.group_id)


def make_scope(
    level: str | None,
    actor: Actor,
    *,
    owner_user_id: uuid.UUID | None = None,
    project_id: uuid.UUID | None = None,
    group_id: uuid.UUID | None = None,
) -> Scope:
    """The scope a request names; ``InvalidInput`` for a missing level or anchor (upstream's texts)."""
    if not level:
        raise InvalidInput("scope_level query parameter required")
    if level not in SCOPE_LEVELS:
        raise InvalidInput("scope_level must be one of: " + ", ".join(SCOPE_LEVELS))
    if level == "user":
        return Scope(level, owner_user_id=owner_user_id or actor.user_id)
    if level == "project":
        if project_id is None:
            raise InvalidInput("project_id query parameter required for project scope")
        return Scope(level, project_id=project_id)
    if level == "group":
        if group_id is None:
            raise InvalidInput("group_id query parameter required for group scope")
        return Scope(level, group_id=group_id)
    return Scope(level)


def clean_path(raw: str | None) -> str:
    """A logical path as upstream's ``SanitizePath`` makes it, with our limits; ``InvalidInput`` otherwise."""
    path = (raw or "").strip()
    if not path:
        raise InvalidInput("path required")
    if ".." in path:
        raise InvalidInput("path must not contain parent directory segments")
    if len(path) > MAX_PATH_CHARS or "\\" in path or any(ord(c) < 32 or ord(c) == 127 for c in path):
        raise InvalidInput(INVALID_PATH)
    if any(0xD800 <= ord(c) <= 0xDFFF for c in path):
        raise InvalidInput(INVALID_PATH)
    cleaned = posixpath.normpath("/" + path).lstrip("/")
    if not cleaned or cleaned == ".":
        raise InvalidInput("path required")
    return cleaned


def is_member(session: Session, user_id: uuid.UUID, project_id: uuid.UUID | None) -> bool:
    """Whether the user is a member of the project (this phase: it is their default project)."""
    if project_id is None:
        return False
    slug = session.scalar(select(Project.slug).where(Project.id == project_id))
    return slug == f"default-{user_id}"


def may_write(session: Session, actor: Actor, scope: Scope) -> bool:
    """Create, update and delete in ``scope``."""
    if scope.level == "user":
        return scope.owner_user_id == actor.user_id
    if scope.level == "project":
        return actor.admin or is_member(session, actor.user_id, scope.project_id)
    return actor.admin


def may_list(session: Session, actor: Actor, scope: Scope) -> bool:
    """List a partition: as write, for every level."""
    return may_write(session, actor, scope)


def may_read(session: Session, actor: Actor, artifact: Artifact) -> bool:
    """Read one artifact: the write rule, plus read grantees on user-scoped artifacts."""
    scope = Scope.of(artifact)
    if may_write(session, actor, scope):
        return True
    if scope.level != "user":
        return False
    granted = session.scalar(
        select(ArtifactReadGrant.id).where(
            ArtifactReadGrant.artifact_id == artifact.id, ArtifactReadGrant.grantee_user_id == actor.user_id
        )
    )
    return granted is not None
