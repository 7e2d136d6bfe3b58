"""Fixtures on real parts: one PostgreSQL per session, a fresh database per test.

Layers: ``pg`` (the server) -> ``database_url`` (a migrated database of the
test's own) -> ``orchestrator`` (opened runtime + Flask app) -> ``client``
(Flask test client) or ``live_orchestrator`` (real HTTP on loopback).
"""

from __future__ import annotations

import secrets
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from flask.testing import FlaskClient
from orchestrator_under_test import LiveServer, OrchestratorUnderTest
from postgres_server import TestPostgres

from cynode_core.orchestrator import migrate
from cynode_core.orchestrator.db import make_engine
from cynode_core.orchestrator.process import open_runtime
from cynode_core.orchestrator.settings import OrchestratorSettings
from cynode_core.settings import load_settings


@pytest.fixture(scope="session")
def pg() -> Iterator[TestPostgres]:
    server = TestPostgres()
    yield server
    server.stop()


@pytest.fixture(scope="session")
def template_db(pg: TestPostgres) -> str:
    name = pg.create_database()
    url = pg.url_for(name)
    engine = make_engine(url, pool_size=1)
    migrate.upgrade(engine, url)
    engine.dispose()
    return name


@pytest.fixture
def database_url(pg: TestPostgres, template_db: str) -> Iterator[str]:
    name = pg.create_database(template=template_db)
    yield pg.url_for(name)
    pg.drop_database(name)


@dataclass(frozen=True)
class Secrets:
    admin_password: str
    psk: str
    jwt_secret: str


@pytest.fixture
def test_secrets() -> Secrets:
    return Secrets(secrets.token_urlsafe(12), secrets.token_urlsafe(16), secrets.token_urlsafe(40))


def make_settings(home: Path, database_url: str, s: Secrets, **overrides: Any) -> OrchestratorSettings:
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
    return load_settings(OrchestratorSettings, environ={}, overrides=values)


@pytest.fixture
def settings_overrides() -> dict[str, Any]:
    """Override in a test module to change the orchestrator's settings."""
    return {}


@pytest.fixture
def orchestrator(
    tmp_path: Path, database_url: str, test_secrets: Secrets, settings_overrides: dict[str, Any]
) -> Iterator[OrchestratorUnderTest]:
    from cynode_core.orchestrator.app import create_app

    settings = make_settings(tmp_path / "home", database_url, test_secrets, **settings_overrides)
    runtime = open_runtime(settings)
    app = create_app(runtime.settings, runtime.db, runtime.secrets)
    yield OrchestratorUnderTest(runtime, app, test_secrets)
    runtime.close()


@pytest.fixture
def client(orchestrator: OrchestratorUnderTest) -> FlaskClient:
    return orchestrator.app.test_client()


@pytest.fixture
def live_orchestrator(orchestrator: OrchestratorUnderTest) -> Iterator[str]:
    server = LiveServer(orchestrator.app)
    yield server.url
    server.stop()
