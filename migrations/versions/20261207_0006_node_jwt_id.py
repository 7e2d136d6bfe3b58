"""node JWT id: the jti of a node's latest registration

A node JWT is accepted only while its ``jti`` is the one its node's row
keeps, so registering a slug again revokes the JWT the slug held before.
Rows of nodes registered before this revision have none: their JWTs are
refused and the nodes register again (as they do on any 401).

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-07 02:00:00.000000
"""

from alembic import op
import sqlalchemy as sa

revision = '0006'
down_revision = '0005'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column('nodes', sa.Column('node_jwt_id', sa.Uuid(), nullable=True))


def downgrade() -> None:
    op.drop_column('nodes', 'node_jwt_id')
