"""agents: task planning state, agent tokens and the MCP tool-call audit log

``tasks.planning_state``: a ``draft`` task has no job until it is made
``ready`` (agents_contract.md 2); every task that exists already was
dispatched at creation, so it is ``ready``. ``agent_tokens`` holds the
SHA-256 of each agent credential with its user, role and bindings
(mcp_contract.md 3.1). ``mcp_tool_call_audit_log`` has a row per
authenticated tool call, never its arguments or result, and no foreign keys
(mcp_contract.md 8).

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-08 08:00:00.000000
"""

from alembic import op
import sqlalchemy as sa
from sqlalchemy.dialects import postgresql

revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("tasks", sa.Column("planning_state", sa.Text(), server_default=sa.text("'draft'"), nullable=False))
    op.execute("UPDATE tasks SET planning_state = 'ready'")
    op.create_check_constraint(op.f("ck_tasks_planning_state"), "tasks", "planning_state IN ('draft', 'ready')")
    op.create_index("idx_tasks_planning_state", "tasks", ["planning_state"])
    op.create_table(
        "agent_tokens",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("token_hash", sa.LargeBinary(), nullable=False),
        sa.Column("role", sa.Text(), nullable=False),
        sa.Column("user_id", sa.Uuid(), nullable=False),
        sa.Column("project_id", sa.Uuid(), nullable=True),
        sa.Column("thread_id", sa.Uuid(), nullable=True),
        sa.Column("task_id", sa.Uuid(), nullable=True),
        sa.Column("job_id", sa.Uuid(), nullable=True),
        sa.Column("invocation_class", sa.Text(), nullable=True),
        sa.Column("issued_by", sa.Text(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("revoked_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("revoked_reason", sa.Text(), nullable=True),
        sa.CheckConstraint("role IN ('pm', 'pa', 'sandbox')", name=op.f("ck_agent_tokens_role")),
        sa.CheckConstraint(
            "invocation_class IS NULL OR invocation_class IN ('user_gateway_session', 'orchestrator_initiated')",
            name=op.f("ck_agent_tokens_invocation_class"),
        ),
        sa.CheckConstraint(
            "role <> 'pm' OR invocation_class IS NOT NULL", name=op.f("ck_agent_tokens_pm_invocation_class")
        ),
        sa.ForeignKeyConstraint(["user_id"], ["users.id"], name=op.f("fk_agent_tokens_user_id_users"), ondelete="CASCADE"),
        sa.ForeignKeyConstraint(
            ["project_id"], ["projects.id"], name=op.f("fk_agent_tokens_project_id_projects"), ondelete="CASCADE"
        ),
        sa.ForeignKeyConstraint(
            ["thread_id"], ["chat_threads.id"], name=op.f("fk_agent_tokens_thread_id_chat_threads"), ondelete="CASCADE"
        ),
        sa.ForeignKeyConstraint(["task_id"], ["tasks.id"], name=op.f("fk_agent_tokens_task_id_tasks"), ondelete="CASCADE"),
        sa.ForeignKeyConstraint(["job_id"], ["jobs.id"], name=op.f("fk_agent_tokens_job_id_jobs"), ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_agent_tokens")),
        sa.UniqueConstraint("token_hash", name=op.f("uq_agent_tokens_token_hash")),
    )
    op.create_index("idx_agent_tokens_user_id", "agent_tokens", ["user_id"])
    op.create_index("idx_agent_tokens_expires_at", "agent_tokens", ["expires_at"])
    op.create_index("idx_agent_tokens_job_id", "agent_tokens", ["job_id"])
    op.create_table(
        "mcp_tool_call_audit_log",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False),
        sa.Column("task_id", sa.Uuid(), nullable=True),
        sa.Column("job_id", sa.Uuid(), nullable=True),
        sa.Column("project_id", sa.Uuid(), nullable=True),
        sa.Column("run_id", sa.Uuid(), nullable=True),
        sa.Column("subject_type", sa.Text(), nullable=True),
        sa.Column("subject_id", sa.Uuid(), nullable=True),
        sa.Column("user_id", sa.Uuid(), nullable=True),
        sa.Column("group_ids", postgresql.JSONB(astext_type=sa.Text()), nullable=True),
        sa.Column("role_names", postgresql.JSONB(astext_type=sa.Text()), nullable=True),
        sa.Column("tool_name", sa.Text(), nullable=False),
        sa.Column("decision", sa.Text(), nullable=False),
        sa.Column("status", sa.Text(), nullable=False),
        sa.Column("duration_ms", sa.Integer(), nullable=True),
        sa.Column("error_type", sa.Text(), nullable=True),
        sa.Column("invocation_class", sa.Text(), nullable=True),
        sa.Column("thread_id", sa.Uuid(), nullable=True),
        sa.Column("request_id", sa.Text(), nullable=True),
        sa.CheckConstraint("decision IN ('allow', 'deny')", name=op.f("ck_mcp_tool_call_audit_log_decision")),
        sa.CheckConstraint("status IN ('success', 'error')", name=op.f("ck_mcp_tool_call_audit_log_status")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_mcp_tool_call_audit_log")),
    )
    for column in ("created_at", "task_id", "project_id", "tool_name", "user_id"):
        op.create_index(f"idx_mcp_tool_call_audit_log_{column}", "mcp_tool_call_audit_log", [column])


def downgrade() -> None:
    op.drop_table("mcp_tool_call_audit_log")
    op.drop_table("agent_tokens")
    op.drop_index("idx_tasks_planning_state", table_name="tasks")
    op.drop_constraint(op.f("ck_tasks_planning_state"), "tasks", type_="check")
    op.drop_column("tasks", "planning_state")
