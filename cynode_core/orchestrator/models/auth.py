"""Users, their credentials, refresh sessions, personal API keys and the auth audit log."""

from __future__ import annotations

import datetime as dt
import uuid

from sqlalchemy import (
    Boolean,
    CheckConstraint,
    DateTime,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    Text,
    Uuid,
    func,
    text,
)
from sqlalchemy.orm import Mapped, mapped_column

from cynode_core.orchestrator.db import Base, new_id


class TimestampMixin:
    created_at: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())
    updated_at: Mapped[dt.datetime] = mapped_column(
        DateTime(timezone=True), server_default=func.now(), onupdate=func.now()
    )


class User(TimestampMixin, Base):
    __tablename__ = "users"
    __table_args__ = (
        Index("idx_users_email", "email", unique=True, postgresql_where=text("email IS NOT NULL")),
        Index("idx_users_is_active", "is_active"),
    )

    id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True, default=new_id)
    handle: Mapped[str] = mapped_column(Text, unique=True)
    email: Mapped[str | None] = mapped_column(Text)
    is_active: Mapped[bool] = mapped_column(Boolean, server_default=text("true"), default=True)
    external_source: Mapped[str | None] = mapped_column(Text)
    external_id: Mapped[str | None] = mapped_column(Text)


class PasswordCredential(TimestampMixin, Base):
    __tablename__ = "password_credentials"

    id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True, default=new_id)
    user_id: Mapped[uuid.UUID] = mapped_column(Uuid, ForeignKey("users.id", ondelete="CASCADE"), unique=True)
    password_hash: Mapped[bytes] = mapped_column(LargeBinary)
    hash_alg: Mapped[str] = mapped_column(Text)


class RefreshSession(TimestampMixin, Base):
    """One refresh token. Rotation deactivates it and adds the next one in the same family.

    ``family_id`` is the id carried by the access tokens as the session claim:
    a family with no active, unexpired row is over (logged out, revoked or
    caught replaying a rotated token), and its access tokens are refused.
    """

    __tablename__ = "refresh_sessions"
    __table_args__ = (
        Index("idx_refresh_sessions_user_id", "user_id"),
        Index("idx_refresh_sessions_active_expires", "is_active", "expires_at"),
        Index("idx_refresh_sessions_token_hash", "refresh_token_hash", unique=True),
        Index("idx_refresh_sessions_family", "family_id", "is_active"),
        Index("idx_refresh_sessions_expires_at", "expires_at"),
    )

    id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True, default=new_id)
    user_id: Mapped[uuid.UUID] = mapped_column(Uuid, ForeignKey("users.id", ondelete="CASCADE"))
    family_id: Mapped[uuid.UUID] = mapped_column(Uuid)
    refresh_token_hash: Mapped[bytes] = mapped_column(LargeBinary)
    refresh_token_kid: Mapped[str | None] = mapped_column(Text)
    is_active: Mapped[bool] = mapped_column(Boolean, server_default=text("true"), default=True)
    ended_reason: Mapped[str | None] = mapped_column(Text)
    expires_at: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True))
    last_used_at: Mapped[dt.datetime | None] = mapped_column(DateTime(timezone=True))


class ApiKey(Base):
    """A personal API key: a static bearer credential of one user (services/api_keys).

    The key itself is never stored: ``key_hash`` is the hex SHA-256 of the
    whole key, ``prefix`` its first characters, for telling keys apart. A key
    works until ``revoked_at`` or ``expires_at``, and only while its user is
    active. ``last_used_at`` moves at most once a minute.
    """

    __tablename__ = "api_keys"
    __table_args__ = (
        CheckConstraint("char_length(name) BETWEEN 1 AND 100", name="name_length"),
        Index("idx_api_keys_user_id", "user_id"),
    )

    id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True, default=new_id)
    user_id: Mapped[uuid.UUID] = mapped_column(Uuid, ForeignKey("users.id", ondelete="CASCADE"))
    name: Mapped[str] = mapped_column(Text)
    prefix: Mapped[str] = mapped_column(Text)
    key_hash: Mapped[str] = mapped_column(Text, unique=True)
    created_at: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())
    expires_at: Mapped[dt.datetime | None] = mapped_column(DateTime(timezone=True))
    last_used_at: Mapped[dt.datetime | None] = mapped_column(DateTime(timezone=True))
    revoked_at: Mapped[dt.datetime | None] = mapped_column(DateTime(timezone=True))


class AuthAuditLog(Base):
    __tablename__ = "auth_audit_log"
    __table_args__ = (
        Index("idx_auth_audit_log_created_at", "created_at"),
        Index("idx_auth_audit_log_user_id", "user_id"),
        Index("idx_auth_audit_log_event_type", "event_type"),
    )

    id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True, default=new_id)
    user_id: Mapped[uuid.UUID | None] = mapped_column(Uuid, ForeignKey("users.id", ondelete="SET NULL"))
    event_type: Mapped[str] = mapped_column(Text)
    success: Mapped[bool] = mapped_column(Boolean)
    subject_handle: Mapped[str | None] = mapped_column(Text)
    ip_address: Mapped[str | None] = mapped_column(Text)
    user_agent: Mapped[str | None] = mapped_column(Text)
    reason: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())


class RateLimitCounter(Base):
    """A fixed-window counter shared by every orchestrator on the database.

    Keys name the limit and what it counts, e.g. ``login-ip:<address>`` (services/rate_limits).
    """

    __tablename__ = "rate_limit_counters"
    __table_args__ = (Index("idx_rate_limit_counters_window_start", "window_start"),)

    key: Mapped[str] = mapped_column(Text, primary_key=True)
    window_start: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())
    count: Mapped[int] = mapped_column(Integer, server_default=text("0"), default=0)
