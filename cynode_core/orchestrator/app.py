"""The orchestrator's Flask application: User API Gateway and control plane.

One app serves both route sets; ``cynode orchestrator serve`` binds it to
the gateway port (12080) and the control-plane port (12082). Node tokens and
user tokens are told apart by their ``token_type`` claim, so neither works
on the other's routes whichever port carries them.
"""

from __future__ import annotations

import datetime as dt
import logging
import os
from dataclasses import dataclass
from typing import Any

import pluggy
from flask import Flask
from flask_jwt_extended import JWTManager
from flask_smorest import Api

from cynode_core import __version__
from cynode_core.http_problems import install_problem_handlers
from cynode_core.http_request_ids import install_request_id
from cynode_core.orchestrator.blobs.stores import PLUGIN_NAME as BLOB_STORE_PLUGIN
from cynode_core.orchestrator.blobs.stores import BlobStores, BuiltinBlobStores
from cynode_core.orchestrator.db import Database
from cynode_core.orchestrator.dispatch import placement
from cynode_core.orchestrator.dispatch.least_loaded import PLUGIN_NAME as DEFAULT_SCHEDULER
from cynode_core.orchestrator.dispatch.least_loaded import LeastLoaded
from cynode_core.orchestrator.local_accounts import PLUGIN_NAME as LOCAL_AUTH
from cynode_core.orchestrator.local_accounts import LocalAccounts
from cynode_core.orchestrator.mcp import registry as mcp_registry
from cynode_core.orchestrator.mcp.tools import PLUGIN_NAME as MCP_TOOLS_PLUGIN
from cynode_core.orchestrator.mcp.tools import BuiltinTools
from cynode_core.orchestrator.metrics import OrchestratorMetrics
from cynode_core.orchestrator.request_class import ClosingRequest
from cynode_core.orchestrator.services.artifacts import Artifacts
from cynode_core.orchestrator.services.password_checks import PasswordChecks
from cynode_core.orchestrator.services.secrets import ResolvedSecrets, TokenCipher
from cynode_core.orchestrator.settings import OrchestratorSettings
from cynode_core.plugin_manager import get_plugin_manager

SWAGGER_ASSETS_URL = "/docs/static/"


class CynodeApi(Api):
    """flask-smorest's Api documenting our one error format for shared error responses."""

    from cynode_core.orchestrator.api.schemas_common import ProblemSchema as ERROR_SCHEMA  # noqa: N811


def _serve_swagger_ui_assets(app: Flask) -> None:
    """Swagger UI's scripts from the swagger-ui-bundle package: /docs works offline."""
    from flask import send_from_directory
    from swagger_ui_bundle import swagger_ui_path

    @app.get(f"{SWAGGER_ASSETS_URL}<path:filename>")
    def swagger_ui_asset(filename: str):  # type: ignore[no-untyped-def]
        return send_from_directory(str(swagger_ui_path), filename, max_age=3600)


log = logging.getLogger(__name__)


@dataclass
class Orchestrator:
    """What the views need, kept in ``app.extensions['cynode']``."""

    settings: OrchestratorSettings
    db: Database
    pm: pluggy.PluginManager
    secrets: ResolvedSecrets
    cipher: TokenCipher
    started_at: dt.datetime
    metrics: OrchestratorMetrics
    artifacts: Artifacts
    password_checks: PasswordChecks


def orchestrator_plugin_manager(settings: OrchestratorSettings, db: Database, **kwargs: Any) -> pluggy.PluginManager:
    """The orchestrator's plugins: its built-ins (local accounts, least-loaded, two-step claim), then entry points."""
    return get_plugin_manager(
        [
            (LocalAccounts(db.sessions), LOCAL_AUTH),
            (LeastLoaded(), DEFAULT_SCHEDULER),
            (placement.TwoStepClaim(), placement.PLUGIN_NAME),
            (BuiltinTools(), MCP_TOOLS_PLUGIN),
            (BuiltinBlobStores(), BLOB_STORE_PLUGIN),
        ],
        disabled=settings.disable_plugins,
        extra_specs=[placement, mcp_registry],
        **kwargs,
    )


def blob_stores(settings: OrchestratorSettings, db: Database, pm: pluggy.PluginManager) -> BlobStores:
    """The process's blob stores; their connections close with the database."""
    options = {
        "database_url": db.url,
        "home": str(settings.home),
        "artifact_dir": str(settings.artifact_dir or settings.home / "artifacts"),
    }
    stores = BlobStores(pm, options, default=settings.artifact_store)
    db.on_dispose.append(stores.close)
    return stores


def password_checks(settings: OrchestratorSettings, db: Database) -> PasswordChecks:
    """The login pool: waiting logins never take more than half the request threads; it stops with the database."""
    workers = settings.password_checks or os.cpu_count() or 1
    queue = min(settings.password_queue, max(0, settings.http_threads // 2 - workers))
    checks = PasswordChecks(workers, queue)
    db.on_dispose.append(checks.close)
    return checks


def create_app(
    settings: OrchestratorSettings,
    db: Database,
    secrets: ResolvedSecrets,
    *,
    plugin_manager: pluggy.PluginManager | None = None,
) -> Flask:
    """Build the orchestrator app on an open database (migrations already applied)."""
    app = Flask("cynode_core")
    app.request_class = ClosingRequest
    app.config.update(
        MAX_CONTENT_LENGTH=settings.max_request_bytes,
        API_TITLE="cynode orchestrator",
        API_VERSION=__version__,
        OPENAPI_VERSION="3.0.3",
        OPENAPI_URL_PREFIX="/",
        OPENAPI_JSON_PATH="openapi.json",
        OPENAPI_SWAGGER_UI_PATH="/docs",
        OPENAPI_SWAGGER_UI_URL=SWAGGER_ASSETS_URL,
        JWT_SECRET_KEY=secrets.jwt_secret,
        JWT_ALGORITHM="HS256",
        JWT_DECODE_ALGORITHMS=["HS256"],
        JWT_ENCODE_ISSUER="cynodeai",
        JWT_DECODE_ISSUER="cynodeai",
        JWT_ENCODE_NBF=False,
        JWT_ACCESS_TOKEN_EXPIRES=dt.timedelta(seconds=settings.access_token_ttl),
        JWT_REFRESH_TOKEN_EXPIRES=dt.timedelta(seconds=settings.refresh_token_ttl),
        JWT_TOKEN_LOCATION=["headers"],
    )
    pm = plugin_manager or orchestrator_plugin_manager(settings, db)
    app.extensions["cynode"] = Orchestrator(
        settings=settings,
        db=db,
        pm=pm,
        secrets=secrets,
        cipher=TokenCipher(secrets.token_key),
        started_at=dt.datetime.now(dt.UTC),
        metrics=OrchestratorMetrics(db),
        artifacts=Artifacts(db, blob_stores(settings, db, pm), settings),
        password_checks=password_checks(settings, db),
    )
    # First hooks of the app: every response, even an early error, carries the request id and is counted.
    install_request_id(app)
    app.extensions["cynode"].metrics.http.install(app)
    JWTManager(app)

    from cynode_core.orchestrator.api import register_api
    from cynode_core.orchestrator.api.http import install_database_outage_handlers, install_request_guards

    api = CynodeApi(app)
    register_api(api)
    _serve_swagger_ui_assets(app)
    install_request_guards(app)
    install_problem_handlers(app)
    install_database_outage_handlers(app)
    return app
