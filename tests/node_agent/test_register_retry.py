"""A node waits out the orchestrator's per-address registration limit (429) instead of giving up."""

from __future__ import annotations

import threading

import pytest
from node_helpers import NODE_PSK
from stub_orchestrator import StubOrchestrator

from node_agent.client import ControlPlaneClient
from node_agent.control_session import ControlSession, StartupError
from node_agent.readiness import Readiness

CAPABILITY = {"version": 1, "node": {"node_slug": "node-01"}, "platform": {"os": "linux", "arch": "amd64"}}


def session_for(stub: StubOrchestrator) -> ControlSession:
    client = ControlPlaneClient(stub.url, timeout=5)
    return ControlSession(
        client,
        NODE_PSK,
        node_slug="node-01",
        readiness=Readiness(),
        capability=lambda: CAPABILITY,
        stop=threading.Event(),
    )


def test_registration_is_retried_after_a_429(stub: StubOrchestrator) -> None:
    stub.register_answer = (429, "Too many registration attempts")
    lift = threading.Timer(1.5, lambda: setattr(stub, "register_answer", None))
    lift.start()
    try:
        session_for(stub).register(timeout=20)
    finally:
        lift.cancel()
    assert len(stub.calls_to("POST", "/v1/nodes/register")) >= 2


def test_a_refused_psk_is_still_final(stub: StubOrchestrator) -> None:
    stub.register_answer = (401, "Invalid registration PSK")
    with pytest.raises(StartupError, match="Invalid registration PSK"):
        session_for(stub).register(timeout=20)
    assert len(stub.calls_to("POST", "/v1/nodes/register")) == 1
