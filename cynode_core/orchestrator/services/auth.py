"""Login, refresh rotation with reuse detection, logout, and per-request session checks.

Token signing lives in the API layer (flask-jwt-extended); this module gets a
``TokenIssuer`` and decides everything else. Audit rows of refused attempts
are committed before the error is raised, so a refusal is never lost.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

from sqlalchemy import Row, bindparam, exists, func, select, update
from sqlalchemy.orm import Session

from cynode_core.contract import Identity
from cynode_core.contract.errors import NotAuthenticated
from cynode_core.orchestrator.models import PasswordCredential, RefreshSession, User
from cynode_core.orchestrator.services import accounts, audit, rate_limits
from cynode_core.orchestrator.services.audit import ClientInfo
from cynode_core.orchestrator.settings import OrchestratorSettings


@dataclass(frozen=True)
class IssuedPair:
    access_token: str
    refresh_token: str
    refresh_expires_at: dt.datetime


Authenticate = Callable[[str, str], Identity | None]


class TokenIssuer(Protocol):
    def user_pair(self, user_id: uuid.UUID, handle: str, family_id: uuid.UUID) -> IssuedPair: ...


def token_hash(token: str) -> bytes:
    return hashlib.sha256(token.encode()).digest()


def _audit_and_refuse(session: Session, exc: Exception, event: str, client: ClientInfo, **fields: object) -> Exception:
    audit.record(session, event, success=False, ip_address=client.ip, user_agent=client.user_agent, **fields)  # type: ignore[arg-type]
    session.commit()
    return exc


def _start_session(session: Session, issuer: TokenIssuer, user: User, family_id: uuid.UUID) -> IssuedPair:
    pair = issuer.user_pair(user.id, user.handle, family_id)
    session.add(
        RefreshSession(
            user_id=user.id,
            family_id=family_id,
            refresh_token_hash=token_hash(pair.refresh_token),
            is_active=True,
            expires_at=pair.refresh_expires_at,
        )
    )
    return pair


def check_login_source(session: Session, settings: OrchestratorSettings, client: ClientInfo) -> None:
    """Count a login attempt for the client address; 429 past its limits (services/rate_limits)."""
    rate_limits.check_login_source(session, settings, client)


def check_refresh_source(session: Session, settings: OrchestratorSettings, client: ClientInfo) -> None:
    """Count a refresh attempt for the client address; 429 past the per-minute limit."""
    rate_limits.count_attempt(
        session,
        rate_limits.REFRESH_ATTEMPTS,
        settings.refresh_rate_per_minute,
        "Too many refresh attempts",
        "refresh_failure",
        client,
    )


def login(
    session: Session,
    authenticate: Authenticate,
    settings: OrchestratorSettings,
    issuer: TokenIssuer,
    handle: str,
    password: str,
    client: ClientInfo,
) -> IssuedPair:
    """Check the password with ``authenticate`` (the ``cynode_authenticate`` hook) and open a session family.

    An address that has been failing on this account may have to wait first
    (429); other addresses never do (services/rate_limits). The session's
    connection goes back to the pool before the password check, which may
    wait its turn (services/password_checks) and take a fifth of a second.
    """
    rate_limits.check_account(session, settings, handle, client)
    session.commit()  # ends the read: no connection is held through the check
    identity = authenticate(handle, password)
    user = accounts.user_for_identity(session, identity) if identity is not None else None
    if user is None or not user.is_active:
        reason, user_id = _failure_reason(session, handle, identity is not None)
        rate_limits.record_failure(session, settings, handle, client)
        raise _audit_and_refuse(
            session,
            NotAuthenticated("Invalid credentials"),
            "login_failure",
            client,
            subject_handle=handle,
            reason=reason,
            user_id=user_id,
        )
    rate_limits.record_success(session, handle, client)
    pair = _start_session(session, issuer, user, uuid.uuid4())
    audit.record(
        session,
        "login_success",
        success=True,
        user_id=user.id,
        subject_handle=handle,
        ip_address=client.ip,
        user_agent=client.user_agent,
    )
    session.commit()
    return pair


def _failure_reason(session: Session, handle: str, vouched: bool) -> tuple[str, uuid.UUID | None]:
    row = session.execute(
        select(User.id, User.is_active, PasswordCredential.id)
        .outerjoin(PasswordCredential, PasswordCredential.user_id == User.id)
        .where(User.handle == handle)
    ).first()
    if row is None:
        return ("identity refused" if vouched else "user not found"), None
    if not row[1]:
        return "user inactive", row[0]
    if row[2] is None:
        return "no password credential", row[0]
    return "invalid password", row[0]


def refresh(
    session: Session, issuer: TokenIssuer, refresh_token: str, claims: dict | None, client: ClientInfo
) -> IssuedPair:
    """Rotate a refresh token. ``claims`` is ``None`` when the JWT did not verify.

    Presenting a token that was already rotated is a replay: the whole
    family (every session descended from that login) is revoked.
    """
    if claims is None:
        raise _audit_and_refuse(
            session, NotAuthenticated("Invalid refresh token"), "refresh_failure", client, reason="invalid token"
        )
    row = session.scalar(
        select(RefreshSession).where(RefreshSession.refresh_token_hash == token_hash(refresh_token)).with_for_update()
    )
    now = dt.datetime.now(dt.UTC)
    if row is None or row.expires_at <= now:
        raise _audit_and_refuse(
            session,
            NotAuthenticated("Invalid refresh token"),
            "refresh_failure",
            client,
            reason="session not found",
            user_id=row.user_id if row else None,
        )
    if not row.is_active:
        if row.ended_reason == "rotated":
            session.execute(
                update(RefreshSession)
                .where(RefreshSession.family_id == row.family_id, RefreshSession.is_active.is_(True))
                .values(is_active=False, ended_reason="reuse")
            )
            reason = "reuse of rotated refresh token; session family revoked"
        else:
            reason = "session not found"
        raise _audit_and_refuse(
            session,
            NotAuthenticated("Invalid refresh token"),
            "refresh_failure",
            client,
            reason=reason,
            user_id=row.user_id,
        )
    row.is_active = False
    row.ended_reason = "rotated"
    row.last_used_at = now
    user = session.get(User, row.user_id)
    if user is None:
        raise _audit_and_refuse(
            session, NotAuthenticated("User not found"), "refresh_failure", client, reason="user not found"
        )
    if not user.is_active:
        raise _audit_and_refuse(
            session,
            NotAuthenticated("Account is disabled"),
            "refresh_failure",
            client,
            reason="user inactive",
            user_id=user.id,
        )
    pair = _start_session(session, issuer, user, row.family_id)
    audit.record(
        session,
        "refresh_success",
        success=True,
        user_id=user.id,
        subject_handle=user.handle,
        ip_address=client.ip,
        user_agent=client.user_agent,
    )
    session.commit()
    return pair


def logout(
    session: Session, user_id: uuid.UUID, family_id: uuid.UUID, refresh_token: str | None, client: ClientInfo
) -> None:
    """End the caller's session family, and the given refresh token's session if it is the caller's."""
    session.execute(
        update(RefreshSession)
        .where(RefreshSession.family_id == family_id, RefreshSession.is_active.is_(True))
        .values(is_active=False, ended_reason="logout")
    )
    if refresh_token:
        session.execute(
            update(RefreshSession)
            .where(
                RefreshSession.refresh_token_hash == token_hash(refresh_token),
                RefreshSession.user_id == user_id,
                RefreshSession.is_active.is_(True),
            )
            .values(is_active=False, ended_reason="logout")
        )
    audit.record(session, "logout", success=True, user_id=user_id, ip_address=client.ip, user_agent=client.user_agent)
    session.commit()


# Built once: SQLAlchemy then reuses its cache key and compiled form on every request.
_LIVE_USER = select(User.id, User.handle).where(
    User.id == bindparam("user_id"),
    User.is_active.is_(True),
    exists().where(
        RefreshSession.family_id == bindparam("family_id"),
        RefreshSession.user_id == User.id,
        RefreshSession.is_active.is_(True),
        RefreshSession.expires_at > func.now(),
    ),
)


def live_user(session: Session, user_id: uuid.UUID, family_id: uuid.UUID) -> Row[uuid.UUID, str] | None:
    """The ``(id, handle)`` of the user behind an access token, or ``None`` if disabled or the session is over.

    One indexed query per request (docs/wire_contract.md#tokens).
    """
    return session.execute(_LIVE_USER, {"user_id": user_id, "family_id": family_id}).first()
