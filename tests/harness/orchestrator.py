"""The orchestrator opened in the test process, and what the tests do to it besides HTTP.

:func:`make_settings` and :func:`open_orchestrator` are how conftest's
``orchestrator`` fixture and the steps that open an orchestrator of their own
build one; :class:`LiveServer` serves its app on loopback;
:class:`InProcessDispatcher` runs its real dispatcher threads. Users are
created straight in the database, and the assertions read the database with
:func:`rows`.
"""

from __future__ import annotations

import functools
import secrets
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from flask import Flask
from sqlalchemy import select, text

from cynode_core.orchestrator.process import ServerResources, open_resources
from cynode_core.orchestrator.settings import OrchestratorSettings
from cynode_core.settings import load_settings


@dataclass(frozen=True)
class Secrets:
    """The secrets a test hands its orchestrator (instead of generated ones)."""

    admin_password: str
    psk: str
    jwt_secret: str

    @classmethod
    def generate(cls) -> Secrets:
        """New key and secret; the run's one admin password (its hash is computed once, see ``open_orchestrator``)."""
        return cls(ADMIN_PASSWORD, secrets.token_urlsafe(16), secrets.token_urlsafe(40))


@dataclass
class OrchestratorUnderTest:
    resources: ServerResources
    app: Flask
    secrets: Any

    @property
    def settings(self) -> OrchestratorSettings:
        return self.resources.settings

    @property
    def db(self) -> Any:
        return self.resources.db

    def close(self) -> None:
        self.resources.close()


def make_settings(
    home: Path, database_url: str, s: Secrets, *, environ: dict[str, str] | None = None, **overrides: Any
) -> OrchestratorSettings:
    """A test orchestrator's settings: its home, database and secrets, no dispatcher, ``X-Forwarded-For`` trusted.

    ``environ`` is read as the process environment would be; ``overrides`` win over everything.
    """
    values: dict[str, Any] = {
        "home": home,
        "database_url": database_url,
        "admin_password": s.admin_password,
        "node_psk": s.psk,
        "jwt_secret": s.jwt_secret,
        "trust_forwarded_for": True,
        "dispatcher_enabled": False,
    }
    values.update(overrides)
    return load_settings(OrchestratorSettings, environ=environ or {}, overrides=values)


def open_orchestrator(settings: OrchestratorSettings, s: Any = None) -> OrchestratorUnderTest:
    """Open the database (migrated, bootstrap users made) and build the app on it; ``close()`` when done."""
    from cynode_core.orchestrator.app import create_app

    resources = open_resources(settings, bootstrap=False)
    try:
        _bootstrap_users(resources)
    except BaseException:
        resources.close()
        raise
    return OrchestratorUnderTest(resources, create_app(resources.settings, resources.db, resources.secrets), s)


def _bootstrap_users(resources: ServerResources) -> None:
    """The process's own bootstrap (``ensure_bootstrap_users``), the admin's hash computed once per password.

    An admin made here is what the bootstrap would make, but for its salt: argon2id at the contract's
    cost is 0.2 s of every test otherwise. With no admin password given, the bootstrap does it all.
    """
    from cynode_core.orchestrator.models import PasswordCredential, User
    from cynode_core.orchestrator.services import accounts
    from cynode_core.orchestrator.services.passwords import HASH_ALG

    password = resources.secrets.admin_password
    with resources.db.session() as session:
        if password and session.scalar(select(User.id).where(User.handle == accounts.ADMIN_HANDLE)) is None:
            admin = accounts.create_user(session, accounts.ADMIN_HANDLE, None)
            session.add(PasswordCredential(user_id=admin.id, password_hash=_hash_of(password), hash_alg=HASH_ALG))
        message = accounts.ensure_bootstrap_users(session, password, resources.secrets.admin_password_file)
    if message:
        resources.messages.append(message)


class LiveServer:
    """The app on a loopback port, served by waitress in a thread."""

    def __init__(self, app: Flask, port: int = 0):
        from node_agent.http_server import BackgroundServer

        # BackgroundServer stops its event loop at once; a bare server.close()
        # left waitress's loop running until the join timed out (5 s a test).
        self.server = BackgroundServer(app, host="127.0.0.1", port=port, threads=8, name="orchestrator-under-test")
        self.server.start()
        self.url = f"http://127.0.0.1:{self.server.port}"

    def stop(self) -> None:
        self.server.stop(drain_timeout=1.0)


class InProcessDispatcher:
    """The real dispatcher threads of an app in this process; ``stop`` joins them."""

    def __init__(self, state: Any):
        """``state``: the app's ``extensions["cynode"]``."""
        from cynode_core.orchestrator.dispatch.dispatcher import start_workers

        self.state = state
        self.stop_event = threading.Event()
        self.threads = start_workers(self.state, self.stop_event)
        assert self.threads, "the dispatcher is disabled in the settings"

    def stop(self) -> None:
        self.stop_event.set()
        self.state.dispatcher.wake_all()
        for thread in self.threads:
            # The LISTEN thread notices the stop within its 1 s notify timeout and
            # ends by itself; waiting for it would only slow every scenario down.
            thread.join(timeout=0.05 if thread.name == "dispatch-listen" else 10)
            assert thread.name == "dispatch-listen" or not thread.is_alive(), f"{thread.name} did not stop"


# -- users ----------------------------------------------------------------------------

USER_PASSWORD = secrets.token_urlsafe(12)
ADMIN_PASSWORD = secrets.token_urlsafe(12)


@functools.lru_cache(maxsize=8)
def _hash_of(password: str) -> bytes:
    from cynode_core.orchestrator.services.passwords import hash_password

    return hash_password(password)


def create_users(db: Any, *handles: str) -> None:
    """Users with the password ``USER_PASSWORD``, hashed once per run (argon2id is slow on purpose)."""
    from cynode_core.orchestrator.models import PasswordCredential
    from cynode_core.orchestrator.services import accounts
    from cynode_core.orchestrator.services.passwords import HASH_ALG

    with db.session() as session:
        for handle in handles:
            user = accounts.create_user(session, handle, None)
            session.add(PasswordCredential(user_id=user.id, password_hash=_hash_of(USER_PASSWORD), hash_alg=HASH_ALG))


# -- the database, read directly for the assertions --------------------------------------


def rows(db: Any, query: str, **params: Any) -> list[Any]:
    with db.session() as session:
        return list(session.execute(text(query), params).mappings())


def task_status(db: Any, task_id: str) -> str | None:
    found = rows(db, "SELECT status FROM tasks WHERE id = :id", id=task_id)
    return found[0]["status"] if found else None


def jobs_of(db: Any, task_id: str) -> list[Any]:
    return rows(db, "SELECT * FROM jobs WHERE task_id = :id ORDER BY created_at, id", id=task_id)
