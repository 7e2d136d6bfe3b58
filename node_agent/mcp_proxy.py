"""The per-job MCP proxy: a sandbox's one way to the control plane's MCP gateway (mcp_contract.md 2.3).

A job that comes with an ``mcp`` grant (a sandbox-agent job: the dispatcher
minted a token of role ``sandbox`` bound to the job's user, task and job)
gets a second socket in its proxy directory, ``mcp-proxy.sock``, seen in the
sandbox as ``/run/cynode/mcp-proxy.sock`` with ``MCP_GATEWAY_PROXY_URL``
pointing at it. The proxy accepts only ``POST /v1/mcp/tools/call`` (at most
10 MiB), adds ``Authorization: Bearer <job token>`` and forwards it to the
node's control plane, whose answer it returns unchanged. The token stays in
the node's memory: the sandbox's identity is the socket it holds, and the
token dies with the job (the control plane revokes it when the job ends; the
socket is removed when the run ends).
"""

from __future__ import annotations

import http.client
from pathlib import Path
from urllib.parse import quote, urlsplit

from cynode_core.contract.job import McpGrant
from node_agent.unix_proxy import SANDBOX_SOCKET_DIR, ProxyError, UnixProxy

SOCKET_NAME = "mcp-proxy.sock"
SANDBOX_MCP_SOCKET = f"{SANDBOX_SOCKET_DIR}/{SOCKET_NAME}"
SANDBOX_MCP_URL = "http+unix://" + quote(SANDBOX_MCP_SOCKET, safe="")
TOOLS_CALL_PATH = "/v1/mcp/tools/call"
# A tool call that takes longer than this is cut (the gateway's own limits are shorter).
MCP_REQUEST_TIMEOUT = 60.0


def control_plane_address(base_url: str) -> tuple[str, str, int, str]:
    """``(scheme, host, port, path prefix)`` of the control plane's ``http(s)://`` URL; ``ProxyError`` otherwise."""
    parts = urlsplit(base_url)
    try:
        port = parts.port
    except ValueError as exc:
        raise ProxyError(f"control-plane URL {base_url!r}: {exc}") from None
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ProxyError(f"control-plane URL {base_url!r} is not an http:// or https:// URL")
    return parts.scheme, parts.hostname, port or (443 if parts.scheme == "https" else 80), parts.path.rstrip("/")


class McpProxy(UnixProxy):
    """One job's MCP proxy: tool calls to the control plane at ``control_plane_url`` under the job's token."""

    socket_name = SOCKET_NAME
    sandbox_env = "MCP_GATEWAY_PROXY_URL"
    kind = "MCP"
    upstream_name = "control plane"
    endpoints = {TOOLS_CALL_PATH: "POST"}

    def __init__(self, socket_dir: Path, control_plane_url: str, grant: McpGrant, *, name: str = "") -> None:
        super().__init__(socket_dir, name=name, request_timeout=MCP_REQUEST_TIMEOUT)
        self.upstream_url = control_plane_url
        self._address = control_plane_address(control_plane_url)
        self._grant = grant

    def prepare(self, path: str, body: bytes) -> bytes:
        return body  # the gateway checks the call; the proxy only carries it

    def upstream(self, timeout: float) -> tuple[http.client.HTTPConnection, str, dict[str, str]]:
        scheme, host, port, prefix = self._address
        connection_type = http.client.HTTPSConnection if scheme == "https" else http.client.HTTPConnection
        return (
            connection_type(host, port, timeout=timeout),
            prefix,
            {"Authorization": f"Bearer {self._grant.agent_token}"},
        )
