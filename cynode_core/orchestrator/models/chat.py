"""Chat threads, their messages and the chat audit log (chat contract section 8)."""

from __future__ import annotations

import datetime as dt
import uuid
from typing import Any

from sqlalchemy import Boolean, CheckConstraint, DateTime, ForeignKey, Index, Integer, Text, Uuid, func, text
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.orm import Mapped, mapped_column

from cynode_core.orchestrator.db import Base, new_id

CHAT_ROLES = ("user", "assistant", "system")
CHAT_OUTCOMES = ("success", "error", "canceled", "timeout")


class ChatThread(Base):
    """One conversation of a user in a project; the active one of the pair is the newest ``last_activity_at``."""

    __tablename__ = "chat_threads"
    __table_args__ = (
        CheckConstraint("char_length(summary) <= 500", name="summary_length"),
        Index("idx_chat_threads_active", "user_id", "project_id", text("last_activity_at DESC")),
        Index("idx_chat_threads_user_updated", "user_id", text("updated_at DESC")),
    )

    id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True, default=new_id)
    user_id: Mapped[uuid.UUID] = mapped_column(Uuid, ForeignKey("users.id", ondelete="CASCADE"))
    project_id: Mapped[uuid.UUID] = mapped_column(Uuid, ForeignKey("projects.id"))
    session_id: Mapped[uuid.UUID | None] = mapped_column(Uuid)
    title: Mapped[str | None] = mapped_column(Text)
    summary: Mapped[str | None] = mapped_column(Text)
    archived_at: Mapped[dt.datetime | None] = mapped_column(DateTime(timezone=True))
    last_activity_at: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())
    created_at: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())
    updated_at: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())


class ChatMessage(Base):
    """One message of a thread, redacted; append-only."""

    __tablename__ = "chat_messages"
    __table_args__ = (
        CheckConstraint(f"role IN ({', '.join(repr(r) for r in CHAT_ROLES)})", name="role"),
        Index("idx_chat_messages_thread_created", "thread_id", "created_at"),
        Index(
            "idx_chat_messages_response_id",
            text("(metadata->>'response_id')"),
            postgresql_where=text("metadata->>'response_id' IS NOT NULL"),
        ),
    )

    id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True, default=new_id)
    thread_id: Mapped[uuid.UUID] = mapped_column(Uuid, ForeignKey("chat_threads.id", ondelete="CASCADE"))
    role: Mapped[str] = mapped_column(Text)
    content: Mapped[str] = mapped_column(Text)
    metadata_: Mapped[dict[str, Any] | None] = mapped_column("metadata", JSONB)
    created_at: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())


class ChatAuditLog(Base):
    """One row per authenticated chat request, whatever its outcome; never the content."""

    __tablename__ = "chat_audit_log"
    __table_args__ = (
        CheckConstraint(f"outcome IN ({', '.join(repr(o) for o in CHAT_OUTCOMES)})", name="outcome"),
        Index("idx_chat_audit_log_created_at", "created_at"),
        Index("idx_chat_audit_log_user_id", "user_id"),
        Index("idx_chat_audit_log_project_id", "project_id"),
    )

    id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True, default=new_id)
    created_at: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())
    user_id: Mapped[uuid.UUID | None] = mapped_column(Uuid, ForeignKey("users.id", ondelete="SET NULL"))
    project_id: Mapped[uuid.UUID | None] = mapped_column(Uuid, ForeignKey("projects.id", ondelete="SET NULL"))
    outcome: Mapped[str] = mapped_column(Text)
    error_code: Mapped[str | None] = mapped_column(Text)
    redaction_applied: Mapped[bool] = mapped_column(Boolean, server_default=text("false"))
    redaction_kinds: Mapped[list[str] | None] = mapped_column(JSONB)
    duration_ms: Mapped[int | None] = mapped_column(Integer)
    request_id: Mapped[str | None] = mapped_column(Text)
    thread_id: Mapped[uuid.UUID | None] = mapped_column(Uuid, ForeignKey("chat_threads.id", ondelete="SET NULL"))
    model: Mapped[str | None] = mapped_column(Text)
    route: Mapped[str | None] = mapped_column(Text)
    endpoint: Mapped[str | None] = mapped_column(Text)
    stream: Mapped[bool] = mapped_column(Boolean, server_default=text("false"))
    node_slug: Mapped[str | None] = mapped_column(Text)
    prompt_tokens: Mapped[int | None] = mapped_column(Integer)
    completion_tokens: Mapped[int | None] = mapped_column(Integer)
