"""Test PostgreSQL servers: embedded (default), Debian's PostgreSQL 15, or a URL.

``CYNODE_TEST_PG`` picks the server: ``embedded`` (default), ``pg15``, or
unset with ``CYNODE_TEST_DATABASE_URL`` naming an existing server. One server
per test session; each test gets a fresh database cloned from a migrated
template, which takes a few tens of milliseconds.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import tempfile
import uuid
from pathlib import Path

import psycopg
from psycopg import sql
from sqlalchemy.engine import make_url

PG15_BIN = Path("/usr/lib/postgresql/15/bin")


class TestPostgres:
    """A server for one test session; ``admin_url`` reaches its ``postgres`` database."""

    def __init__(self) -> None:
        self.kind = os.environ.get("CYNODE_TEST_PG", "embedded")
        self._tmp = Path(tempfile.mkdtemp(prefix="cynode-pg-"))
        self._embedded = None
        self._pg15_dir: Path | None = None
        url = os.environ.get("CYNODE_TEST_DATABASE_URL")
        if url:
            self.kind = "url"
            self.admin_url = url
        elif self.kind == "pg15":
            self.admin_url = self._start_pg15()
        elif self.kind == "embedded":
            from cynode_core.orchestrator.embedded_pg import EmbeddedPostgres

            self._embedded = EmbeddedPostgres(self._tmp, database="postgres")
            self.admin_url = self._embedded.start()
        else:
            raise RuntimeError(f"CYNODE_TEST_PG={self.kind!r}: use embedded or pg15")

    def _start_pg15(self) -> str:
        if not (PG15_BIN / "initdb").exists():
            raise RuntimeError("CYNODE_TEST_PG=pg15 needs Debian's postgresql-15 (scripts/bootstrap installs it)")
        data = self._tmp / "pg15"
        data.mkdir()
        as_postgres = ["runuser", "-u", "postgres", "--"] if os.geteuid() == 0 else []
        if as_postgres:
            shutil.chown(self._tmp, "postgres")
            shutil.chown(data, "postgres")
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        subprocess.run(
            [*as_postgres, str(PG15_BIN / "initdb"), "-D", str(data), "-A", "trust", "-U", "postgres"],
            check=True,
            capture_output=True,
        )
        subprocess.run(
            [
                *as_postgres,
                str(PG15_BIN / "pg_ctl"),
                "-D",
                str(data),
                "-l",
                str(data / "log"),
                "-w",
                "-o",
                f"-p {port} -k {data} -c listen_addresses=''",
                "start",
            ],
            check=True,
            capture_output=True,
        )
        self._pg15_dir = data
        self._as_postgres = as_postgres
        return f"postgresql://postgres@/postgres?host={data}&port={port}"

    def url_for(self, database: str) -> str:
        return make_url(self.admin_url).set(database=database).render_as_string(hide_password=False)

    def create_database(self, template: str | None = None) -> str:
        name = f"t_{uuid.uuid4().hex[:16]}"
        stmt = sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name))
        if template:
            stmt = sql.SQL("CREATE DATABASE {} TEMPLATE {}").format(sql.Identifier(name), sql.Identifier(template))
        with psycopg.connect(self.admin_url, autocommit=True) as conn:
            conn.execute(stmt)
        return name

    def drop_database(self, name: str) -> None:
        with psycopg.connect(self.admin_url, autocommit=True) as conn:
            conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))

    def stop(self) -> None:
        if self._embedded is not None:
            self._embedded.stop()
        if self._pg15_dir is not None:
            subprocess.run(
                [*self._as_postgres, str(PG15_BIN / "pg_ctl"), "-D", str(self._pg15_dir), "-m", "fast", "-w", "stop"],
                capture_output=True,
            )
        shutil.rmtree(self._tmp, ignore_errors=True)
