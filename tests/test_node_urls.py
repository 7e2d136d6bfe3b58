"""How far the orchestrator trusts a node's network answers (issue 11, item 6).

A node's Worker API URL is checked where it enters (registration, capability
report; an admin's override in tests/test_cli_admin.py); the orchestrator
never follows a node's redirect, reads at most a bounded body from it, and
never repeats a node's text in its own unauthenticated ``/readyz``. Nodes are
played by standard-library HTTP servers on loopback; the orchestrator is the
real app on the test's own PostgreSQL database.
"""

from __future__ import annotations

import threading
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest
from acceptance.conftest import assert_problem
from harness.api import ApiClient
from harness.loopback import PeerHandler, RecordingListener, serving
from harness.nodes import NodeHandle, capability, make_dispatchable, register
from harness.orchestrator import USER_PASSWORD, InProcessDispatcher, create_users, jobs_of, rows
from harness.processes import wait_until

from cynode_core.contract.errors import InvalidInput
from cynode_core.contract.job import RunJobRequest, SandboxRequest
from cynode_core.orchestrator import node_client
from cynode_core.orchestrator.dispatch.node_monitor import NodeMonitor
from cynode_core.orchestrator.node_client import NodeEndpoint, run_job
from cynode_core.orchestrator.services import readiness
from cynode_core.orchestrator.services.node_urls import checked_worker_url
from cynode_core.orchestrator.settings import DEFAULT_NODE_URL_NETWORKS, parse_networks

DEFAULTS = parse_networks(DEFAULT_NODE_URL_NETWORKS)

# Refused whatever the networks: (URL, what the 400's detail says).
MALFORMED = [
    ("http://user:secret@127.0.0.1:12090", "must not carry a user name or password"),
    ("http://127.0.0.1:12090/?next=http://8.8.8.8", "must not carry a query or fragment"),
    ("http://127.0.0.1:12090/#frag", "must not carry a query or fragment"),
    ("ftp://127.0.0.1:12090", "must be an http:// or https:// URL"),
    ("http://:12090", "has no host"),
    ("http://127.0.0.1:0", "port is out of range"),
    ("http://127.0.0.1:99999", "port is out of range"),
    ("http://127.0.0.1\\@8.8.8.8:12090", "without spaces or backslashes"),
]
# Well formed, outside the default networks (never contacted: only checked).
OUTSIDE = ["http://8.8.8.8:12090", "http://169.254.169.254", "http://[2001:4860:4860::8888]:12090", "http://0.0.0.0:1"]
INSIDE = [
    "http://127.0.0.1:12090",
    "https://[::1]:12090/worker/",
    "http://localhost:12090",
    "http://10.1.2.3:12090",
    "http://192.168.7.8",
    "http://[::ffff:127.0.0.1]:12090",
]


# -- the check itself ----------------------------------------------------------


@pytest.mark.parametrize(("url", "why"), MALFORMED)
def test_a_malformed_url_is_refused(url: str, why: str) -> None:
    with pytest.raises(InvalidInput, match=why):
        checked_worker_url(url, parse_networks("0.0.0.0/0, ::/0"))  # refused even with every network allowed


@pytest.mark.parametrize("url", OUTSIDE)
def test_a_url_outside_the_networks_is_refused(url: str) -> None:
    with pytest.raises(InvalidInput, match="outside the networks nodes may use"):
        checked_worker_url(url, DEFAULTS)


@pytest.mark.parametrize("url", INSIDE)
def test_a_loopback_or_private_url_passes(url: str) -> None:
    assert checked_worker_url(url, DEFAULTS) == url.rstrip("/")


def test_a_host_name_is_checked_by_what_it_resolves_to() -> None:
    """``localhost`` resolves (from /etc/hosts, offline) to loopback only: outside 10.0.0.0/8."""
    with pytest.raises(InvalidInput, match="host localhost is outside"):
        checked_worker_url("http://localhost:12090", parse_networks("10.0.0.0/8"))
    with pytest.raises(InvalidInput, match="does not resolve"):
        checked_worker_url("http://no-such-node.invalid:12090", DEFAULTS)


# -- where a node names its URL --------------------------------------------------


def _node_rows(orchestrator: Any) -> list[Any]:
    return rows(orchestrator.db, "SELECT node_slug, worker_api_target_url FROM nodes")


