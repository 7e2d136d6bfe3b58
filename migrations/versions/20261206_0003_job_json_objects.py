"""job payload and result as jsonb objects

Job payloads and results used to be JSON text stored as a jsonb string;
from this revision they are the jsonb objects themselves. Rows whose text
does not parse stay strings (the dispatcher fails such a payload with its
reason, as before).

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-06 21:50:00.000000
"""

from alembic import op

revision = '0003'
down_revision = '0002'
branch_labels = None
depends_on = None

_TRY_PARSE = """
CREATE OR REPLACE FUNCTION pg_temp.cynode_try_jsonb(value text) RETURNS jsonb LANGUAGE plpgsql AS $$
BEGIN
    RETURN value::jsonb;
EXCEPTION WHEN others THEN
    RETURN to_jsonb(value);
END
$$
"""


def upgrade() -> None:
    op.execute(_TRY_PARSE)
    for column in ("payload", "result"):
        op.execute(
            f"UPDATE jobs SET {column} = pg_temp.cynode_try_jsonb({column} #>> '{{}}') "
            f"WHERE jsonb_typeof({column}) = 'string'"
        )


def downgrade() -> None:
    for column in ("payload", "result"):
        op.execute(
            f"UPDATE jobs SET {column} = to_jsonb({column}::text) WHERE jsonb_typeof({column}) IN ('object', 'array')"
        )
