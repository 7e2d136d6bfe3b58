"""HTTP request metrics and the access log for a Flask app (orchestrator and Worker API alike).

Requests are labelled by the matched URL rule (``/v1/tasks/<string:ref>``),
never by the raw path, so the number of series stays bounded whatever
clients send; unmatched paths share one ``route="unmatched"`` label and
unknown methods one ``method="OTHER"``.
"""

from __future__ import annotations

import logging
import time

from flask import Flask, Response, g, request
from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest

# The Prometheus text format 0.0.4 every scraper reads; our names never need the newer escaping.
CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
UNMATCHED = "unmatched"
_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})
# Probes and scrapes come every few seconds; they are logged at DEBUG only.
QUIET_ROUTES = frozenset({"/healthz", "/readyz", "/metrics"})
HTTP_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0)


class HttpMetrics:
    """``<prefix>_http_requests_total{route,method,status}`` and ``<prefix>_http_request_duration_seconds``."""

    def __init__(self, registry: CollectorRegistry, prefix: str, access_log: logging.Logger):
        self.requests = Counter(
            f"{prefix}_http_requests",
            "HTTP requests answered, by URL rule, method and status code",
            ("route", "method", "status"),
            registry=registry,
        )
        self.latency = Histogram(
            f"{prefix}_http_request_duration_seconds",
            "Time from request start to the response headers, by URL rule and method",
            ("route", "method"),
            registry=registry,
            buckets=HTTP_BUCKETS,
        )
        self.access_log = access_log

    def install(self, app: Flask) -> None:
        """Time every request of ``app``, count it, and write one access-log line for it."""

        @app.before_request
        def _start_timer() -> None:
            g.cynode_started = time.perf_counter()

        @app.after_request
        def _observe(response: Response) -> Response:
            started = g.get("cynode_started")
            elapsed = time.perf_counter() - started if started is not None else 0.0
            rule = request.url_rule
            route = rule.rule if rule is not None else UNMATCHED
            method = request.method if request.method in _METHODS else "OTHER"
            self.requests.labels(route, method, str(response.status_code)).inc()
            self.latency.labels(route, method).observe(elapsed)
            self.access_log.log(
                logging.DEBUG if route in QUIET_ROUTES else logging.INFO,
                "%s %s -> %d (%.1f ms)",
                method,
                request.path[:200],
                response.status_code,
                elapsed * 1000,
                extra={
                    "method": method,
                    "route": route,
                    "status": response.status_code,
                    "duration_ms": round(elapsed * 1000, 3),
                },
            )
            return response


def metrics_response(registry: CollectorRegistry) -> Response:
    """The registry in the Prometheus text format."""
    return Response(generate_latest(registry), status=200, content_type=CONTENT_TYPE)
