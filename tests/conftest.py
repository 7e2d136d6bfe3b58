"""Fixtures on real parts: one PostgreSQL per session, a fresh database per test.

Layers: ``pg`` (the server) -> ``database_url`` (a migrated database of the
test's own) -> ``orchestrator`` (opened resources + Flask app) -> ``api``
(:class:`~harness.api.ApiClient` straight into the app) or
``live_orchestrator`` (the app served on loopback). ``client`` is the bare
Flask test client, for the byte-level wire recordings only. ``worker`` is a
node's real Worker API over a scripted sandbox. The building blocks live in
``tests/harness`` (see its ``__init__``).
"""

from __future__ import annotations

import io
import logging
import re
import signal
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from cynode_llamacpp.backend import LlamaCppBackend
from flask.testing import FlaskClient
from harness.api import ApiClient
from harness.llama import llama_backend
from harness.orchestrator import (
    USER_PASSWORD,
    LiveServer,
    OrchestratorUnderTest,
    Secrets,
    create_users,
    make_settings,
    open_orchestrator,
)
from harness.postgres import TestPostgres
from harness.processes import CynodeProcess, free_port
from harness.served import Served
from harness.worker import WorkerNode

from cynode_core.client import Credentials
from cynode_core.logs import make_handler
from cynode_core.orchestrator import migrate
from cynode_core.orchestrator.db import make_engine

REQUIREMENT_TAG = re.compile(r"@(REQ-[A-Z]+-\d{4})\b")


def pytest_configure(config: pytest.Config) -> None:
    """Register each requirement tag of the feature files as a marker (pytest-bdd turns tags into markers).

    The other tags are listed in pytest.ini; with ``--strict-markers`` a tag
    that is neither fails the run.
    """
    features = Path(config.rootpath) / config.getini("bdd_features_base_dir")
    tags = {tag for path in features.rglob("*.feature") for tag in REQUIREMENT_TAG.findall(path.read_text())}
    for tag in sorted(tags):
        config.addinivalue_line("markers", f"{tag}: a scenario of requirement {tag}")
    # A run started in the background by a non-interactive shell (`bash .ci/run &`, nohup) inherits SIGINT
    # ignored, and so would every process a test starts: a Python child then never turns Ctrl-C into
    # KeyboardInterrupt, and the tests that send one fail. A caught signal is reset to its default on exec,
    # so catching it here gives every child the default a terminal would.
    if signal.getsignal(signal.SIGINT) == signal.SIG_IGN:
        signal.signal(signal.SIGINT, signal.default_int_handler)


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


@pytest.fixture
def test_secrets() -> Secrets:
    return Secrets.generate()


@pytest.fixture
def settings_overrides() -> dict[str, Any]:
    """Override in a test module to change the orchestrator's settings."""
    return {}


@pytest.fixture
def orchestrator(
    tmp_path: Path, database_url: str, test_secrets: Secrets, settings_overrides: dict[str, Any]
) -> Iterator[OrchestratorUnderTest]:
    opened = open_orchestrator(
        make_settings(tmp_path / "home", database_url, test_secrets, **settings_overrides), test_secrets
    )
    yield opened
    opened.close()


@pytest.fixture
def api(orchestrator: OrchestratorUnderTest) -> ApiClient:
    return ApiClient.in_process(orchestrator.app)


@pytest.fixture
def client(orchestrator: OrchestratorUnderTest) -> FlaskClient:
    return orchestrator.app.test_client()


@pytest.fixture
def live_orchestrator(orchestrator: OrchestratorUnderTest) -> Iterator[str]:
    server = LiveServer(orchestrator.app)
    yield server.url
    server.stop()


@pytest.fixture
def control_port() -> int:
    """A free loopback port: a test naming it as `control_listen` gets the app served there (`live_control_plane`)."""
    return free_port()


@pytest.fixture
def live_control_plane(orchestrator: OrchestratorUnderTest, control_port: int) -> Iterator[str]:
    """The app on the port its settings name as the control plane, so calls to its own ``/mcp`` (the PM agent's)
    reach it."""
    server = LiveServer(orchestrator.app, port=control_port)
    yield server.url
    server.stop()


@pytest.fixture
def processes() -> Iterator[list[CynodeProcess]]:
    """The ``cynode`` child processes a test started; each is stopped (killed if need be) at the end."""
    started: list[CynodeProcess] = []
    yield started
    for proc in started:
        proc.stop()


@pytest.fixture
def worker(tmp_path: Path) -> Iterator[WorkerNode]:
    """A node's real Worker API on loopback over a scripted sandbox runtime (see harness/worker.py)."""
    node = WorkerNode(tmp_path / "worker-node")
    yield node
    node.close()


@pytest.fixture
def json_log_lines(caplog: pytest.LogCaptureFixture) -> Iterator[io.StringIO]:
    """What the orchestrator's and the node's loggers write at INFO, as ``CYNODE_LOG_FORMAT=json`` sets them up."""
    stream = io.StringIO()
    handler = make_handler("json", stream)
    root = logging.getLogger()
    root.addHandler(handler)
    caplog.set_level(logging.INFO, logger="cynode_core")
    caplog.set_level(logging.INFO, logger="node_agent")
    try:
        yield stream
    finally:
        root.removeHandler(handler)


@pytest.fixture
def logged_in(
    orchestrator: OrchestratorUnderTest, live_orchestrator: str, tmp_path: Path
) -> tuple[dict[str, str], ApiClient]:
    """alice's stored credentials (as ``cynode login`` leaves them: the env for the CLI) and her API client."""
    create_users(orchestrator.db, "alice")
    api = ApiClient(live_orchestrator)
    api.login("alice", USER_PASSWORD, expect=200)
    assert api.credentials is not None
    config = tmp_path / "config"
    Credentials(live_orchestrator, api.token, api.credentials.refresh_token).save(
        config / "cynode" / "credentials.json"
    )
    return {"XDG_CONFIG_HOME": str(config)}, api


@pytest.fixture(scope="module")
def llama(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LlamaCppBackend]:
    """The embedded llama.cpp backend with the bundled model, one per test module that asks for it."""
    with llama_backend(tmp_path_factory.mktemp("llama-home")) as backend:
        yield backend


@pytest.fixture
def serve(tmp_path: Path, database_url: str, test_secrets: Secrets) -> Iterator[Callable[..., Served]]:
    """Open and serve an orchestrator with the given ``CYNODE_*`` environment; all closed at the end."""
    opened: list[Served] = []

    def open_one(environ: dict[str, str], **overrides: Any) -> Served:
        settings = make_settings(
            tmp_path / f"home-{len(opened)}", database_url, test_secrets, environ=environ, **overrides
        )
        orchestrator = open_orchestrator(settings, test_secrets)
        server = LiveServer(orchestrator.app)
        served = Served(orchestrator, server, ApiClient(server.url))
        opened.append(served)
        return served

    yield open_one
    for served in reversed(opened):
        served.close()
