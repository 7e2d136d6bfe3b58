"""The Worker API (docs/wire_contract.md#worker-api): the orchestrator-facing HTTP face of a node.

``GET /healthz``, ``GET /readyz`` and ``GET /metrics`` (Prometheus text, no
secrets: see ``node_agent.metrics``) are open; ``POST /v1/worker/jobs:run``,
our ``POST /v1/worker/jobs:start`` (the node reports back, ``job_reports``),
``POST /v1/worker/jobs/{job_id}:cancel`` and ``POST /v1/worker/inference:chat``
(the orchestrator's way to the node's model, ``inference_chat``) need
``Authorization: Bearer <orchestrator_bearer_token>``, compared in constant
time. The order of checks is docs/wire_contract.md#worker-run-job-checks:
auth (401), body size (413), JSON (400), then the request's own validation
(``RunJobRequest.from_json``) and the executor's. This module alone reads
HTTP bodies and turns the domain errors into problem+json
(``cynode_core.http_problems``).
"""

from __future__ import annotations

import hmac
import json
import logging
from typing import Any

from flask import Flask, Response, request

from cynode_core.contract.errors import InvalidInput, NotAuthenticated, TooLarge
from cynode_core.contract.job import RunJobRequest, is_uuid
from cynode_core.http_limits import decode_json_body
from cynode_core.http_metrics import metrics_response
from cynode_core.http_problems import install_problem_handlers
from cynode_core.http_request_ids import install_request_id
from cynode_core.logs import log_context
from node_agent.executor import JobExecutor
from node_agent.inference_chat import DEFAULT_TIMEOUT_SECONDS, InferenceChat
from node_agent.job_reports import JobReports
from node_agent.readiness import Readiness

log = logging.getLogger(__name__)

AUTH_DETAIL = "Invalid or missing bearer token"
TOO_LARGE_DETAIL = "Request body exceeds maximum size"
_PLAIN = "text/plain; charset=utf-8"
_BEARER_PREFIX = b"Bearer "


def _json_response(body: dict[str, Any], status: int = 200) -> Response:
    return Response(
        json.dumps(body, ensure_ascii=False) + "\n",
        status=status,
        content_type="application/json",
    )


def _plain_response(text: str, status: int = 200) -> Response:
    return Response(text, status=status, content_type=_PLAIN)


def create_worker_app(
    executor: JobExecutor,
    *,
    bearer_token: str,
    readiness: Readiness,
    reports: JobReports | None = None,
    inference_timeout: float = DEFAULT_TIMEOUT_SECONDS,
) -> Flask:
    """Build the Worker API WSGI app around ``executor``.

    With ``reports`` it also serves ``jobs:start`` (the node reports back
    through them; docs/wire_contract.md#worker-start-job). ``inference:chat``
    goes to the executor's inference backend, if any, within
    ``inference_timeout`` seconds (docs/wire_contract.md#worker-inference-chat).

    ``bearer_token`` is the node config's ``worker_api.orchestrator_bearer_token``
    (required: a Worker API without a token would run anyone's jobs).
    ``readiness`` is the object the Node Manager updates; ``/readyz``
    answers from it.
    """
    if not bearer_token:
        raise ValueError("the Worker API needs a bearer token")
    token = {"expected": _BEARER_PREFIX + bearer_token.encode("utf-8")}

    def set_token(new_token: str) -> None:
        """Swap the accepted token (the orchestrator rotates it on re-registration)."""
        if not new_token:
            raise ValueError("the Worker API needs a bearer token")
        token["expected"] = _BEARER_PREFIX + new_token.encode("utf-8")

    app = Flask(__name__)
    # First hooks: every answer carries the X-Request-Id (the orchestrator's, or a new one) and is counted.
    install_request_id(app)
    executor.metrics.http.install(app)
    install_problem_handlers(app)
    app.extensions["cynode_worker"] = {"executor": executor, "readiness": readiness, "set_token": set_token}

    def require_bearer() -> None:
        # Exactly "Bearer <token>", the scheme case-sensitive
        # (docs/wire_contract.md#worker-auth). The header is compared as a
        # whole so its length is the only thing a timing side channel could tell.
        header = request.headers.get("Authorization", "").encode("utf-8", errors="replace")
        if not hmac.compare_digest(header, token["expected"]):
            raise NotAuthenticated(AUTH_DETAIL, challenge="Bearer")

    def read_json_body() -> Any:
        cap = executor.limits.max_request_bytes
        length = request.content_length
        if length is not None and length > cap:
            raise TooLarge(TOO_LARGE_DETAIL)
        data = request.stream.read(cap + 1)
        if len(data) > cap:
            raise TooLarge(TOO_LARGE_DETAIL)
        try:
            return decode_json_body(data)
        except ValueError as exc:
            raise InvalidInput("Invalid request body") from exc

    @app.get("/healthz")
    def healthz() -> Response:
        return _plain_response("ok")

    @app.get("/readyz")
    def readyz() -> Response:
        reason = readiness.check()
        if reason is None:
            return _plain_response("ready")
        return _plain_response(reason, 503)

    @app.get("/metrics")
    def metrics() -> Response:
        return metrics_response(executor.metrics.registry)

    @app.post("/v1/worker/jobs:run")
    def run_job() -> Response:
        require_bearer()
        body = read_json_body()
        with log_context(**_job_ids(body)):
            return _json_response(executor.run(RunJobRequest.from_json(body)).to_json())

    if reports is not None:
        executor.output_for = reports.output_for

        @app.post("/v1/worker/jobs:start")
        def start_job() -> Response:
            require_bearer()
            body = read_json_body()
            with log_context(**_job_ids(body)):
                run = RunJobRequest.from_json(body)
                if run.report is None:
                    raise InvalidInput("report is required for jobs:start")
                reports.follow(run)
                try:
                    done = executor.start(run, lambda outcome: reports.ended(run.job_key, outcome))
                except Exception:
                    reports.forget(run.job_key)
                    raise
                if done is not None:
                    reports.forget(run.job_key)
                    return _json_response(done.to_json())
                return _json_response({"version": 1, "job_id": run.job_id, "accepted": True}, 202)

    chat = InferenceChat(lambda: executor.inference_backend_url, timeout=inference_timeout, metrics=executor.metrics)

    @app.post("/v1/worker/inference:chat")
    def inference_chat() -> Response:
        require_bearer()
        body = read_json_body()
        client_gone = request.environ.get("waitress.client_disconnected", _never)
        return chat.answer(body, client_gone)

    @app.post("/v1/worker/jobs/<job_id>:cancel")
    def cancel_job(job_id: str) -> Response:
        require_bearer()
        if not is_uuid(job_id):
            raise InvalidInput("job_id must be a UUID")
        with log_context(job_id=job_id):
            return _json_response(executor.cancel(job_id).to_json())

    return app


def _never() -> bool:
    return False


def _job_ids(body: Any) -> dict[str, str | None]:
    """``task_id`` and ``job_id`` of a request body for the log records, when they are UUIDs."""
    if not isinstance(body, dict):
        return {}
    ids = {key: body.get(key) for key in ("task_id", "job_id")}
    return {key: value if isinstance(value, str) and is_uuid(value) else None for key, value in ids.items()}
