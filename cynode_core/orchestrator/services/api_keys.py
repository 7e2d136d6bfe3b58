"""Personal API keys: create, list, revoke, and the user a presented key stands for.

A key is ``cyk_`` and 256 random bits (``secrets.token_urlsafe(32)``), shown
once when it is made. The database keeps the hex SHA-256 of the whole key
(a fast hash is enough for 256 random bits: there is nothing to guess) and
its first 12 characters for display, never the key. A key works until it is
revoked or expires, and only while its user is active, checked on every
request like a session (docs/wire_contract.md#api-keys). A user has at most
:data:`MAX_LIVE_KEYS` keys that still work. Creating and revoking are
audited every time; use moves ``last_used_at`` and writes an audit row at
most once a :data:`USE_MARK_SECONDS` per key, so a busy client does not
write a row per request.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import re
import secrets
import unicodedata
import uuid
from dataclasses import dataclass

from sqlalchemy import ColumnElement, func, or_, select, text, update
from sqlalchemy.orm import Session

from cynode_core.contract.errors import Conflict, InvalidInput, NotFound
from cynode_core.orchestrator.models import ApiKey, User
from cynode_core.orchestrator.services import audit
from cynode_core.orchestrator.services.audit import ClientInfo

KEY_PREFIX = "cyk_"
# ``secrets.token_urlsafe(32)``: 32 bytes as 43 characters of base64url.
KEY_PATTERN = re.compile(r"cyk_[A-Za-z0-9_-]{43}")
PREFIX_CHARS = 12
NAME_MAX_CHARS = 100
EXPIRES_MAX_DAYS = 3650
MAX_LIVE_KEYS = 100
USE_MARK_SECONDS = 60.0


@dataclass(frozen=True)
class NewKey:
    """A key just made: its row and the key itself, which is never available again."""

    row: ApiKey
    key: str


@dataclass(frozen=True)
class KeyUser:
    """The user a valid key stands for, and the key's id."""

    user: User
    key_id: uuid.UUID


def is_api_key(token: str) -> bool:
    """Whether a bearer token is meant as an API key (rather than a JWT)."""
    return token.startswith(KEY_PREFIX)


