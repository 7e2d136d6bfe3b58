"""job output: the lines a task's jobs printed, for following a task live

``job_output`` holds a task's stdout and stderr as numbered chunks (a line,
or a piece of a long one): ``seq`` counts per task, so it is the id of a
server-sent event and a follower resumes after it (docs/wire_contract.md,
following a task). Writers number rows under a per-task lock held to commit,
so rows become visible in ``seq`` order. A trigger tells followers when a
task's status changes (it starts, it ends), on the same channel the writers
notify. ``job_output_marks`` counts how much of each stream of a job's run
on a node is stored, so a piece a node sends again adds only what is new.

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-07 03:00:00.000000
"""

from alembic import op
import sqlalchemy as sa

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None

_NOTIFY_FUNCTION = """
CREATE FUNCTION cynode_notify_task_status() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify('cynode_job_output', NEW.id::text);
    RETURN NULL;
END
$$
"""


def upgrade() -> None:
    op.create_table(
        "job_output",
        sa.Column("task_id", sa.Uuid(), nullable=False),
        sa.Column("seq", sa.BigInteger(), nullable=False),
        sa.Column("job_id", sa.Uuid(), nullable=False),
        sa.Column("stream", sa.Text(), nullable=False),
        sa.Column("data", sa.Text(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False),
        sa.CheckConstraint("stream IN ('stdout', 'stderr')", name=op.f("ck_job_output_stream")),
        sa.ForeignKeyConstraint(
            ["task_id"], ["tasks.id"], name=op.f("fk_job_output_task_id_tasks"), ondelete="CASCADE"
        ),
        sa.ForeignKeyConstraint(["job_id"], ["jobs.id"], name=op.f("fk_job_output_job_id_jobs"), ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("task_id", "seq", name=op.f("pk_job_output")),
    )
    op.create_index("idx_job_output_job_id", "job_output", ["job_id"])
    op.create_table(
        "job_output_marks",
        sa.Column("job_id", sa.Uuid(), nullable=False),
        sa.Column("node_id", sa.Uuid(), nullable=False),
        sa.Column("stream", sa.Text(), nullable=False),
        sa.Column("chars", sa.BigInteger(), server_default=sa.text("0"), nullable=False),
        sa.Column("cut", sa.Boolean(), server_default=sa.text("false"), nullable=False),
        sa.CheckConstraint("stream IN ('stdout', 'stderr')", name=op.f("ck_job_output_marks_stream")),
        sa.ForeignKeyConstraint(
            ["job_id"], ["jobs.id"], name=op.f("fk_job_output_marks_job_id_jobs"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("job_id", "node_id", "stream", name=op.f("pk_job_output_marks")),
    )
    op.execute(_NOTIFY_FUNCTION)
    op.execute(
        "CREATE TRIGGER cynode_task_status_changed AFTER UPDATE OF status ON tasks FOR EACH ROW "
        "WHEN (OLD.status IS DISTINCT FROM NEW.status) EXECUTE FUNCTION cynode_notify_task_status()"
    )


def downgrade() -> None:
    op.execute("DROP TRIGGER cynode_task_status_changed ON tasks")
    op.execute("DROP FUNCTION cynode_notify_task_status()")
    op.drop_table("job_output_marks")
    op.drop_index("idx_job_output_job_id", table_name="job_output")
    op.drop_table("job_output")
