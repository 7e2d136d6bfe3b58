"""The per-job inference proxy: Ollama's API for one sandbox, on a Unix socket only.

A job with ``sandbox.use_inference`` gets its own proxy: a small HTTP/1.1
server on ``<state_dir>/proxy/<job_id>/inference-proxy.sock``, the directory
bind-mounted read-only at ``/run/cynode`` in a container that keeps
``--network none`` (``unix_proxy``). It forwards a fixed list of inference
endpoints to the node's backend on loopback and refuses everything else, so
a job can ask the model questions but cannot pull, push, create, copy or
delete models; a body that names a model is pinned to the node's policy
(``inference_policy``: its models, no ``keep_alive``, bounded options).

The rules are docs/wire_contract.md#inference-proxy; ``proxy_handler``
answers each request.
"""

from __future__ import annotations

import http.client
import ipaddress
from pathlib import Path
from urllib.parse import quote, urlsplit

from node_agent.inference_policy import InferencePolicy, pin_request
from node_agent.metrics import NodeMetrics
from node_agent.unix_proxy import (
    MAX_BODY_BYTES,
    MAX_CONNECTIONS,
    REQUEST_TIMEOUT,
    SANDBOX_SOCKET_DIR,
    ProxyError,
    UnixProxy,
)

SOCKET_NAME = "inference-proxy.sock"
# The socket inside the sandbox, and the URL jobs get.
SANDBOX_SOCKET_PATH = f"{SANDBOX_SOCKET_DIR}/{SOCKET_NAME}"
SANDBOX_PROXY_URL = "http+unix://" + quote(SANDBOX_SOCKET_PATH, safe="")  # every "/" as %2F, like Go's PathEscape

# The endpoints a sandbox may use: asking the model, and reading what it is.
# Model management (pull, push, create, copy, delete, blobs) is refused.
ALLOWED_ENDPOINTS: dict[str, str] = {
    "/api/tags": "GET",
    "/api/version": "GET",
    "/api/show": "POST",
    "/api/generate": "POST",
    "/api/chat": "POST",
    "/api/embed": "POST",
    "/api/embeddings": "POST",
}


def loopback_upstream(base_url: str) -> tuple[str, int, str]:
    """``(host, port, path prefix)`` of an ``http://`` URL on a loopback address; ``ProxyError`` otherwise.

    The proxy's traffic must never leave the node (docs/wire_contract.md#inference-proxy).
    """
    parts = urlsplit(base_url)
    host = parts.hostname or ""
    try:
        port = parts.port or 80
    except ValueError as exc:
        raise ProxyError(f"inference backend URL {base_url!r}: {exc}") from None
    if parts.scheme != "http" or not host:
        raise ProxyError(f"inference backend URL {base_url!r} is not an http:// URL")
    if host != "localhost":
        try:
            loopback = ipaddress.ip_address(host).is_loopback
        except ValueError:
            loopback = False
        if not loopback:
            raise ProxyError(f"inference backend URL {base_url!r} is not on a loopback address")
    return host, port, parts.path.rstrip("/")


class InferenceProxy(UnixProxy):
    """One job's inference proxy to the node's backend at ``upstream_url`` (loopback only)."""

    socket_name = SOCKET_NAME
    sandbox_env = "INFERENCE_PROXY_URL"
    kind = "inference"
    upstream_name = "inference backend"
    endpoints = ALLOWED_ENDPOINTS

    def __init__(
        self,
        socket_dir: Path,
        upstream_url: str,
        *,
        policy: InferencePolicy,
        name: str = "",
        max_body_bytes: int = MAX_BODY_BYTES,
        request_timeout: float = REQUEST_TIMEOUT,
        max_connections: int = MAX_CONNECTIONS,
        metrics: NodeMetrics | None = None,
    ) -> None:
        super().__init__(
            socket_dir,
            name=name,
            max_body_bytes=max_body_bytes,
            request_timeout=request_timeout,
            max_connections=max_connections,
        )
        # Request counts, latency and backend-reported tokens go here (node_agent.metrics).
        self.metrics = metrics
        self.upstream_url = upstream_url
        # What a job may ask of the backend (node_agent.inference_policy).
        self.policy = policy
        self.backend_address = loopback_upstream(upstream_url)

    def prepare(self, path: str, body: bytes) -> bytes:
        return pin_request(path, body, self.policy)

    def upstream(self, timeout: float) -> tuple[http.client.HTTPConnection, str, dict[str, str]]:
        host, port, prefix = self.backend_address
        return http.client.HTTPConnection(host, port, timeout=timeout), prefix, {}
