"""Users: bootstrap accounts, lookups, admin changes."""

from __future__ import annotations

import logging
import secrets
import uuid
from pathlib import Path

from sqlalchemy import func, select, update
from sqlalchemy.orm import Session

from cynode_core.contract import Identity
from cynode_core.contract.errors import Conflict, NotFound
from cynode_core.orchestrator.models import PasswordCredential, RefreshSession, User
from cynode_core.orchestrator.services import api_keys, audit, rate_limits
from cynode_core.orchestrator.services.passwords import HASH_ALG, hash_password
from cynode_core.private_files import write_private

log = logging.getLogger(__name__)

ADMIN_HANDLE = "admin"
SYSTEM_HANDLE = "system"


def ensure_bootstrap_users(session: Session, admin_password: str | None, password_file: Path | None) -> str | None:
    """Create ``admin`` (when no admin exists) and the reserved ``system`` user.

    Returns a message to print when a password was generated: the file's
    path, never the password.
    """
    message = None
    if session.scalar(select(User.id).where(User.handle == SYSTEM_HANDLE)) is None:
        session.add(User(handle=SYSTEM_HANDLE, is_active=False))
    if session.scalar(select(User.id).where(User.handle == ADMIN_HANDLE)) is None:
        password = admin_password
        if password is None:
            assert password_file is not None
            if password_file.exists() and password_file.read_text().strip():
                password = password_file.read_text().strip()
            else:
                password = secrets.token_urlsafe(18)
                write_private(password_file, password)
            message = f"bootstrap admin password stored in {password_file}"
        create_user(session, ADMIN_HANDLE, password)
    session.flush()
    return message


def create_user(session: Session, handle: str, password: str | None, *, email: str | None = None) -> User:
    if session.scalar(select(User.id).where(User.handle == handle)) is not None:
        raise Conflict(f"user {handle!r} already exists")
    user = User(handle=handle, email=email, is_active=True)
    session.add(user)
    session.flush()
    if password is not None:
        session.add(PasswordCredential(user_id=user.id, password_hash=hash_password(password), hash_alg=HASH_ALG))
    return user


def set_password(session: Session, handle: str, password: str) -> None:
    user = get_by_handle(session, handle)
    cred = session.scalar(select(PasswordCredential).where(PasswordCredential.user_id == user.id))
    if cred is None:
        session.add(PasswordCredential(user_id=user.id, password_hash=hash_password(password), hash_alg=HASH_ALG))
    else:
        cred.password_hash = hash_password(password)
        cred.hash_alg = HASH_ALG


def get_by_handle(session: Session, handle: str) -> User:
    user = session.scalar(select(User).where(User.handle == handle))
    if user is None:
        raise NotFound(f"no user {handle!r}")
    return user


def set_active(session: Session, handle: str, active: bool) -> User:
    """Enable or disable a user; disabling also ends every session and revokes every API key at once."""
    user = get_by_handle(session, handle)
    user.is_active = active
    if not active:
        revoke_sessions(session, user.id, reason="user disabled")
        api_keys.revoke_all(session, user.id, reason="user disabled")
    return user


def unlock(session: Session, handle: str) -> User:
    """End the slow-down of a user's failed logins for every address (``cynode admin user unlock``)."""
    user = get_by_handle(session, handle)
    cleared = rate_limits.unlock(session, handle)
    audit.record(
        session,
        "account_unlocked",
        success=True,
        user_id=user.id,
        subject_handle=handle,
        reason=f"{cleared} failed-login counters cleared",
    )
    return user


def revoke_sessions(session: Session, user_id: uuid.UUID, *, reason: str) -> int:
    result = session.execute(
        update(RefreshSession)
        .where(RefreshSession.user_id == user_id, RefreshSession.is_active.is_(True))
        .values(is_active=False, ended_reason="revoked")
    )
    audit.record(session, "session_revoked", success=True, user_id=user_id, reason=reason)
    return int(result.rowcount or 0)  # type: ignore[attr-defined]


def list_users(session: Session) -> list[User]:
    return list(session.scalars(select(User).order_by(User.created_at, User.handle)))


def user_for_identity(session: Session, identity: Identity) -> User | None:
    """The users row an authenticated identity stands for, created for a new external one."""
    if identity.user_id is not None:
        return session.get(User, uuid.UUID(str(identity.user_id)))
    if identity.external_source and identity.external_id:
        user = session.scalar(
            select(User).where(
                User.external_source == identity.external_source, User.external_id == identity.external_id
            )
        )
        if user is not None:
            return user
    existing = session.scalar(select(User).where(User.handle == identity.handle))
    if existing is not None:
        # A local account with that handle is not taken over by another provider.
        if existing.external_source != identity.external_source:
            log.warning(
                "identity provider %s claims existing handle %r; refused", identity.external_source, identity.handle
            )
            return None
        return existing
    user = User(
        handle=identity.handle,
        email=identity.email,
        is_active=True,
        external_source=identity.external_source,
        external_id=identity.external_id,
    )
    session.add(user)
    session.flush()
    return user


def count_users(session: Session) -> int:
    return int(session.scalar(select(func.count()).select_from(User)) or 0)
