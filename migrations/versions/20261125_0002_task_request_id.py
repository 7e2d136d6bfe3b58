"""task request id

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-25 13:30:00.000000
"""

from alembic import op
import sqlalchemy as sa

revision = '0002'
down_revision = '0001'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column('tasks', sa.Column('request_id', sa.Text(), nullable=True))


def downgrade() -> None:
    op.drop_column('tasks', 'request_id')
