"""Agent tokens: mint, resolve, revoke (mcp_contract.md 3).

A token is ``cyat_`` and 256 random bits (``secrets.token_urlsafe(32)``),
shown once when it is minted. The database keeps only its SHA-256. It is
bound to one user and one role (``pm``, ``pa``, ``sandbox``) and, as
applicable, to a project, thread, task and job; identity and scope always
come from the token, never from a tool's arguments. It works while it is not
revoked, not expired, and its user is active.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import re
import secrets
import uuid
from dataclasses import dataclass
from typing import Literal

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from cynode_core.orchestrator.models import AgentToken, User

TOKEN_PREFIX = "cyat_"
# ``secrets.token_urlsafe(32)``: 32 bytes as 43 characters of base64url.
TOKEN_PATTERN = re.compile(r"cyat_[A-Za-z0-9_-]{43}")

Role = Literal["pm", "pa", "sandbox"]


@dataclass(frozen=True)
class Principal:
    """Who calls: a valid agent token, its user and bindings (mcp_contract.md 3)."""

    token_id: uuid.UUID
    role: Role
    user_id: uuid.UUID
    project_id: uuid.UUID | None = None
    thread_id: uuid.UUID | None = None
    task_id: uuid.UUID | None = None
    job_id: uuid.UUID | None = None
    invocation_class: str | None = None


@dataclass(frozen=True)
class Binding:
    """What a new token is bound to besides its user and role."""

    project_id: uuid.UUID | None = None
    thread_id: uuid.UUID | None = None
    task_id: uuid.UUID | None = None
    job_id: uuid.UUID | None = None
    invocation_class: str | None = None


@dataclass(frozen=True)
class MintedToken:
    """A token just minted: its row and the token itself, which is never available again."""

    row: AgentToken
    token: str


def is_agent_token(bearer: str) -> bool:
    """Whether a bearer token is meant as an agent token (rather than a JWT or an API key)."""
    return bearer.startswith(TOKEN_PREFIX)


def token_hash(token: str) -> bytes:
    return hashlib.sha256(token.encode()).digest()


def mint(
    session: Session,
    *,
    role: Role,
    user_id: uuid.UUID,
    lifetime_seconds: float,
    issued_by: str,
    binding: Binding | None = None,
) -> MintedToken:
    """A new token of ``role`` for ``user_id``, valid ``lifetime_seconds`` from now (the caller checks the bindings)."""
    bound = binding or Binding()
    token = TOKEN_PREFIX + secrets.token_urlsafe(32)
    row = AgentToken(
        token_hash=token_hash(token),
        role=role,
        user_id=user_id,
        project_id=bound.project_id,
        thread_id=bound.thread_id,
        task_id=bound.task_id,
        job_id=bound.job_id,
        invocation_class=bound.invocation_class,
        issued_by=issued_by,
        expires_at=dt.datetime.now(dt.UTC) + dt.timedelta(seconds=lifetime_seconds),
    )
    session.add(row)
    session.flush()
    return MintedToken(row, token)


def resolve(session: Session, token: str) -> Principal | None:
    """The principal of a valid token; None when it is malformed, unknown, revoked, expired or its user inactive."""
    if not TOKEN_PATTERN.fullmatch(token):
        return None
    row = session.execute(
        select(AgentToken)
        .join(User, User.id == AgentToken.user_id)
        .where(
            AgentToken.token_hash == token_hash(token),
            AgentToken.revoked_at.is_(None),
            AgentToken.expires_at > dt.datetime.now(dt.UTC),
            User.is_active.is_(True),
        )
    ).scalar_one_or_none()
    if row is None:
        return None
    return Principal(
        token_id=row.id,
        role=row.role,  # type: ignore[arg-type]
        user_id=row.user_id,
        project_id=row.project_id,
        thread_id=row.thread_id,
        task_id=row.task_id,
        job_id=row.job_id,
        invocation_class=row.invocation_class,
    )


def revoke(session: Session, token_id: uuid.UUID, reason: str) -> bool:
    """Revoke a token (idempotent); False when no such token exists."""
    row = session.get(AgentToken, token_id)
    if row is None:
        return False
    session.execute(
        update(AgentToken)
        .where(AgentToken.id == token_id, AgentToken.revoked_at.is_(None))
        .values(revoked_at=dt.datetime.now(dt.UTC), revoked_reason=reason)
    )
    return True
