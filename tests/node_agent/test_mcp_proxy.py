"""The node's per-job MCP proxy (mcp_contract.md 2.3): one socket, one path, the job's token added on the way out.

The control plane here is a STAND-IN (a loopback HTTP server that records
what reaches it and answers like the gateway's REST form), so a test can see
the exact request the proxy forwards; the real gateway behind a real node is
tests/e2e/test_sba_mcp.py. Jobs run in real Podman sandboxes.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from node_helpers import Worker, WorkerFactory, job_body

from cynode_core.contract.errors import InvalidInput
from cynode_core.contract.job import McpGrant, RunJobRequest
from node_agent.mcp_proxy import SANDBOX_MCP_URL, TOOLS_CALL_PATH, McpProxy
from node_agent.unix_proxy import UnixHTTPConnection

TOKEN = "cyat_" + "A" * 43
GRANT = {"agent_token": TOKEN, "expires_at": "2030-01-01T00:00:00Z"}
ANSWER = {"topics": [{"topic": "help.list", "summary": "the tools you may call"}], "hint": "x"}


class StandInControlPlane:
    """STAND-IN for the orchestrator's gateway: records each request; ``POST /v1/mcp/tools/call`` answers
    ``ANSWER`` for ``help.list`` and a 403 problem for anything else, as the real REST form does."""

    def __init__(self) -> None:
        self.requests: list[dict[str, Any]] = []
        stand_in = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: Any) -> None:
                pass

            def do_POST(self) -> None:  # noqa: N802 - http.server's name
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                stand_in.requests.append({"path": self.path, "headers": dict(self.headers), "body": body})
                call = json.loads(body or b"{}")
                if call.get("tool_name") == "help.list":
                    status, answer, kind = 200, json.dumps(ANSWER).encode(), "application/json"
                else:
                    status, kind = 403, "application/problem+json"
                    answer = json.dumps({"status": 403, "error_type": "agent_allowlist_denied"}).encode()
                self.send_response(status)
                self.send_header("Content-Type", kind)
                self.send_header("Content-Length", str(len(answer)))
                self.send_header("X-Request-Id", "from-the-gateway")
                self.end_headers()
                self.wfile.write(answer)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def control_plane() -> Iterator[StandInControlPlane]:
    stand_in = StandInControlPlane()
    yield stand_in
    stand_in.close()


@pytest.fixture
def mcp_proxy(control_plane: StandInControlPlane, tmp_path: Path) -> Iterator[McpProxy]:
    proxy = McpProxy(tmp_path / "proxy" / "job", control_plane.url, McpGrant(TOKEN), name="job")
    proxy.start()
    proxy.wait_ready()
    yield proxy
    proxy.close()


def call(proxy: McpProxy, method: str, path: str, body: bytes = b"", headers: dict[str, str] | None = None) -> Any:
    conn = UnixHTTPConnection(proxy.socket_path, timeout=10)
    try:
        conn.request(method, path, body=body or None, headers=headers or {})
        answer = conn.getresponse()
        return answer.status, dict(answer.getheaders()), answer.read()
    finally:
        conn.close()


def test_a_tool_call_goes_to_the_gateway_with_the_jobs_token_and_comes_back_unchanged(
    mcp_proxy: McpProxy, control_plane: StandInControlPlane
) -> None:
    body = json.dumps({"tool_name": "help.list", "arguments": {}}).encode()
    status, headers, answer = call(
        mcp_proxy,
        "POST",
        TOOLS_CALL_PATH,
        body,
        {"Content-Type": "application/json", "Authorization": "Bearer forged", "Cookie": "a=b"},
    )
    assert (status, json.loads(answer)) == (200, ANSWER)
    assert headers["Content-Type"] == "application/json" and headers["X-Request-Id"] == "from-the-gateway"
    [seen] = control_plane.requests
    assert seen["path"] == TOOLS_CALL_PATH and seen["body"] == body
    assert seen["headers"]["Authorization"] == f"Bearer {TOKEN}"  # the sandbox's own header never passes
    assert "Cookie" not in seen["headers"]

    status, headers, answer = call(mcp_proxy, "POST", TOOLS_CALL_PATH, b'{"tool_name": "task.get"}')
    assert status == 403 and headers["Content-Type"] == "application/problem+json"
    assert json.loads(answer)["error_type"] == "agent_allowlist_denied"


def test_only_the_tool_call_path_is_relayed(mcp_proxy: McpProxy, control_plane: StandInControlPlane) -> None:
    for method, path in (("POST", "/mcp"), ("POST", "/v1/tasks"), ("GET", "/v1/users/me"), ("POST", "/api/chat")):
        status, _, answer = call(mcp_proxy, method, path, b"{}")
        assert (status, answer) == (403, b"forbidden: not an allowed MCP endpoint"), (method, path)
    status, headers, _ = call(mcp_proxy, "GET", TOOLS_CALL_PATH)
    assert status == 405 and headers["Allow"] == "POST"
    status, _, answer = call(mcp_proxy, "POST", TOOLS_CALL_PATH, b"x" * (10 * 1024 * 1024 + 1))
    assert (status, answer) == (413, b"request body too large")
    assert control_plane.requests == []


def test_a_control_plane_that_is_down_is_502_and_the_socket_goes_at_close(tmp_path: Path) -> None:
    proxy = McpProxy(tmp_path / "proxy" / "job", "http://127.0.0.1:9", McpGrant(TOKEN))
    with proxy:
        proxy.wait_ready()
        status, _, answer = call(proxy, "POST", TOOLS_CALL_PATH, b"{}")
        assert (status, answer) == (502, b"control plane unavailable")
        assert proxy.socket_path.exists()
    assert not proxy.socket_path.exists() and not proxy.socket_dir.exists()


def test_the_grant_is_decoded_checked_and_kept_out_of_reprs() -> None:
    body = job_body(["true"])
    request = RunJobRequest.from_json({**body, "mcp": GRANT})
    assert request.mcp == McpGrant(TOKEN, "2030-01-01T00:00:00Z")
    assert TOKEN not in repr(request) and TOKEN not in str(request.mcp)
    assert request.to_json()["mcp"] == GRANT
    assert RunJobRequest.from_json(body).mcp is None and "mcp" not in RunJobRequest.from_json(body).to_json()
    for bad in ([], {"agent_token": ""}, {"agent_token": 5}, {"agent_token": "a b"}, {"agent_token": "x" * 300}):
        with pytest.raises(InvalidInput):
            RunJobRequest.from_json({**body, "mcp": bad})
    with pytest.raises(InvalidInput):
        RunJobRequest.from_json({**body, "mcp": {"agent_token": "cyat_\ud800"}})


# ================================================= sandbox jobs via the Worker API

SANDBOX_PROBE = r"""
import http.client, json, os, socket, urllib.parse
url = os.environ["MCP_GATEWAY_PROXY_URL"]
path = urllib.parse.unquote(url[len("http+unix://"):])
class C(http.client.HTTPConnection):
    def connect(self):
        self.sock = socket.socket(socket.AF_UNIX); self.sock.connect(path)
