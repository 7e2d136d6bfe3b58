"""Agent tokens and the MCP tool-call audit log (mcp_contract.md sections 3.1 and 8)."""

from __future__ import annotations

import datetime as dt
import uuid
from typing import Any

from sqlalchemy import CheckConstraint, DateTime, ForeignKey, Index, Integer, LargeBinary, Text, Uuid, func
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.orm import Mapped, mapped_column

from cynode_core.orchestrator.db import Base, new_id

AGENT_ROLES = ("pm", "pa", "sandbox")
INVOCATION_CLASSES = ("user_gateway_session", "orchestrator_initiated")


def _one_of(column: str, values: tuple[str, ...]) -> str:
    return f"{column} IN ({', '.join(repr(v) for v in values)})"


class AgentToken(Base):
    """A credential an agent calls the MCP gateway with: one user, one role, optional bindings.

    Only the SHA-256 of the token string is kept. A token is valid while it
    is not revoked, not expired, and its user is active.
    """

    __tablename__ = "agent_tokens"
    __table_args__ = (
        CheckConstraint(_one_of("role", AGENT_ROLES), name="role"),
        CheckConstraint(
            f"invocation_class IS NULL OR {_one_of('invocation_class', INVOCATION_CLASSES)}", name="invocation_class"
        ),
        CheckConstraint("role <> 'pm' OR invocation_class IS NOT NULL", name="pm_invocation_class"),
        Index("idx_agent_tokens_user_id", "user_id"),
        Index("idx_agent_tokens_expires_at", "expires_at"),
        Index("idx_agent_tokens_job_id", "job_id"),
    )

    id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True, default=new_id)
    token_hash: Mapped[bytes] = mapped_column(LargeBinary, unique=True)
    role: Mapped[str] = mapped_column(Text)
    user_id: Mapped[uuid.UUID] = mapped_column(Uuid, ForeignKey("users.id", ondelete="CASCADE"))
    project_id: Mapped[uuid.UUID | None] = mapped_column(Uuid, ForeignKey("projects.id", ondelete="CASCADE"))
    thread_id: Mapped[uuid.UUID | None] = mapped_column(Uuid, ForeignKey("chat_threads.id", ondelete="CASCADE"))
    task_id: Mapped[uuid.UUID | None] = mapped_column(Uuid, ForeignKey("tasks.id", ondelete="CASCADE"))
    job_id: Mapped[uuid.UUID | None] = mapped_column(Uuid, ForeignKey("jobs.id", ondelete="CASCADE"))
    invocation_class: Mapped[str | None] = mapped_column(Text)
    issued_by: Mapped[str] = mapped_column(Text)
    created_at: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())
    expires_at: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True))
    revoked_at: Mapped[dt.datetime | None] = mapped_column(DateTime(timezone=True))
    revoked_reason: Mapped[str | None] = mapped_column(Text)


class McpToolCallAudit(Base):
    """One authenticated MCP tool call, allowed or denied; never its arguments or result (append-only).

    No foreign keys: a denial naming a task that does not exist is recorded too.
    """

    __tablename__ = "mcp_tool_call_audit_log"
    __table_args__ = (
        CheckConstraint("decision IN ('allow', 'deny')", name="decision"),
        CheckConstraint("status IN ('success', 'error')", name="status"),
        Index("idx_mcp_tool_call_audit_log_created_at", "created_at"),
        Index("idx_mcp_tool_call_audit_log_task_id", "task_id"),
        Index("idx_mcp_tool_call_audit_log_project_id", "project_id"),
        Index("idx_mcp_tool_call_audit_log_tool_name", "tool_name"),
        Index("idx_mcp_tool_call_audit_log_user_id", "user_id"),
    )

    id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True, default=new_id)
    created_at: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())
    task_id: Mapped[uuid.UUID | None] = mapped_column(Uuid)
    job_id: Mapped[uuid.UUID | None] = mapped_column(Uuid)
    project_id: Mapped[uuid.UUID | None] = mapped_column(Uuid)
    run_id: Mapped[uuid.UUID | None] = mapped_column(Uuid)
    subject_type: Mapped[str | None] = mapped_column(Text)
    subject_id: Mapped[uuid.UUID | None] = mapped_column(Uuid)
    user_id: Mapped[uuid.UUID | None] = mapped_column(Uuid)
    group_ids: Mapped[Any | None] = mapped_column(JSONB)
    role_names: Mapped[Any | None] = mapped_column(JSONB)
    tool_name: Mapped[str] = mapped_column(Text)
    decision: Mapped[str] = mapped_column(Text)
    status: Mapped[str] = mapped_column(Text)
    duration_ms: Mapped[int | None] = mapped_column(Integer)
    error_type: Mapped[str | None] = mapped_column(Text)
    invocation_class: Mapped[str | None] = mapped_column(Text)
    thread_id: Mapped[uuid.UUID | None] = mapped_column(Uuid)
    request_id: Mapped[str | None] = mapped_column(Text)
