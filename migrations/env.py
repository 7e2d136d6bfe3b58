"""Alembic environment: online only, on the connection cynode hands in."""

from __future__ import annotations

from alembic import context
from sqlalchemy import create_engine

import cynode_core.orchestrator.models  # noqa: F401  (registers every table)
from cynode_core.orchestrator.db import Base

target_metadata = Base.metadata
config = context.config


def _run(connection) -> None:  # type: ignore[no-untyped-def]
    context.configure(connection=connection, target_metadata=target_metadata, compare_type=True)
    with context.begin_transaction():
        context.run_migrations()


connection = config.attributes.get("connection")
if connection is not None:
    _run(connection)
else:
    engine = create_engine(config.get_main_option("sqlalchemy.url"))
    with engine.connect() as conn:
        _run(conn)
        conn.commit()
