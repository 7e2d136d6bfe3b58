"""fair dispatch: job owners and each owner's last turn

The claim orders queued jobs fairly across users (docs/decisions.md,
Dispatch, "Fair sharing"). It needs each job's owner on the job itself (the task's
creator, the nil UUID for none), indexed for the queued and the running
jobs, and the time each owner last had a job taken.

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-07 00:30:00.000000
"""

from alembic import op
import sqlalchemy as sa

revision = '0004'
down_revision = '0003'
branch_labels = None
depends_on = None

NO_OWNER = "'00000000-0000-0000-0000-000000000000'"


def upgrade() -> None:
    op.add_column('jobs', sa.Column('owner_id', sa.Uuid(), server_default=sa.text(NO_OWNER), nullable=False))
    op.execute(
        "UPDATE jobs SET owner_id = tasks.created_by FROM tasks "
        "WHERE tasks.id = jobs.task_id AND tasks.created_by IS NOT NULL"
    )
    op.create_index(
        'idx_jobs_queue_owner',
        'jobs',
        ['owner_id', 'created_at', 'id'],
        postgresql_where=sa.text("status = 'queued'"),
    )
    op.create_index('idx_jobs_running_owner', 'jobs', ['owner_id'], postgresql_where=sa.text("status = 'running'"))
    op.create_table(
        'dispatch_turns',
        sa.Column('owner', sa.Uuid(), nullable=False),
        sa.Column('last_turn_at', sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint('owner', name=op.f('pk_dispatch_turns')),
    )


def downgrade() -> None:
    op.drop_table('dispatch_turns')
    op.drop_index('idx_jobs_running_owner', table_name='jobs')
    op.drop_index('idx_jobs_queue_owner', table_name='jobs')
    op.drop_column('jobs', 'owner_id')
