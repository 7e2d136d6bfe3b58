"""The control-plane client against the stub orchestrator on loopback (docs/wire_contract.md#control-plane)."""

from __future__ import annotations

import socket
from collections.abc import Iterator
from typing import Any

import pytest
from stub_orchestrator import CONFIG_PATH, REPORT_PATH, StubOrchestrator

from node_agent.client import (
    BootstrapError,
    ControlPlaneClient,
    ControlPlaneError,
    OrchestratorUnreachable,
    validate_bootstrap,
)

PSK = "client-test-psk-secret"
CAPABILITY = {
    "version": 1,
    "reported_at": "2026-02-16T12:00:00Z",
    "node": {"node_slug": "node-01"},
    "platform": {"os": "linux", "arch": "amd64"},
    "compute": {"cpu_cores": 1, "ram_mb": 1},
}


@pytest.fixture
def stub() -> Iterator[StubOrchestrator]:
    orchestrator = StubOrchestrator(psk=PSK, worker_token="t")
    orchestrator.start()
    yield orchestrator
    orchestrator.stop()


def _bootstrap(**changes: Any) -> dict[str, Any]:
    payload: dict[str, Any] = {
        "version": 1,
        "issued_at": "2026-02-16T12:00:00Z",
        "orchestrator": {
            "base_url": "http://127.0.0.1:1/",
            "endpoints": {
                "worker_registration_url": "http://127.0.0.1:1/v1/nodes/register",
                "node_report_url": "http://127.0.0.1:1/r",
                "node_config_url": "http://127.0.0.1:1/c",
            },
        },
        "auth": {"node_jwt": "jwt-value", "expires_at": "2026-02-17T12:00:00Z"},
    }
    payload.update(changes)
    return payload


def test_validate_bootstrap_accepts_the_contract_payload() -> None:
    boot = validate_bootstrap(_bootstrap())
    assert (boot.base_url, boot.report_url, boot.config_url) == (
        "http://127.0.0.1:1",
        "http://127.0.0.1:1/r",
        "http://127.0.0.1:1/c",
    )
    assert boot.node_jwt == "jwt-value"
    assert "jwt-value" not in repr(boot)


@pytest.mark.parametrize(
    "payload",
    [
        _bootstrap(version=2),
        _bootstrap(version=True),
        _bootstrap(auth={"node_jwt": ""}),
        _bootstrap(auth=None),
        _bootstrap(orchestrator={"endpoints": {"node_config_url": "http://127.0.0.1:1/c"}}),
        _bootstrap(orchestrator={"endpoints": {"node_report_url": "http://127.0.0.1:1/r"}}),
        [],
    ],
)
def test_validate_bootstrap_rejects_what_upstream_rejects(payload: Any) -> None:
    with pytest.raises(BootstrapError):
        validate_bootstrap(payload)


def test_register_then_use_the_bootstrap_urls_with_the_node_jwt(stub: StubOrchestrator) -> None:
    client = ControlPlaneClient(stub.url, timeout=5)
    boot = client.register(PSK, CAPABILITY)
    assert boot.config_url == f"{stub.url}{CONFIG_PATH}"
    config = client.fetch_config()
    assert config["worker_api"]["orchestrator_bearer_token"] == "t"
    client.report_capability(CAPABILITY)
    client.ack_config(
        {
            "version": 1,
            "node_slug": "node-01",
            "config_version": config["config_version"],
            "ack_at": "2026-02-16T12:00:09Z",
            "status": "applied",
        }
    )
    calls = [(c.method, c.path, c.authorization) for c in stub.calls]
    assert calls == [
        ("POST", "/v1/nodes/register", None),
        ("GET", CONFIG_PATH, f"Bearer {stub.node_jwt}"),
        ("POST", REPORT_PATH, f"Bearer {stub.node_jwt}"),
        ("POST", CONFIG_PATH, f"Bearer {stub.node_jwt}"),
    ]


def test_a_refused_psk_is_an_error_with_status_and_detail_but_no_secret(stub: StubOrchestrator) -> None:
    client = ControlPlaneClient(stub.url, timeout=5)
    with pytest.raises(ControlPlaneError) as caught:
        client.register("wrong-psk-secret", CAPABILITY)
    assert (caught.value.status, caught.value.detail) == (401, "Invalid registration PSK")
    assert str(caught.value) == "registration failed: HTTP 401 Invalid registration PSK"
    assert "wrong-psk-secret" not in str(caught.value)


def test_an_expired_node_token_is_a_401_error(stub: StubOrchestrator) -> None:
    client = ControlPlaneClient(stub.url, timeout=5)
    client.register(PSK, CAPABILITY)
    stub.node_jwt = "rotated-away"
    with pytest.raises(ControlPlaneError) as caught:
        client.report_capability(CAPABILITY)
    assert (caught.value.status, caught.value.detail) == (401, "Invalid or expired token")


def test_an_ack_the_orchestrator_refuses_is_an_error(stub: StubOrchestrator) -> None:
    client = ControlPlaneClient(stub.url, timeout=5)
    client.register(PSK, CAPABILITY)
    with pytest.raises(ControlPlaneError, match="HTTP 400 status must be applied or failed"):
        client.ack_config({"version": 1, "node_slug": "node-01", "config_version": "x", "status": "rolled_back"})


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def test_no_answer_is_orchestrator_unreachable() -> None:
    client = ControlPlaneClient(f"http://127.0.0.1:{_closed_port()}", timeout=2)
    with pytest.raises(OrchestratorUnreachable, match="registration failed: ConnectionError"):
        client.register(PSK, CAPABILITY)
    assert client.probe_readyz() is None
    with pytest.raises(OrchestratorUnreachable, match="not reachable after 0.2 s"):
        client.wait_reachable(0.2, interval=0.1)


def test_readyz_503_counts_as_reachable(stub: StubOrchestrator) -> None:
    client = ControlPlaneClient(stub.url, timeout=5)
    assert client.probe_readyz() == 503
    client.wait_reachable(1.0)
