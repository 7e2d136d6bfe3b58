"""``/metrics``: Prometheus text format, no auth, both ports (like ``/healthz``)."""

from __future__ import annotations

from flask import Response, current_app
from flask.views import MethodView

from cynode_core.http_metrics import CONTENT_TYPE, metrics_response
from cynode_core.orchestrator.api import Blueprint

blp = Blueprint("metrics", __name__, description="Prometheus metrics")


@blp.route("/metrics")
class Metrics(MethodView):
    @blp.response(
        200,
        description="Prometheus text format 0.0.4. Counts, durations, status names and URL rules only: "
        "no user, task, node or token value, which is why it needs no token.",
        content_type=CONTENT_TYPE,
    )
    def get(self) -> Response:
        """Metrics: HTTP requests, dispatch, and the database's task, queue and node gauges."""
        return metrics_response(current_app.extensions["cynode"].metrics.registry)