def test_registration_refuses_a_url_the_check_refuses(api: ApiClient, orchestrator: Any) -> None:
    psk = orchestrator.secrets.psk
    for url, why in [*MALFORMED, *((u, "outside the networks") for u in OUTSIDE)]:
        resp = api.post("/v1/nodes/register", json={"psk": psk, "capability": capability("node-x", url)})
        body = assert_problem(resp, 400)
        assert why in body["detail"] and body["detail"].startswith("Worker API URL"), (url, body)
    assert _node_rows(orchestrator) == []

    node = NodeHandle("node-x", "http://127.0.0.1:12090")
    register(api, psk, node)
    assert [tuple(r.values()) for r in _node_rows(orchestrator)] == [("node-x", "http://127.0.0.1:12090")]


@pytest.mark.parametrize("settings_overrides", [{"node_url_networks": "10.0.0.0/8"}])
def test_the_operator_chooses_the_networks(api: ApiClient, orchestrator: Any) -> None:
    psk = orchestrator.secrets.psk
    refused = api.post("/v1/nodes/register", json={"psk": psk, "capability": capability("n", "http://localhost:1")})
    assert "host localhost is outside" in assert_problem(refused, 400)["detail"]
    register(api, psk, NodeHandle("n", "http://10.20.30.40:12090"))
    assert [r["worker_api_target_url"] for r in _node_rows(orchestrator)] == ["http://10.20.30.40:12090"]


def test_a_capability_report_with_a_refused_url_changes_nothing(api: ApiClient, orchestrator: Any) -> None:
    node = NodeHandle("node-r", "http://127.0.0.1:12090")
    register(api, orchestrator.secrets.psk, node)
    bad = capability(node.slug, "http://u:p@127.0.0.1:12091")
    resp = api.post("/v1/nodes/capability", json=bad, token=node.jwt)
    assert_problem(resp, 400, "Worker API URL must not carry a user name or password")
    assert [r["worker_api_target_url"] for r in _node_rows(orchestrator)] == ["http://127.0.0.1:12090"]
    snapshots = rows(orchestrator.db, "SELECT count(*) AS n FROM node_capabilities")
    assert snapshots[0]["n"] == 1  # the registration's only


# -- a node's answers ----------------------------------------------------------------


@dataclass(frozen=True)
class Answer:
    status: int
    body: bytes = b""
    headers: dict[str, str] = field(default_factory=dict)


class FakeNode(PeerHandler):
    """A node's Worker API reduced to fixed answers to ``GET /readyz`` and ``POST`` (jobs:run, cancel)."""

    readyz = Answer(200, b"ready")
    run = Answer(200, b"{}")

    def do_GET(self) -> None:  # noqa: N802
        self.reply(self.readyz)

    def do_POST(self) -> None:  # noqa: N802
        self.rfile.read(int(self.headers.get("Content-Length") or 0))
        self.reply(self.run)

    def reply(self, answer: Answer) -> None:
        self.send_response(answer.status)
        for name, value in answer.headers.items():
            self.send_header(name, value)
        self.send_header("Content-Length", str(len(answer.body)))
        self.end_headers()
        self.wfile.write(answer.body)


@pytest.fixture
def elsewhere() -> Iterator[RecordingListener]:
    """Where a node's redirect points: another loopback port that counts who connects."""
    listener = RecordingListener()
    yield listener
    listener.close()


def _redirect_to(listener: RecordingListener) -> Answer:
    return Answer(307, headers={"Location": f"http://127.0.0.1:{listener.port}/v1/worker/jobs:run"})


def _request() -> RunJobRequest:
    return RunJobRequest(str(uuid.uuid4()), str(uuid.uuid4()), SandboxRequest(command=("true",)))


@pytest.mark.parametrize("settings_overrides", [{"dispatcher_enabled": True, "dispatch_poll_interval": 0.2}])
def test_a_redirect_from_jobs_run_fails_the_job_and_is_not_followed(
    api: ApiClient, orchestrator: Any, elsewhere: RecordingListener
) -> None:
    handler = type("RedirectingNode", (FakeNode,), {"run": _redirect_to(elsewhere)})
    with serving(handler) as url:
        make_dispatchable(api, orchestrator.secrets.psk, NodeHandle("node-307", url))
        create_users(orchestrator.db, "alice")
        api.login("alice", USER_PASSWORD, expect=200)
        dispatcher = InProcessDispatcher(orchestrator.app.extensions["cynode"])
        try:
            task_id = api.create_command("echo hi")
            job = wait_until(
                lambda: next((j for j in jobs_of(orchestrator.db, task_id) if j["status"] == "failed"), None),
                15.0,
                "the job to fail",
            )
        finally:
            dispatcher.stop()
    assert job["result"]["error"] == "worker api returned 307 Temporary Redirect (redirects are not followed)"
    assert elsewhere.connections == 0


