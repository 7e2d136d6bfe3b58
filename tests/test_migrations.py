"""Migrations (cynode_core/orchestrator/migrate.py, migrations/): up, no drift, down, up, and the lock.

What tox's ``migrations`` env and ``alembic check`` promise, on a real
PostgreSQL: an empty database goes to head; the models and the migrated
schema do not differ; every step down and back up works; and processes that
migrate one database at once do it exactly once, one after the other.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from harness.processes import CynodeProcess, clean_environ
from sqlalchemy import inspect, text
from sqlalchemy.engine import Engine

import cynode_core.orchestrator.models  # noqa: F401  (registers every table on Base.metadata)
from cynode_core.orchestrator import migrate
from cynode_core.orchestrator.db import Base, make_engine

EXPECTED_TABLES = {
    "users",
    "password_credentials",
    "refresh_sessions",
    "auth_audit_log",
    "nodes",
    "node_capabilities",
    "tasks",
    "jobs",
}


@pytest.fixture
def empty_db(pg: Any) -> Iterator[tuple[str, Engine]]:
    name = pg.create_database()
    url = pg.url_for(name)
    engine = make_engine(url, pool_size=2)
    yield url, engine
    engine.dispose()
    pg.drop_database(name)


def drift(engine: Engine) -> list[Any]:
    """What ``alembic check`` would report: the models against the migrated database."""
    with engine.connect() as conn:
        context = MigrationContext.configure(conn, opts={"compare_type": True})
        return list(compare_metadata(context, Base.metadata))


def tables(engine: Engine) -> set[str]:
    return set(inspect(engine).get_table_names()) - {"alembic_version"}


def revisions() -> list[Any]:
    """Every revision, head first."""
    return list(ScriptDirectory.from_config(migrate.alembic_config("postgresql://x@/x")).walk_revisions())


def test_upgrade_head_on_an_empty_database_then_no_drift(empty_db: tuple[str, Engine]) -> None:
    url, engine = empty_db
    assert migrate.current_revision(engine) is None and tables(engine) == set()
    assert migrate.upgrade(engine, url) is True
    assert migrate.current_revision(engine) == migrate.head_revision()
    assert EXPECTED_TABLES <= tables(engine)
    assert tables(engine) == set(Base.metadata.tables)
    assert drift(engine) == []
    assert migrate.upgrade(engine, url) is False  # at head: nothing to do


def test_down_to_base_and_up_again(empty_db: tuple[str, Engine]) -> None:
    url, engine = empty_db
    migrate.upgrade(engine, url)
    migrate.downgrade(engine, url, "base")
    assert migrate.current_revision(engine) is None
    assert tables(engine) == set()
    with engine.connect() as conn:  # no type, sequence or function is left behind either
        assert (
            conn.execute(
                text(
                    "SELECT count(*) FROM pg_type t JOIN pg_namespace n ON n.oid = t.typnamespace "
                    "WHERE n.nspname = 'public' AND t.typtype = 'e'"
                )
            ).scalar()
            == 0
        )
    assert migrate.upgrade(engine, url) is True
    assert migrate.current_revision(engine) == migrate.head_revision()
    assert drift(engine) == []


def test_every_revision_steps_down_and_back_up(empty_db: tuple[str, Engine]) -> None:
    url, engine = empty_db
    migrate.upgrade(engine, url)
    for revision in revisions():
        target = revision.down_revision or "base"
        assert isinstance(target, str), f"merge revision {revision.revision}: step its parents one by one"
        migrate.downgrade(engine, url, target)
        assert migrate.current_revision(engine) == (None if target == "base" else target)
        migrate.upgrade(engine, url)
        assert migrate.current_revision(engine) == migrate.head_revision()
    assert drift(engine) == []


def test_revision_files_are_date_prefixed_and_form_one_line() -> None:
    found = revisions()
    assert found, "no migration"
    heads = [r for r in found if not r.nextrev]
    assert len(heads) == 1, "more than one head"
    for revision in found:
        assert Path(revision.path).name[:9].rstrip("_").isdigit(), revision.path


def _waiting_for_the_lock(admin_url: str, database: str) -> int:
    with psycopg.connect(admin_url, autocommit=True) as conn:
        row = conn.execute(
            "SELECT count(*) FROM pg_locks l JOIN pg_database d ON d.oid = l.database "
            "WHERE l.locktype = 'advisory' AND NOT l.granted AND d.datname = %s",
            (database,),
        ).fetchone()
    return int(row[0]) if row else 0


def test_two_processes_migrating_one_empty_database_at_once(
    pg: Any, empty_db: tuple[str, Engine], tmp_path: Path
) -> None:
    url, engine = empty_db
    database = engine.url.database
    assert database
    env = clean_environ(CYNODE_DATABASE_URL=url, CYNODE_HOME=str(tmp_path / "home"))
    procs: list[CynodeProcess] = []
    # Hold the migration lock ourselves so both processes are surely waiting
    # on it at the same time, then let them go together.
    holder = engine.connect()
    try:
        holder.execute(text("SELECT pg_advisory_lock(:k)"), {"k": migrate.MIGRATION_LOCK_KEY})
        holder.commit()
        procs.append(CynodeProcess(["db", "upgrade"], env, tmp_path / "db-upgrade.log").start())
        migrate_only = CynodeProcess(["orchestrator", "serve", "--migrate-only"], env, tmp_path / "migrate-only.log")
        procs.append(migrate_only.start())
        deadline = time.monotonic() + 60
        while _waiting_for_the_lock(pg.admin_url, database) < 2:
            for proc in procs:
                assert proc.alive(), f"exited before taking the lock:\n{proc.output}"
            assert time.monotonic() < deadline, "the processes never waited on the migration lock"
            time.sleep(0.1)
        assert migrate.current_revision(engine) is None  # neither has migrated while we hold the lock
        holder.execute(text("SELECT pg_advisory_unlock(:k)"), {"k": migrate.MIGRATION_LOCK_KEY})
        holder.commit()
        codes = [proc.wait(timeout=120) for proc in procs]
        outputs = [proc.output for proc in procs]
    finally:
        holder.close()
        for proc in procs:
            proc.stop()
    assert codes == [0, 0], outputs
    migrated = [out for out in outputs if "migrated to the newest version" in out]
    assert len(migrated) == 1, outputs  # one did the work, the other found it done
    with engine.connect() as conn:
        versions = conn.execute(text("SELECT version_num FROM alembic_version")).scalars().all()
    assert versions == [migrate.head_revision()]
    assert drift(engine) == []