c = C("x", timeout=30)
c.request("POST", "/v1/mcp/tools/call", body=json.dumps({"tool_name": "help.list", "arguments": {}}))
r = c.getresponse()
report = {"url": url, "status": r.status, "body": json.loads(r.read())}
report["sockets"] = sorted(os.listdir("/run/cynode"))
report["token_seen"] = any("cyat_" in v for v in os.environ.values())
print(json.dumps(report))
"""


@pytest.fixture
def mcp_worker(start_worker: WorkerFactory, control_plane: StandInControlPlane) -> Worker:
    return start_worker(orchestrator_url=control_plane.url)


def proxy_dirs(worker: Worker) -> list[Path]:
    root = worker.settings.resolved_state_dir / "proxy"
    return list(root.iterdir()) if root.exists() else []


def test_a_job_with_a_grant_reaches_the_gateway_from_its_sandbox_and_never_sees_the_token(
    mcp_worker: Worker, control_plane: StandInControlPlane
) -> None:
    body = {**job_body(["python3", "-c", SANDBOX_PROBE], image="python:alpine"), "mcp": GRANT}
    result = mcp_worker.run(body).json()
    assert result["status"] == "completed", result
    report = json.loads(result["stdout"])
    assert report == {
        "url": SANDBOX_MCP_URL,
        "status": 200,
        "body": ANSWER,
        "sockets": ["mcp-proxy.sock"],
        "token_seen": False,
    }
    [seen] = control_plane.requests
    assert seen["headers"]["Authorization"] == f"Bearer {TOKEN}"
    assert proxy_dirs(mcp_worker) == []  # the socket went with the job


def test_a_job_without_a_grant_has_no_mcp_socket(mcp_worker: Worker) -> None:
    result = mcp_worker.run(job_body(["sh", "-c", "ls -A /run/cynode; echo ${MCP_GATEWAY_PROXY_URL:-none}"])).json()
    assert (result["status"], result["stdout"]) == ("completed", "none\n"), result


def test_a_grant_with_inference_shares_one_socket_directory(
    start_worker: WorkerFactory, control_plane: StandInControlPlane
) -> None:
    worker = start_worker(orchestrator_url=control_plane.url, inference_backend="llamacpp")
    worker.executor.set_inference_backend(control_plane.url, ("stand-in:latest",))  # only its socket is looked at
    body = {
        **job_body(["sh", "-c", "ls -A /run/cynode"], use_inference=True),
        "mcp": GRANT,
    }
    result = worker.run(body).json()
    assert (result["status"], result["stdout"].split()) == ("completed", ["inference-proxy.sock", "mcp-proxy.sock"])
    assert proxy_dirs(worker) == []
