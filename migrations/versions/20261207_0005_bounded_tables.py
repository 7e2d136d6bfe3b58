"""bounded tables: task counters kept by triggers, retention indexes, maintenance turns

``/metrics`` reads task counts by status from ``task_status_counts``, which
statement triggers on ``tasks`` keep (one appended row per status a
statement changed); the retention sweep folds those rows and takes its turn
through ``maintenance_runs``. The indexes let the sweep find expired rows
without reading whole tables.

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-07 01:00:00.000000
"""

from alembic import op
import sqlalchemy as sa

revision = '0005'
down_revision = '0004'
branch_labels = None
depends_on = None

_COUNT_FUNCTION = """
CREATE FUNCTION cynode_count_task_statuses() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'INSERT' THEN
        INSERT INTO task_status_counts (status, n) SELECT status, count(*) FROM new_rows GROUP BY status;
    ELSIF TG_OP = 'UPDATE' THEN
        INSERT INTO task_status_counts (status, n)
        SELECT status, sum(d) FROM (
            SELECT status, 1 AS d FROM new_rows
            UNION ALL
            SELECT status, -1 FROM old_rows
        ) c GROUP BY status HAVING sum(d) <> 0;
    ELSIF TG_OP = 'DELETE' THEN
        INSERT INTO task_status_counts (status, n) SELECT status, -count(*) FROM old_rows GROUP BY status;
    ELSE
        DELETE FROM task_status_counts;
    END IF;
    RETURN NULL;
END
$$
"""

_TRIGGERS = {
    "tasks_count_inserts": "AFTER INSERT ON tasks REFERENCING NEW TABLE AS new_rows",
    "tasks_count_updates": "AFTER UPDATE ON tasks REFERENCING OLD TABLE AS old_rows NEW TABLE AS new_rows",
    "tasks_count_deletes": "AFTER DELETE ON tasks REFERENCING OLD TABLE AS old_rows",
    "tasks_count_truncates": "AFTER TRUNCATE ON tasks",
}


def upgrade() -> None:
    op.create_table(
        'task_status_counts',
        sa.Column('id', sa.BigInteger(), nullable=False),
        sa.Column('status', sa.Text(), nullable=False),
        sa.Column('n', sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint('id', name=op.f('pk_task_status_counts')),
    )
    op.create_table(
        'maintenance_runs',
        sa.Column('name', sa.Text(), nullable=False),
        sa.Column('ran_at', sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint('name', name=op.f('pk_maintenance_runs')),
    )
    op.execute(_COUNT_FUNCTION)
    for name, when in _TRIGGERS.items():
        op.execute(f"CREATE TRIGGER {name} {when} FOR EACH STATEMENT EXECUTE FUNCTION cynode_count_task_statuses()")
    # The triggers hold a lock on tasks until this transaction ends: no write slips between them and the count.
    op.execute("INSERT INTO task_status_counts (status, n) SELECT status, count(*) FROM tasks GROUP BY status")

    op.create_index('idx_refresh_sessions_expires_at', 'refresh_sessions', ['expires_at'])
    op.create_index('idx_rate_limit_counters_window_start', 'rate_limit_counters', ['window_start'])
    op.create_index('idx_node_capabilities_node_reported', 'node_capabilities', ['node_id', 'reported_at'])
    op.drop_index('idx_node_capabilities_node_id', table_name='node_capabilities')


def downgrade() -> None:
    op.create_index('idx_node_capabilities_node_id', 'node_capabilities', ['node_id'])
    op.drop_index('idx_node_capabilities_node_reported', table_name='node_capabilities')
    op.drop_index('idx_rate_limit_counters_window_start', table_name='rate_limit_counters')
    op.drop_index('idx_refresh_sessions_expires_at', table_name='refresh_sessions')
    for name in _TRIGGERS:
        op.execute(f"DROP TRIGGER {name} ON tasks")
    op.execute("DROP FUNCTION cynode_count_task_statuses()")
    op.drop_table('maintenance_runs')
    op.drop_table('task_status_counts')
