"""Agent tokens: mint, resolve, revoke (mcp_contract.md 3).

A token is ``cyat_`` and 256 random bits (``secrets.token_urlsafe(32)``),
shown once when it is minted. The database keeps only its SHA-256. It is
bound to one user and one role (``pm``, ``pa``, ``sandbox``) and, as
applicable, to a project, thread, task and job; identity and scope always
come from the token, never from a tool's arguments. It works while it is not
revoked, not expired, and its user is active.

:func:`issue` is the administrator's way to a token of any role
(``POST /v1/admin/agent-tokens``, ``cynode admin agent-token create``): it
checks the request against mcp_contract.md 3.2 (an active user other than
``system``, bindings that belong to that user, the job to the task, a task
for a sandbox token) and audits ``agent_token_issued``; :func:`revoke_issued`
is its revocation, audited ``agent_token_revoked``.
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

from cynode_core.contract.errors import InvalidInput, NotFound
from cynode_core.orchestrator.models import AgentToken, ChatThread, Job, Task, User
from cynode_core.orchestrator.models.agents import AGENT_ROLES, INVOCATION_CLASSES
from cynode_core.orchestrator.services import audit
from cynode_core.orchestrator.services.accounts import SYSTEM_HANDLE
from cynode_core.orchestrator.services.audit import ClientInfo
from cynode_core.orchestrator.services.tasks import default_project

TOKEN_PREFIX = "cyat_"
# ``secrets.token_urlsafe(32)``: 32 bytes as 43 characters of base64url.
TOKEN_PATTERN = re.compile(r"cyat_[A-Za-z0-9_-]{43}")

Role = Literal["pm", "pa", "sandbox"]

# Lifetimes of an administrator's token (seconds).
TTL_MIN, TTL_MAX, TTL_DEFAULT = 60, 86_400, 3_600
ADMIN_INVOCATION_CLASS = "orchestrator_initiated"


@dataclass(frozen=True)
class Binding:
    """What a new token is bound to besides its user and role."""

    project_id: uuid.UUID | None = None
    thread_id: uuid.UUID | None = None
    task_id: uuid.UUID | None = None
    job_id: uuid.UUID | None = None
    invocation_class: str | None = None


@dataclass(frozen=True, kw_only=True)
class Principal(Binding):
    """Who calls: a valid agent token, its user and role, and what it is bound to (mcp_contract.md 3)."""

    token_id: uuid.UUID
    role: Role
    user_id: uuid.UUID


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


def _revoke_live(session: Session, token_id: uuid.UUID, reason: str) -> bool:
    """Revoke a token not revoked yet; whether this call revoked it."""
    revoked = session.execute(
        update(AgentToken)
        .where(AgentToken.id == token_id, AgentToken.revoked_at.is_(None))
        .values(revoked_at=dt.datetime.now(dt.UTC), revoked_reason=reason)
        .returning(AgentToken.id)
        .execution_options(synchronize_session=False)
    ).first()
    return revoked is not None


def revoke(session: Session, token_id: uuid.UUID, reason: str) -> bool:
    """Revoke a token (idempotent); False when no such token exists."""
    return _revoke_live(session, token_id, reason) or session.get(AgentToken, token_id) is not None


@dataclass(frozen=True)
class TokenRequest:
    """What an administrator asks for (mcp_contract.md 3.2)."""

    role: str
    user_id: uuid.UUID
    binding: Binding
    ttl_seconds: int = TTL_DEFAULT


def _refuse_unless(condition: bool, detail: str) -> None:
    if not condition:
        raise InvalidInput(detail)


def _checked(session: Session, request: TokenRequest) -> Binding:
    """The request's binding, completed (a pm token's invocation class), once every rule of 3.2 holds."""
    bound = request.binding
    _refuse_unless(request.role in AGENT_ROLES, f"role must be one of {', '.join(AGENT_ROLES)}")
    ttl = request.ttl_seconds
    _refuse_unless(
        isinstance(ttl, int) and not isinstance(ttl, bool) and TTL_MIN <= ttl <= TTL_MAX,
        f"ttl_seconds must be a whole number from {TTL_MIN} to {TTL_MAX}",
    )
    user = session.get(User, request.user_id)
    _refuse_unless(
        user is not None and user.is_active and user.handle != SYSTEM_HANDLE,
        "user_id must name an active user (not system)",
    )
    invocation_class = bound.invocation_class
    if request.role == "pm":
        invocation_class = invocation_class or ADMIN_INVOCATION_CLASS
        _refuse_unless(
            invocation_class in INVOCATION_CLASSES, f"invocation_class must be one of {', '.join(INVOCATION_CLASSES)}"
        )
    else:
        _refuse_unless(invocation_class is None, "invocation_class is for pm tokens only")
    _refuse_unless(request.role != "sandbox" or bound.task_id is not None, "a sandbox token needs task_id")
    _refuse_unless(bound.job_id is None or bound.task_id is not None, "job_id needs task_id")
    if bound.project_id is not None:
        _refuse_unless(
            bound.project_id == default_project(session, request.user_id), "project_id is not a project of the user"
        )
    if bound.thread_id is not None:
        thread = session.get(ChatThread, bound.thread_id)
        _refuse_unless(
            thread is not None and thread.user_id == request.user_id, "thread_id is not a thread of the user"
        )
    if bound.task_id is not None:
        task = session.get(Task, bound.task_id)
        _refuse_unless(task is not None and task.created_by == request.user_id, "task_id is not a task of the user")
    if bound.job_id is not None:
        job = session.get(Job, bound.job_id)
        _refuse_unless(job is not None and job.task_id == bound.task_id, "job_id is not a job of that task")
    return Binding(bound.project_id, bound.thread_id, bound.task_id, bound.job_id, invocation_class)


def issue(session: Session, request: TokenRequest, issued_by: str, client: ClientInfo | None = None) -> MintedToken:
    """An administrator's token, checked (400 ``InvalidInput`` naming the broken rule) and audited."""
    binding = _checked(session, request)
    minted = mint(
        session,
        role=request.role,  # type: ignore[arg-type]
        user_id=request.user_id,
        lifetime_seconds=request.ttl_seconds,
        issued_by=issued_by,
        binding=binding,
    )
    audit.record(
        session,
        "agent_token_issued",
        success=True,
        user_id=request.user_id,
        ip_address=client.ip if client else None,
        user_agent=client.user_agent if client else None,
        reason=request.role,
    )
    return minted


def revoke_issued(session: Session, token_id: uuid.UUID, revoked_by: str, client: ClientInfo | None = None) -> None:
    """Revoke a token at once (one already revoked stays as it is); 404 for an unknown id. Audited when it revokes."""
    if not _revoke_live(session, token_id, f"revoked by {revoked_by}"):
        if session.get(AgentToken, token_id) is None:
            raise NotFound("No such agent token")
        return
    row = session.get(AgentToken, token_id)
    audit.record(
        session,
        "agent_token_revoked",
        success=True,
        user_id=row.user_id if row else None,
        ip_address=client.ip if client else None,
        user_agent=client.user_agent if client else None,
        reason=f"token {token_id} revoked by {revoked_by}",
    )
