"""A STUB orchestrator control plane for node agent tests. Not the real orchestrator.

It speaks docs/wire_contract.md#control-plane faithfully enough for a node to
go through its start-up sequence (status codes, detail strings, the
bootstrap and configuration payloads, the ack checks), keeps no database,
and records every call in order so tests can assert what the node did. The
bootstrap advertises non-default paths (``/custom/config``,
``/custom/capability``) so a node that ignores the bootstrap URLs fails.
Listens on 127.0.0.1 only.
"""

from __future__ import annotations

import secrets
import threading
import time
from dataclasses import dataclass, field
from typing import Any

from flask import Flask, Response, jsonify, request
from werkzeug.serving import make_server

CONFIG_PATH = "/custom/config"
REPORT_PATH = "/custom/capability"


@dataclass
class Call:
    """One request the stub received."""

    method: str
    path: str
    authorization: str | None
    body: Any
    at: float = field(default_factory=time.monotonic)


def _problem(status: int, title: str, detail: str, kind: str) -> Response:
    response = jsonify({"type": f"urn:cynodeai:error:{kind}", "title": title, "status": status, "detail": detail})
    response.status_code = status
    response.mimetype = "application/problem+json"
    return response


class StubOrchestrator:
    """The stub control plane; change its attributes to shape its answers."""

    def __init__(self, *, psk: str, worker_token: str) -> None:
        self.psk = psk
        self.worker_token = worker_token
        self.config_version_payload = 1  # the "version" of the node configuration it serves
        self.config_version = "01JMCZ8X4Q0C6V7Y5B2N3K9T1R"
        self.readyz_status = 503  # the orchestrator is not ready until a node is
        self.register_answer: tuple[int, str] | None = None  # force e.g. (401, "Invalid registration PSK")
        self.selected_model = "tiny:1b"  # the config's inference_backend.selected_model
        # None: "inference_backend.enabled" follows the capability (!existing_service), as the control
        # plane does; True/False: always that value, the instruction present whatever the capability says.
        self.inference_enabled: bool | None = None
        self.calls: list[Call] = []
        self.node_jwt = ""
        self.node_slug = ""
        self.last_capability: dict[str, Any] = {}
        self._lock = threading.Lock()
        self._server: Any = None
        self._thread: threading.Thread | None = None
        self.app = self._build_app()

    # -------------------------------------------------------------- serving

    def start(self) -> None:
        self._server = make_server("127.0.0.1", 0, self.app, threaded=True)
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self._server.server_port}"

    # ---------------------------------------------------------- inspection

    def calls_to(self, method: str, path: str) -> list[Call]:
        with self._lock:
            return [c for c in self.calls if c.method == method and c.path == path]

    def acks(self) -> list[dict[str, Any]]:
        return [c.body for c in self.calls_to("POST", CONFIG_PATH)]

    def wait_for(self, predicate: Any, timeout: float = 30.0) -> bool:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if predicate():
                return True
            time.sleep(0.05)
        return False

    # ------------------------------------------------------------------ app

    def _record(self) -> Any:
        body = request.get_json(silent=True)
        with self._lock:
            self.calls.append(Call(request.method, request.path, request.headers.get("Authorization"), body))
        return body

    def _node_auth(self) -> Response | None:
        header = request.headers.get("Authorization", "")
        scheme, _, token = header.partition(" ")
        if scheme.lower() != "bearer" or not token:
            return _problem(401, "Unauthorized", "Missing authorization header", "authentication")
        if not self.node_jwt or not secrets.compare_digest(token, self.node_jwt):
            return _problem(401, "Unauthorized", "Invalid or expired token", "authentication")
        return None

    def _node_body(self) -> tuple[dict[str, Any], Response | None]:
        """The JSON object a node posted with its JWT; the refusal instead, when there is one."""
        body = self._record()
        refused = self._node_auth()
        if refused is None and not isinstance(body, dict):
            refused = _problem(400, "Bad Request", "Invalid request body", "validation")
        return (body if isinstance(body, dict) else {}), refused

    def _build_app(self) -> Flask:
        app = Flask("stub_orchestrator")

        @app.get("/readyz")
        def readyz() -> Response:
            self._record()
            return Response(
                "ready" if self.readyz_status == 200 else "no dispatchable node",
                status=self.readyz_status,
                mimetype="text/plain",
            )

        @app.post("/v1/nodes/register")
        def register() -> Response:
            body = self._record()
            if not isinstance(body, dict):
                return _problem(400, "Bad Request", "Invalid request body", "validation")
            if self.register_answer is not None:
                status, detail = self.register_answer
                return _problem(
                    status,
                    "Unauthorized" if status == 401 else "Error",
                    detail,
                    "authentication" if status == 401 else "internal",
                )
            if body.get("psk") != self.psk:
                return _problem(401, "Unauthorized", "Invalid registration PSK", "authentication")
            capability = body.get("capability") or {}
            if capability.get("version") != 1:
                return _problem(400, "Bad Request", "Unsupported capability version", "validation")
            slug = (capability.get("node") or {}).get("node_slug") or ""
            if not slug:
                return _problem(400, "Bad Request", "Node slug is required", "validation")
            created = slug != self.node_slug
            self.node_slug = slug
            self.last_capability = capability
            self.node_jwt = secrets.token_urlsafe(24)
            base = self.url
            response = jsonify(
                {
                    "version": 1,
                    "issued_at": "2026-02-16T12:00:00Z",
                    "orchestrator": {
                        "base_url": base,
                        "endpoints": {
                            "worker_registration_url": f"{base}/v1/nodes/register",
                            "node_report_url": f"{base}{REPORT_PATH}",
                            "node_config_url": f"{base}{CONFIG_PATH}",
                        },
                    },
                    "auth": {"node_jwt": self.node_jwt, "expires_at": "2026-02-17T12:00:00Z"},
                }
            )
            response.status_code = 201 if created else 200
            return response

        @app.get(CONFIG_PATH)
        def get_config() -> Response:
            self._record()
            refused = self._node_auth()
            if refused is not None:
                return refused
            payload: dict[str, Any] = {
                "version": self.config_version_payload,
                "config_version": self.config_version,
                "issued_at": "2026-02-16T12:00:05Z",
                "node_slug": self.node_slug,
                "orchestrator": {
                    "base_url": self.url,
                    "endpoints": {
                        "worker_api_target_url": (self.last_capability.get("worker_api") or {}).get("base_url", ""),
                        "node_report_url": f"{self.url}{REPORT_PATH}",
                    },
                },
                "model_cache": {"cache_url": ""},
                "worker_api": {"orchestrator_bearer_token": self.worker_token},
            }
            inference = self.last_capability.get("inference") or {}
            if inference.get("supported") or self.inference_enabled is not None:
                enabled = self.inference_enabled
                payload["inference_backend"] = {
                    "enabled": not inference.get("existing_service", False) if enabled is None else enabled,
                    "variant": "cpu",
                    "port": 11434,
                    "env": {"OLLAMA_CONTEXT_LENGTH": "8192", "OLLAMA_NUM_CTX": "8192"},
                    "selected_model": self.selected_model,
                }
            return jsonify(payload)

        @app.post(CONFIG_PATH)
        def ack() -> Response:
            body, refused = self._node_body()
            if refused is not None:
                return refused
            if body.get("version") != 1:
                return _problem(400, "Bad Request", "Unsupported config ack version", "validation")
            if body.get("node_slug") != self.node_slug:
                return _problem(400, "Bad Request", "node_slug does not match authenticated node", "validation")
            if body.get("status") not in ("applied", "failed"):
                return _problem(400, "Bad Request", "status must be applied or failed", "validation")
            return Response(status=204)

        @app.post(REPORT_PATH)
        def capability() -> Response:
            body, refused = self._node_body()
            if refused is not None:
                return refused
            self.last_capability = body
            return Response(status=204)

        return app
