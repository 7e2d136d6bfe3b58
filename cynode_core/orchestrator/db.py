"""Engine, sessions and the declarative base (PostgreSQL only, psycopg 3)."""

from __future__ import annotations

import contextlib
import uuid
from collections.abc import Callable, Iterator

from sqlalchemy import MetaData, create_engine, event
from sqlalchemy.engine import Engine, make_url
from sqlalchemy.orm import DeclarativeBase, Session, sessionmaker

NAMING_CONVENTION = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING_CONVENTION)


def new_id() -> uuid.UUID:
    return uuid.uuid4()


def sqlalchemy_url(url: str) -> str:
    """Any PostgreSQL URL spelling (``postgres://``, ``postgresql://``) as a psycopg 3 URL."""
    parsed = make_url(url.replace("postgres://", "postgresql://", 1) if url.startswith("postgres://") else url)
    if parsed.get_backend_name() != "postgresql":
        raise ValueError(f"cynode needs PostgreSQL, not {parsed.get_backend_name()!r}")
    return parsed.set(drivername="postgresql+psycopg").render_as_string(hide_password=False)


def redact_url(url: str) -> str:
    """The URL with its password hidden, for logs and errors."""
    try:
        return make_url(sqlalchemy_url(url)).render_as_string(hide_password=True)
    except Exception:  # noqa: BLE001 - a URL we cannot parse is shown as nothing
        return "<unparsable database URL>"


def make_engine(url: str, *, pool_size: int = 10, application_name: str = "cynode") -> Engine:
    engine = create_engine(
        sqlalchemy_url(url),
        # No ping before each checkout (a round trip per session): a connection that broke (a database
        # restart) fails its statement, the pool drops every connection made before, and the request is
        # answered 503 with Retry-After (api/http.py), which clients wait out.
        pool_pre_ping=False,
        pool_size=pool_size,
        max_overflow=pool_size * 3,
        pool_recycle=300,
        connect_args={"connect_timeout": 5, "application_name": application_name},
    )

    @event.listens_for(engine, "connect")
    def _utc(dbapi_conn, _record):  # type: ignore[no-untyped-def]
        # Every timestamp is read and written in UTC, whatever the server's zone.
        with dbapi_conn.cursor() as cur:
            cur.execute("SET TIME ZONE 'UTC'")
        dbapi_conn.commit()

    return engine


class Database:
    """An engine and its session factory; stored in ``app.extensions['cynode_db']``."""

    def __init__(self, url: str, *, pool_size: int = 10):
        self.url = url
        self.engine = make_engine(url, pool_size=pool_size)
        self.sessions = sessionmaker(self.engine, expire_on_commit=False)
        # Same pool, no transaction: a lone read needs no BEGIN and COMMIT round trips.
        self._reads = sessionmaker(self.engine.execution_options(isolation_level="AUTOCOMMIT"), expire_on_commit=False)
        # What else holds connections to this database (the pg blob store's pool): closed with it.
        self.on_dispose: list[Callable[[], None]] = []

    @contextlib.contextmanager
    def session(self) -> Iterator[Session]:
        """A session committed on success and rolled back on error."""
        session = self.sessions()
        try:
            yield session
            session.commit()
        except BaseException:
            session.rollback()
            raise
        finally:
            session.close()

    @contextlib.contextmanager
    def read(self) -> Iterator[Session]:
        """A session for reads that need no common snapshot (each statement is its own); never write with it."""
        session = self._reads()
        try:
            yield session
        finally:
            session.close()

    def dispose(self) -> None:
        for close in self.on_dispose:
            close()
        self.engine.dispose()
