"""node running jobs: a counter on each node, kept by triggers on jobs, which the claim reads under the node's lock

``nodes.running_jobs`` is the number of the node's jobs in ``running``. Row
triggers on ``jobs`` keep it as a job enters or leaves ``running`` on a node
(claimed, ended, requeued, canceled, moved, deleted). The one-statement
claim reads it from the node row it locks: a claim that waited for another
one's lock on the same node sees the count that claim left, so concurrent
dispatchers never place more jobs on a node than its slots
(docs/decisions.md, Dispatch 14), and a claim no longer counts the node's
running jobs.

Revision ID: 0012
Revises: 0011
Create Date: 2026-12-10 08:00:00.000000
"""

from alembic import op
import sqlalchemy as sa

revision = "0012"
down_revision = "0011"
branch_labels = None
depends_on = None

_FUNCTION = """
CREATE FUNCTION cynode_count_node_jobs() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP <> 'INSERT' THEN
        IF OLD.status = 'running' AND OLD.node_id IS NOT NULL THEN
            UPDATE nodes SET running_jobs = running_jobs - 1 WHERE id = OLD.node_id;
        END IF;
    END IF;
    IF TG_OP <> 'DELETE' THEN
        IF NEW.status = 'running' AND NEW.node_id IS NOT NULL THEN
            UPDATE nodes SET running_jobs = running_jobs + 1 WHERE id = NEW.node_id;
        END IF;
    END IF;
    RETURN NULL;
END
$$
"""

# Only writes that move a job into or out of a node's running set fire (a lease renewal does not).
_TRIGGERS = {
    "jobs_count_node_inserts": "AFTER INSERT ON jobs FOR EACH ROW WHEN (NEW.status = 'running')",
    "jobs_count_node_updates": (
        "AFTER UPDATE OF status, node_id ON jobs FOR EACH ROW "
        "WHEN ((OLD.status = 'running' OR NEW.status = 'running') "
        "AND (OLD.status IS DISTINCT FROM NEW.status OR OLD.node_id IS DISTINCT FROM NEW.node_id))"
    ),
    "jobs_count_node_deletes": "AFTER DELETE ON jobs FOR EACH ROW WHEN (OLD.status = 'running')",
}


def upgrade() -> None:
    op.add_column("nodes", sa.Column("running_jobs", sa.Integer(), server_default=sa.text("0"), nullable=False))
    op.execute(_FUNCTION)
    for name, when in _TRIGGERS.items():
        op.execute(f"CREATE TRIGGER {name} {when} EXECUTE FUNCTION cynode_count_node_jobs()")
    # The triggers hold a lock on jobs until this transaction ends: no write slips between them and the count.
    op.execute(
        "UPDATE nodes SET running_jobs = c.n FROM "
        "(SELECT node_id, count(*) AS n FROM jobs WHERE status = 'running' AND node_id IS NOT NULL GROUP BY node_id) c "
        "WHERE nodes.id = c.node_id"
    )


def downgrade() -> None:
    for name in _TRIGGERS:
        op.execute(f"DROP TRIGGER {name} ON jobs")
    op.execute("DROP FUNCTION cynode_count_node_jobs()")
    op.drop_column("nodes", "running_jobs")
