"""Throttles of the gateway and control plane, over real HTTP on loopback against a real PostgreSQL.

No user can lock another out: failed logins throttle the address they come
from, and per account they only slow down the addresses that have been
failing, so the right password from another address still logs in (OWASP
ASVS 2.2.1). ``X-Forwarded-For`` counts only from a trusted proxy and is read
from the right. Refresh and node registration have per-address limits, and a
flood of refused requests leaves a bounded number of audit rows.
"""

from __future__ import annotations

import http.client
import json
import time
from collections.abc import Iterator
from typing import Any
from urllib.parse import urlsplit

import pytest
from harness.api import ApiClient
from harness.nodes import capability
from sqlalchemy import func, select

from cynode_core.orchestrator.models import AuthAuditLog
from cynode_core.orchestrator.services import accounts

ATTACKER, VICTIM_HOME, OTHER = "203.0.113.66", "198.51.100.20", "198.51.100.30"


@pytest.fixture
def settings_overrides() -> dict[str, Any]:
    return {"login_handle_failures": 3, "login_source_failures": 6}


@pytest.fixture
def live(live_orchestrator: str) -> Iterator[ApiClient]:
    client = ApiClient(live_orchestrator)
    yield client
    client.http.close()


@pytest.fixture
def victim(orchestrator) -> str:  # type: ignore[no-untyped-def]
    with orchestrator.db.session() as session:
        accounts.create_user(session, "victim", "victim-pass-1")
    return "victim"


def audit_count(orchestrator, **where: Any) -> int:  # type: ignore[no-untyped-def]
    stmt = select(func.count()).select_from(AuthAuditLog)
    for key, value in where.items():
        stmt = stmt.where(getattr(AuthAuditLog, key) == value)
    with orchestrator.db.session() as session:
        return int(session.scalar(stmt) or 0)


def audit_addresses(orchestrator) -> list[str | None]:  # type: ignore[no-untyped-def]
    with orchestrator.db.session() as session:
        return list(
            session.scalars(
                select(AuthAuditLog.ip_address)
                .where(AuthAuditLog.event_type == "login_failure")
                .order_by(AuthAuditLog.created_at)
            )
        )


def login_with_header_lines(url: str, forwarded: tuple[str, ...]) -> int:
    """A failed login whose ``X-Forwarded-For`` comes as several header lines (``requests`` sends one)."""
    parts = urlsplit(url)
    conn = http.client.HTTPConnection(parts.hostname or "", parts.port, timeout=10)
    try:
        conn.putrequest("POST", "/v1/auth/login")
        body = json.dumps({"handle": "nobody", "password": "x"}).encode()
        for value in forwarded:
            conn.putheader("X-Forwarded-For", value)
        conn.putheader("Content-Type", "application/json")
        conn.putheader("Content-Length", str(len(body)))
        conn.endheaders(body)
        return conn.getresponse().status
    finally:
        conn.close()


def throttled(resp: Any, detail: str) -> int:
    assert resp.status_code == 429, resp.text
    assert resp.headers["Content-Type"] == "application/problem+json"
    assert resp.json()["detail"] == detail
    return int(resp.headers["Retry-After"])


# -- no lockout ------------------------------------------------------------------------------


def test_an_attacker_cannot_lock_the_victim_out(live: ApiClient, victim: str) -> None:
    for _ in range(5):
        assert live.login(victim, "guess", ip=ATTACKER).status_code in (401, 429)
    # The failing address is slowed down, even with the right password...
    wait = throttled(live.login(victim, "victim-pass-1", ip=ATTACKER), "Too many failed logins for this user")
    assert 1 <= wait <= 8
    # ...but the victim, from an address that has not been failing, logs in.
    assert live.login(victim, "victim-pass-1", ip=VICTIM_HOME).status_code == 200
    assert live.login(victim, "victim-pass-1", ip=OTHER).status_code == 200


def test_a_failing_address_is_slowed_down_not_locked_out(live: ApiClient, victim: str) -> None:
    for _ in range(3):
        assert live.login(victim, "guess", ip=ATTACKER).status_code == 401
    first = throttled(live.login(victim, "guess", ip=ATTACKER), "Too many failed logins for this user")
    time.sleep(first)
    assert live.login(victim, "guess", ip=ATTACKER).status_code == 401
    # Each further failure doubles the wait...
    second = throttled(live.login(victim, "victim-pass-1", ip=ATTACKER), "Too many failed logins for this user")
    assert first >= 1 and abs(second - 2 * first) <= 1, (first, second)
    time.sleep(second)
    # ...and once it is over the right password from the failing address works.
    assert live.login(victim, "victim-pass-1", ip=ATTACKER).status_code == 200


