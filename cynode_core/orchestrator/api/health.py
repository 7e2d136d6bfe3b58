"""``/healthz`` and ``/readyz`` (plain text, no auth, both ports)."""

from __future__ import annotations

from flask import Response, current_app
from flask.views import MethodView

from cynode_core.orchestrator.api import Blueprint
from cynode_core.orchestrator.services import readiness

blp = Blueprint("health", __name__, description="Liveness and readiness probes")

TEXT = "text/plain; charset=utf-8"
_probe = readiness.NodeProbe()


@blp.route("/healthz")
class Healthz(MethodView):
    @blp.response(200, description="The process serves", content_type=TEXT)
    def get(self) -> Response:
        """Liveness: 200 `ok` whenever the process serves."""
        return Response("ok", status=200, content_type=TEXT)


@blp.route("/readyz")
class Readyz(MethodView):
    @blp.response(200, description="Ready; the body lists each check", content_type=TEXT)
    @blp.alt_response(503, description="Not ready; the body lists each check and its state", content_type=TEXT)
    def get(self) -> Response:
        """Readiness: database, migrations at head, and a dispatchable node."""
        state = current_app.extensions["cynode"]
        body, ok = readiness.render(
            readiness.run_checks(state.db.engine, state.db.sessions, _probe, state.settings.node_heartbeat_timeout)
        )
        return Response(body, status=200 if ok else 503, content_type=TEXT)
