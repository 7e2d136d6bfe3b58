"""A pre-shared key is not a master key: registering a node's slug again revokes the node JWT it held.

Over real HTTP on loopback against a real PostgreSQL. Every node request
checks the token against the node's row, so the previous holder's JWT stops
working on its next request, whoever registered again (the node itself after
a restart, or someone else with the PSK).
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from harness.api import ApiClient
from harness.nodes import NodeHandle, capability, fetch_config, register
from sqlalchemy import delete, select

from cynode_core.orchestrator.models import AuthAuditLog, Node

INVALID = "Invalid or expired token"


@pytest.fixture
def live(live_orchestrator: str) -> Iterator[ApiClient]:
    client = ApiClient(live_orchestrator)
    yield client
    client.http.close()


def test_registering_a_live_slug_again_revokes_the_old_node_jwt(live: ApiClient, orchestrator) -> None:  # type: ignore[no-untyped-def]
    node = NodeHandle("node-victim", "http://127.0.0.1:12090")
    register(live, orchestrator.secrets.psk, node)
    fetch_config(live, node)
    first = node.jwt

    impostor = NodeHandle("node-victim", "http://127.0.0.1:12091")
    register(live, orchestrator.secrets.psk, impostor)

    # The JWT of the first registration is dead at once, on every node route.
    for method, path, body in [
        ("GET", "/v1/nodes/config", None),
        ("POST", "/v1/nodes/capability", capability("node-victim", "http://127.0.0.1:12090")),
        ("POST", "/v1/nodes/config", {"version": 1, "node_slug": "node-victim", "status": "applied"}),
    ]:
        resp = live.send(method, path, token=first, json=body)
        assert resp.status_code == 401, (path, resp.text)
        assert resp.json()["detail"] == INVALID
    assert live.get("/v1/nodes/config", token=impostor.jwt).status_code == 200

    with orchestrator.db.session() as session:
        reasons = list(
            session.scalars(select(AuthAuditLog.reason).where(AuthAuditLog.event_type == "node_reregistered"))
        )
    assert len(reasons) == 1 and "previous node token revoked" in (reasons[0] or "")

    # The node registers again (as the agent does on a 401): now the impostor's token is the dead one.
    register(live, orchestrator.secrets.psk, node)
    fetch_config(live, node)
    assert live.get("/v1/nodes/config", token=impostor.jwt).status_code == 401


def test_a_token_of_a_removed_node_is_still_answered_404(live: ApiClient, orchestrator) -> None:  # type: ignore[no-untyped-def]
    node = NodeHandle("node-gone", "http://127.0.0.1:12090")
    register(live, orchestrator.secrets.psk, node)
    with orchestrator.db.session() as session:
        session.execute(delete(Node).where(Node.node_slug == "node-gone"))
    resp = live.get("/v1/nodes/config", token=node.jwt)
    assert resp.status_code == 404 and resp.json()["detail"] == "Node not found"