def test_failed_logins_throttle_their_source(live: ApiClient, orchestrator) -> None:  # type: ignore[no-untyped-def]
    for i in range(6):  # password spraying: one guess per account, from one address
        assert live.login(f"user{i}", "guess", ip=ATTACKER).status_code == 401
    wait = throttled(
        live.login("admin", orchestrator.secrets.admin_password, ip=ATTACKER),
        "Too many failed logins from this address",
    )
    assert 1 <= wait <= orchestrator.settings.login_handle_window
    assert live.login("admin", orchestrator.secrets.admin_password, ip=OTHER).status_code == 200


# -- X-Forwarded-For --------------------------------------------------------------------------


@pytest.mark.parametrize("settings_overrides", [{"trusted_proxies": "192.0.2.1/32"}])
def test_forwarded_for_from_an_untrusted_peer_is_ignored(live: ApiClient, orchestrator) -> None:  # type: ignore[no-untyped-def]
    assert live.login("nobody", "x", ip="198.51.100.7").status_code == 401
    resp = live.post(
        "/v1/auth/login", json={"handle": "nobody", "password": "x"}, headers={"X-Real-IP": "198.51.100.8"}
    )
    assert resp.status_code == 401
    assert audit_addresses(orchestrator) == ["127.0.0.1", "127.0.0.1"]


@pytest.mark.parametrize("settings_overrides", [{"trusted_proxies": "127.0.0.0/8, 10.0.0.0/8"}])
def test_forwarded_for_from_a_trusted_proxy_is_read_from_the_right(live: ApiClient, orchestrator) -> None:  # type: ignore[no-untyped-def]
    # The client forged the first entry; the trusted proxies 10.x appended the rest.
    assert live.login("nobody", "x", ip="198.51.100.7, 203.0.113.5, 10.1.2.3").status_code == 401
    # Two header lines count as one list.
    assert login_with_header_lines(live.url, ("198.51.100.9", "203.0.113.6")) == 401
    # Every hop a trusted proxy: the farthest one is the client.
    assert live.login("nobody", "x", ip="10.9.9.9, 10.1.1.1").status_code == 401
    assert audit_addresses(orchestrator) == ["203.0.113.5", "203.0.113.6", "10.9.9.9"]


# -- refresh and registration -------------------------------------------------------------------


@pytest.mark.parametrize("settings_overrides", [{"refresh_rate_per_minute": 5}])
def test_a_refresh_flood_gets_429_and_few_audit_rows(live: ApiClient, orchestrator) -> None:  # type: ignore[no-untyped-def]
    headers = {"X-Forwarded-For": ATTACKER}
    for _ in range(5):
        assert live.post("/v1/auth/refresh", json={"refresh_token": "x.y.z"}, headers=headers).status_code == 401
    for _ in range(20):
        resp = live.post("/v1/auth/refresh", json={"refresh_token": "x.y.z"}, headers=headers)
        assert 1 <= throttled(resp, "Too many refresh attempts") <= 60
    assert audit_count(orchestrator, event_type="refresh_failure", reason="rate limited") == 1
    # Another address refreshes as usual.
    pair = live.login("admin", orchestrator.secrets.admin_password, ip=OTHER, expect=200).json()
    resp = live.post(
        "/v1/auth/refresh", json={"refresh_token": pair["refresh_token"]}, headers={"X-Forwarded-For": OTHER}
    )
    assert resp.status_code == 200


@pytest.mark.parametrize("settings_overrides", [{"register_rate_per_minute": 5}])
def test_a_registration_flood_gets_429_and_few_audit_rows(live: ApiClient, orchestrator) -> None:  # type: ignore[no-untyped-def]
    headers = {"X-Forwarded-For": ATTACKER}
    body = {"psk": "guess", "capability": capability("node-x", "http://127.0.0.1:12090")}
    for _ in range(5):
        assert live.post("/v1/nodes/register", json=body, headers=headers).status_code == 401
    for _ in range(20):
        resp = live.post("/v1/nodes/register", json=body, headers=headers)
        assert 1 <= throttled(resp, "Too many registration attempts") <= 60
    assert audit_count(orchestrator, event_type="node_register", reason="rate limited") == 1
    good = {**body, "psk": orchestrator.secrets.psk}
    assert live.post("/v1/nodes/register", json=good, headers={"X-Forwarded-For": OTHER}).status_code == 201


@pytest.mark.parametrize("settings_overrides", [{"login_rate_per_minute": 3}])
def test_a_throttled_login_flood_writes_one_audit_row_per_window(live: ApiClient, orchestrator) -> None:  # type: ignore[no-untyped-def]
    for i in range(3):
        assert live.login(f"user{i}", "x", ip=ATTACKER).status_code == 401
    for i in range(30):
        throttled(live.login(f"user{i}", "x", ip=ATTACKER), "Too many login attempts")
    assert audit_count(orchestrator, event_type="login_failure", reason="rate limited") == 1
    assert audit_count(orchestrator, event_type="login_failure") == 4