class _Flood(PeerHandler):
    """A 200 whose body (no length given: it ends with the connection) is far longer than any cap."""

    total = 64 * 1024 * 1024
    sent = 0
    done = threading.Event()

    def do_POST(self) -> None:  # noqa: N802
        self.rfile.read(int(self.headers.get("Content-Length") or 0))
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.end_headers()
        block = b" " * 65536
        try:
            while type(self).sent < self.total:
                self.wfile.write(block)
                type(self).sent += len(block)
        except OSError:
            pass  # the orchestrator hung up: what this test wants
        finally:
            type(self).done.set()


def test_an_oversized_answer_fails_as_bad_response_without_being_read_whole(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(node_client, "MAX_ANSWER_BYTES", 1024 * 1024)
    flood = type("Flood", (_Flood,), {"sent": 0, "done": threading.Event()})
    with serving(flood) as url:
        outcome = run_job(NodeEndpoint(url, "token"), _request(), timeout=10.0)
        assert flood.done.wait(10)
    assert (outcome.reason, outcome.retryable) == ("bad_response", False)
    assert outcome.error == "worker api returned a body over 1048576 bytes"
    assert flood.sent < flood.total // 4, flood.sent  # it stopped reading soon after the cap


def test_an_answer_declaring_an_oversized_length_is_not_read() -> None:
    lying = Answer(200, b"{", {"Content-Type": "application/json"})
    handler = type("Lying", (FakeNode,), {"run": lying, "reply": _declare_one_tebibyte})
    with serving(handler) as url:
        outcome = run_job(NodeEndpoint(url, "token"), _request(), timeout=10.0)
    assert (outcome.reason, outcome.error) == ("bad_response", "worker api returned a body over 16777216 bytes")


def _declare_one_tebibyte(self: FakeNode, answer: Answer) -> None:
    self.send_response(answer.status)
    self.send_header("Content-Length", str(1 << 40))
    self.end_headers()
    self.wfile.write(answer.body)


# -- the orchestrator's /readyz ------------------------------------------------------


@pytest.fixture(autouse=True)
def _no_probe_cache(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(readiness, "PROBE_CACHE_SECONDS", 0.0)


def _readyz_with_node_answering(api: ApiClient, orchestrator: Any, slug: str, answer: Answer) -> str:
    """The orchestrator's ``/readyz`` body while its one node (re-registered at a new URL) answers its probes so;
    the node monitor probes it too."""
    handler = type("ProbedNode", (FakeNode,), {"readyz": answer})
    with serving(handler) as url:
        make_dispatchable(api, orchestrator.secrets.psk, NodeHandle(slug, url))
        resp = api.get("/readyz")
        NodeMonitor(orchestrator.app.extensions["cynode"]).check_once()
    assert resp.status_code == 503
    return resp.text


def test_readyz_never_repeats_what_a_node_answered(api: ApiClient, orchestrator: Any) -> None:
    hostile = b"<script>alert(1)</script>\nSet-Cookie: x=1\n" + b"A" * 100_000
    plain = _readyz_with_node_answering(api, orchestrator, "node-1", Answer(503, b"busy"))
    attacked = _readyz_with_node_answering(api, orchestrator, "node-1", Answer(503, hostile))
    assert attacked == plain
    assert "dispatchable node: failing (node-1: readyz answered 503)" in attacked
    assert "busy" not in plain and "script" not in attacked and "AAAA" not in attacked


def test_a_node_probe_does_not_follow_a_redirect(
    api: ApiClient, orchestrator: Any, elsewhere: RecordingListener
) -> None:
    text = _readyz_with_node_answering(api, orchestrator, "node-2", _redirect_to(elsewhere))
    assert "dispatchable node: failing (node-2: readyz answered 307)" in text
    assert elsewhere.connections == 0  # neither /readyz nor the node monitor went there
