"""chat: threads, their messages and the chat audit log (chat contract section 8)

A thread belongs to one user and one project for its whole life; the
active thread of a (user, project) pair is the one with the newest
``last_activity_at``, within the idle limit. Messages are redacted and
append-only; an assistant turn's ``metadata.response_id`` is indexed for
``previous_response_id``. ``chat_audit_log`` has a row per authenticated
request, never its content.

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-07 05:00:00.000000
"""

from alembic import op
import sqlalchemy as sa
from sqlalchemy.dialects import postgresql

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "chat_threads",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("user_id", sa.Uuid(), nullable=False),
        sa.Column("project_id", sa.Uuid(), nullable=False),
        sa.Column("session_id", sa.Uuid(), nullable=True),
        sa.Column("title", sa.Text(), nullable=True),
        sa.Column("summary", sa.Text(), nullable=True),
        sa.Column("archived_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("last_activity_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False),
        sa.CheckConstraint("char_length(summary) <= 500", name=op.f("ck_chat_threads_summary_length")),
        sa.ForeignKeyConstraint(["user_id"], ["users.id"], name=op.f("fk_chat_threads_user_id_users"), ondelete="CASCADE"),
        sa.ForeignKeyConstraint(["project_id"], ["projects.id"], name=op.f("fk_chat_threads_project_id_projects")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_chat_threads")),
    )
    op.create_index(
        "idx_chat_threads_active", "chat_threads", ["user_id", "project_id", sa.text("last_activity_at DESC")]
    )
    op.create_index("idx_chat_threads_user_updated", "chat_threads", ["user_id", sa.text("updated_at DESC")])
    op.create_table(
        "chat_messages",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("thread_id", sa.Uuid(), nullable=False),
        sa.Column("role", sa.Text(), nullable=False),
        sa.Column("content", sa.Text(), nullable=False),
        sa.Column("metadata", postgresql.JSONB(astext_type=sa.Text()), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False),
        sa.CheckConstraint("role IN ('user', 'assistant', 'system')", name=op.f("ck_chat_messages_role")),
        sa.ForeignKeyConstraint(
            ["thread_id"], ["chat_threads.id"], name=op.f("fk_chat_messages_thread_id_chat_threads"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_chat_messages")),
    )
    op.create_index("idx_chat_messages_thread_created", "chat_messages", ["thread_id", "created_at"])
    op.create_index(
        "idx_chat_messages_response_id",
        "chat_messages",
        [sa.text("(metadata->>'response_id')")],
        postgresql_where=sa.text("metadata->>'response_id' IS NOT NULL"),
    )
    op.create_table(
        "chat_audit_log",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False),
        sa.Column("user_id", sa.Uuid(), nullable=True),
        sa.Column("project_id", sa.Uuid(), nullable=True),
        sa.Column("outcome", sa.Text(), nullable=False),
        sa.Column("error_code", sa.Text(), nullable=True),
        sa.Column("redaction_applied", sa.Boolean(), server_default=sa.text("false"), nullable=False),
        sa.Column("redaction_kinds", postgresql.JSONB(astext_type=sa.Text()), nullable=True),
        sa.Column("duration_ms", sa.Integer(), nullable=True),
        sa.Column("request_id", sa.Text(), nullable=True),
        sa.Column("thread_id", sa.Uuid(), nullable=True),
        sa.Column("model", sa.Text(), nullable=True),
        sa.Column("route", sa.Text(), nullable=True),
        sa.Column("endpoint", sa.Text(), nullable=True),
        sa.Column("stream", sa.Boolean(), server_default=sa.text("false"), nullable=False),
        sa.Column("node_slug", sa.Text(), nullable=True),
        sa.Column("prompt_tokens", sa.Integer(), nullable=True),
        sa.Column("completion_tokens", sa.Integer(), nullable=True),
        sa.CheckConstraint(
            "outcome IN ('success', 'error', 'canceled', 'timeout')", name=op.f("ck_chat_audit_log_outcome")
        ),
        sa.ForeignKeyConstraint(
            ["user_id"], ["users.id"], name=op.f("fk_chat_audit_log_user_id_users"), ondelete="SET NULL"
        ),
        sa.ForeignKeyConstraint(
            ["project_id"], ["projects.id"], name=op.f("fk_chat_audit_log_project_id_projects"), ondelete="SET NULL"
        ),
        sa.ForeignKeyConstraint(
            ["thread_id"], ["chat_threads.id"], name=op.f("fk_chat_audit_log_thread_id_chat_threads"), ondelete="SET NULL"
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_chat_audit_log")),
    )
    op.create_index("idx_chat_audit_log_created_at", "chat_audit_log", ["created_at"])
    op.create_index("idx_chat_audit_log_user_id", "chat_audit_log", ["user_id"])
    op.create_index("idx_chat_audit_log_project_id", "chat_audit_log", ["project_id"])


def downgrade() -> None:
    op.drop_table("chat_audit_log")
    op.drop_table("chat_messages")
    op.drop_table("chat_threads")