def key_hash(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


def _checked_name(name: str) -> str:
    name = name.strip()
    if not 1 <= len(name) <= NAME_MAX_CHARS or any(unicodedata.category(c) in ("Cc", "Cs") for c in name):
        raise InvalidInput(f"Name must be 1 to {NAME_MAX_CHARS} characters, without control characters")
    return name


def _checked_days(days: int | None) -> int | None:
    if days is not None and (isinstance(days, bool) or not isinstance(days, int) or not 1 <= days <= EXPIRES_MAX_DAYS):
        raise InvalidInput(f"expires_in_days must be a whole number from 1 to {EXPIRES_MAX_DAYS}")
    return days


def _live(now: dt.datetime) -> ColumnElement[bool]:
    """The condition of a key that still works (its user aside)."""
    return ApiKey.revoked_at.is_(None) & or_(ApiKey.expires_at.is_(None), ApiKey.expires_at > now)


def _audit(session: Session, event: str, user_id: uuid.UUID, key_id: uuid.UUID, client: ClientInfo | None) -> None:
    # The key's id names it in the log; the key (and its prefix) never appear.
    audit.record(
        session,
        event,
        success=True,
        user_id=user_id,
        ip_address=client.ip if client else None,
        user_agent=client.user_agent if client else None,
        reason=f"key {key_id}",
    )


def create(
    session: Session, user_id: uuid.UUID, name: str, expires_in_days: int | None, client: ClientInfo | None = None
) -> NewKey:
    """A new key of the user (409 past :data:`MAX_LIVE_KEYS` live ones); the caller commits."""
    name, days = _checked_name(name), _checked_days(expires_in_days)
    # One creation per user at a time, so two cannot both pass the count.
    session.execute(text("SELECT pg_advisory_xact_lock(hashtext(:k))"), {"k": f"api-keys:{user_id}"})
    now = dt.datetime.now(dt.UTC)
    live = session.scalar(select(func.count()).select_from(ApiKey).where(ApiKey.user_id == user_id, _live(now)))
    if (live or 0) >= MAX_LIVE_KEYS:
        raise Conflict(f"At most {MAX_LIVE_KEYS} API keys may be live at once; revoke one first")
    key = KEY_PREFIX + secrets.token_urlsafe(32)
    row = ApiKey(
        user_id=user_id,
        name=name,
        prefix=key[:PREFIX_CHARS],
        key_hash=key_hash(key),
        created_at=now,
        expires_at=now + dt.timedelta(days=days) if days else None,
    )
    session.add(row)
    session.flush()
    _audit(session, "api_key_created", user_id, row.id, client)
    return NewKey(row, key)


def list_keys(session: Session, user_id: uuid.UUID) -> list[ApiKey]:
    """Every key of the user, revoked and expired ones included, newest first."""
    return list(
        session.scalars(
            select(ApiKey).where(ApiKey.user_id == user_id).order_by(ApiKey.created_at.desc(), ApiKey.id.desc())
        )
    )


def revoke(session: Session, user_id: uuid.UUID, key_id: uuid.UUID, client: ClientInfo | None = None) -> None:
    """Revoke one of the user's keys at once; one already revoked stays as it is. 404 for anyone else's."""
    revoked = session.execute(
        update(ApiKey)
        .where(ApiKey.id == key_id, ApiKey.user_id == user_id, ApiKey.revoked_at.is_(None))
        .values(revoked_at=dt.datetime.now(dt.UTC))
        .returning(ApiKey.id)
        .execution_options(synchronize_session=False)
    ).first()
    if revoked is not None:
        _audit(session, "api_key_revoked", user_id, key_id, client)
        return
    if session.scalar(select(ApiKey.id).where(ApiKey.id == key_id, ApiKey.user_id == user_id)) is None:
        raise NotFound("No such API key")


def revoke_all(session: Session, user_id: uuid.UUID, *, reason: str) -> int:
    """Revoke every live key of the user (disabling a user does); how many were revoked."""
    result = session.execute(
        update(ApiKey)
        .where(ApiKey.user_id == user_id, ApiKey.revoked_at.is_(None))
        .values(revoked_at=dt.datetime.now(dt.UTC))
        .execution_options(synchronize_session=False)
    )
    count = int(result.rowcount or 0)  # type: ignore[attr-defined]
    if count:
        audit.record(session, "api_key_revoked", success=True, user_id=user_id, reason=f"{count} keys: {reason}")
    return count


def user_for_key(session: Session, key: str, client: ClientInfo | None = None) -> KeyUser | None:
    """The active user a live key stands for, else ``None``; marks the key used (once a minute).

    One indexed query per request; a second statement, an update that only
    one request per key and minute wins (on any orchestrator), moves
    ``last_used_at`` and writes the ``api_key_used`` audit row.
    """
    if not KEY_PATTERN.fullmatch(key):
        return None
    now = dt.datetime.now(dt.UTC)
    found = session.execute(
        select(ApiKey.id, ApiKey.last_used_at, User)
        .join(User, User.id == ApiKey.user_id)
        .where(ApiKey.key_hash == key_hash(key), _live(now), User.is_active.is_(True))
    ).first()
    if found is None:
        return None
    key_id, last_used_at, user = found
    due = now - dt.timedelta(seconds=USE_MARK_SECONDS)
    if last_used_at is None or last_used_at <= due:
        marked = session.execute(
            update(ApiKey)
            .where(ApiKey.id == key_id, or_(ApiKey.last_used_at.is_(None), ApiKey.last_used_at <= due))
            .values(last_used_at=now)
            .returning(ApiKey.id)
            .execution_options(synchronize_session=False)
        ).first()
        if marked is not None:
            _audit(session, "api_key_used", user.id, key_id, client)
    return KeyUser(user, key_id)
