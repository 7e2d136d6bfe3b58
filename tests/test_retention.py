"""Bounded tables: the orchestrator's retention sweeper (cynode_core/orchestrator/services/retention.py).

Real parts: the test's own PostgreSQL database, rows planted with old
timestamps in SQL, and, for the scheduling, a real ``cynode orchestrator
serve`` process with a short ``CYNODE_RETENTION_INTERVAL``. Every kind of
row is planted twice: a copy past its retention (must go) and copies that
are still needed (must stay): the latest capability snapshot of a node
however old, a revoked refresh session whose token has not expired yet
(replaying it must still revoke its family), audit rows younger than the
retention, counters whose window may still matter.
"""

from __future__ import annotations

import dataclasses
import threading
from pathlib import Path
from typing import Any

from harness.orchestrator import OrchestratorUnderTest, Secrets
from harness.processes import Orchestrator, orchestrator_environ, wait_until
from sqlalchemy import text
from sqlalchemy.engine import Engine

from cynode_core.orchestrator.services.retention import (
    SWEEP_LOCK_KEY,
    RetentionPolicy,
    claim_turn,
    sweep,
)

TABLES = {
    "auth_audit_log": "id",
    "chat_audit_log": "id",
    "api_keys": "id",
    "agent_tokens": "id",
    "refresh_sessions": "id",
    "rate_limit_counters": "key",
    "node_capabilities": "id",
}


@dataclasses.dataclass
class Planted:
    """Keys of the planted rows, by table: those past their retention and those still needed."""

    doomed: dict[str, set[str]] = dataclasses.field(default_factory=lambda: {t: set() for t in TABLES})
    needed: dict[str, set[str]] = dataclasses.field(default_factory=lambda: {t: set() for t in TABLES})


def _ids(conn: Any, sql: str, **params: Any) -> set[str]:
    return {str(row[0]) for row in conn.execute(text(sql), params)}


def plant(engine: Engine) -> Planted:
    """Rows of every kind the sweeper bounds, with the default policy's expectations."""
    planted = Planted()
    with engine.begin() as conn:
        user_id = conn.execute(text("SELECT id FROM users WHERE handle = 'admin'")).scalar_one()

        def audit(age: str) -> set[str]:
            return _ids(
                conn,
                "INSERT INTO auth_audit_log (id, event_type, success, reason, created_at) "
                "SELECT gen_random_uuid(), 'login_failure', false, 'planted', now() - CAST(:age AS interval) "
                "FROM generate_series(1, 3) RETURNING id",
                age=age,
            )

        planted.doomed["auth_audit_log"] |= audit("100 days") | audit("91 days")
        planted.needed["auth_audit_log"] |= audit("89 days") | audit("1 minute")

        def chat_audit(age: str) -> set[str]:
            return _ids(
                conn,
                "INSERT INTO chat_audit_log (id, outcome, created_at) "
                "SELECT gen_random_uuid(), 'success', now() - CAST(:age AS interval) "
                "FROM generate_series(1, 2) RETURNING id",
                age=age,
            )

        planted.doomed["chat_audit_log"] |= chat_audit("95 days")
        planted.needed["chat_audit_log"] |= chat_audit("80 days")

        def api_key(revoked: str | None, expires: str | None) -> set[str]:
            return _ids(
                conn,
                "INSERT INTO api_keys (id, user_id, name, prefix, key_hash, revoked_at, expires_at) "
                "VALUES (gen_random_uuid(), :u, 'k', 'cyk_x', md5(random()::text), "
                "now() - CAST(:revoked AS interval), now() - CAST(:expires AS interval)) RETURNING id",
                u=user_id,
                revoked=revoked,
                expires=expires,
            )

        planted.doomed["api_keys"] |= api_key("100 days", None) | api_key(None, "91 days")
        # Revoked lately, expired lately, expiring in the future, or live: kept.
        planted.needed["api_keys"] |= api_key("10 days", None) | api_key(None, "1 day")
        planted.needed["api_keys"] |= api_key(None, "-30 days") | api_key(None, None)

        def agent_token(expires: str) -> set[str]:
            return _ids(
                conn,
                "INSERT INTO agent_tokens (id, token_hash, role, user_id, issued_by, expires_at) "
                "VALUES (gen_random_uuid(), uuid_send(gen_random_uuid()), 'pa', :u, 'admin:admin', "
                "now() - CAST(:expires AS interval)) RETURNING id",
                u=user_id,
                expires=expires,
            )

        # Expired more than 7 days ago: gone; expired lately, or live: kept.
        planted.doomed["agent_tokens"] |= agent_token("8 days") | agent_token("30 days")
        planted.needed["agent_tokens"] |= agent_token("6 days") | agent_token("-1 hour")

        def session(expires: str, *, active: bool, reason: str | None = None, created: str = "0") -> set[str]:
            return _ids(
                conn,
                "INSERT INTO refresh_sessions (id, user_id, family_id, refresh_token_hash, is_active, ended_reason, "
                "expires_at, created_at, updated_at) VALUES (gen_random_uuid(), :u, gen_random_uuid(), "
                "uuid_send(gen_random_uuid()), :active, :reason, now() + CAST(:expires AS interval), "
                "now() - CAST(:created AS interval), now() - CAST(:created AS interval)) RETURNING id",
                u=user_id,
                active=active,
                reason=reason,
                expires=expires,
                created=f"{created} days",
            )

        planted.doomed["refresh_sessions"] |= session("-8 days", active=True, created="15")
        planted.doomed["refresh_sessions"] |= session("-30 days", active=False, reason="rotated", created="40")
        planted.needed["refresh_sessions"] |= session("-1 day", active=False, reason="logout", created="8")
        # Rotated 20 days ago, but its token is still valid: replaying it must still be caught.
        planted.needed["refresh_sessions"] |= session("5 days", active=False, reason="rotated", created="20")
        planted.needed["refresh_sessions"] |= session("5 days", active=True, created="2")

        def counter(key: str, age: str) -> set[str]:
            return _ids(
                conn,
                "INSERT INTO rate_limit_counters (key, window_start, count) "
                "VALUES (:k, now() - CAST(:age AS interval), 3) RETURNING key",
                k=key,
                age=age,
            )

        planted.doomed["rate_limit_counters"] |= counter("login-ip:192.0.2.1", "2 days")
        planted.doomed["rate_limit_counters"] |= counter("login-handle:gone", "30 days")
        planted.needed["rate_limit_counters"] |= counter("login-ip:192.0.2.2", "10 seconds")
        planted.needed["rate_limit_counters"] |= counter("login-handle:alice", "20 minutes")

        def node(slug: str) -> str:
            return str(
                conn.execute(
                    text(
                        "INSERT INTO nodes (id, node_slug, status) "
                        "VALUES (gen_random_uuid(), :s, 'active') RETURNING id"
                    ),
                    {"s": slug},
                ).scalar_one()
            )

        def snapshots(node_id: str, ages: list[str]) -> list[str]:
            return [
                str(
                    conn.execute(
                        text(
                            "INSERT INTO node_capabilities (id, node_id, reported_at, capability_snapshot) "
                            "VALUES (gen_random_uuid(), :n, now() - CAST(:age AS interval), '{\"version\": 1}') "
                            "RETURNING id"
                        ),
                        {"n": node_id, "age": age},
                    ).scalar_one()
                )
                for age in ages
            ]

        # Node a: 15 reports two days old and 3 of the last hours. The latest 10 stay
        # (the 3 young ones and the 7 newest old ones); the 8 oldest go.
        busy = node("retention-a")
        old = snapshots(busy, [f"2 days {i} minutes" for i in range(15)])
        young = snapshots(busy, [f"{i} hours" for i in (1, 2, 3)])
        planted.needed["node_capabilities"] |= set(young) | set(old[:7])
        planted.doomed["node_capabilities"] |= set(old[7:])
        # Node b reported once, a month ago: its one snapshot is its latest and stays.
        planted.needed["node_capabilities"] |= set(snapshots(node("retention-b"), ["30 days"]))
        # Node c reported 12 times within the day: all younger than the retention, all stay.
        planted.needed["node_capabilities"] |= set(snapshots(node("retention-c"), [f"{i} minutes" for i in range(12)]))
    return planted


def present(engine: Engine) -> dict[str, set[str]]:
    with engine.connect() as conn:
        return {table: _ids(conn, f"SELECT {key} FROM {table}") for table, key in TABLES.items()}


def gone_and_kept(engine: Engine, planted: Planted) -> tuple[dict[str, set[str]], dict[str, set[str]]]:
    """(doomed rows still there, needed rows missing), by table."""
    now = present(engine)
    left = {t: planted.doomed[t] & now[t] for t in TABLES}
    lost = {t: planted.needed[t] - now[t] for t in TABLES}
    return left, lost


def nothing(by_table: dict[str, set[str]]) -> bool:
    return not any(by_table.values())


def policy(orchestrator: OrchestratorUnderTest, **changes: Any) -> RetentionPolicy:
    return dataclasses.replace(RetentionPolicy.from_settings(orchestrator.settings), **changes)


def test_the_defaults_keep_what_the_issue_asks_for(orchestrator: OrchestratorUnderTest) -> None:
    p = RetentionPolicy.from_settings(orchestrator.settings)
    assert p.audit == 90 * 86400
    assert p.refresh_sessions == 7 * 86400
    assert p.agent_tokens == 7 * 86400  # expired agent tokens (mcp_contract.md 3.1)
    assert p.capabilities == 86400 and p.capabilities_kept == 10
    # Counters outlive the longest throttling window, whatever it is configured to.
    assert p.rate_limits >= orchestrator.settings.login_handle_window
    assert orchestrator.settings.retention_interval > 0


def test_a_sweep_removes_rows_past_their_retention_in_batches_and_keeps_needed_ones(
    orchestrator: OrchestratorUnderTest,
) -> None:
    engine = orchestrator.db.engine
    planted = plant(engine)

    report = sweep(engine, policy(orchestrator, batch_rows=2))

    assert report is not None
    left, lost = gone_and_kept(engine, planted)
    assert nothing(left), f"rows past their retention are still there: {left}"
    assert nothing(lost), f"rows still needed were deleted: {lost}"
    assert report.rows == {table: len(planted.doomed[table]) for table in TABLES}
    # 6 audit rows in batches of 2: three full batches and an empty one that ends the loop.
    assert report.batches["auth_audit_log"] == 4
    assert sweep(engine, policy(orchestrator)) is not None  # nothing left: an idempotent no-op
    assert nothing(gone_and_kept(engine, planted)[1])


def test_a_retention_of_zero_keeps_that_kind_forever(orchestrator: OrchestratorUnderTest) -> None:
    engine = orchestrator.db.engine
    planted = plant(engine)
    report = sweep(engine, policy(orchestrator, audit=0.0))
    assert report is not None and report.rows["auth_audit_log"] == 0
    assert planted.doomed["auth_audit_log"] <= present(engine)["auth_audit_log"]


def test_a_replayed_rotated_token_still_revokes_its_family_after_a_sweep(orchestrator: OrchestratorUnderTest) -> None:
    """The revoked-but-unexpired session is what reuse detection reads: the sweep must not take it."""
    from harness.api import ApiClient

    api = ApiClient.in_process(orchestrator.app)
    first = api.login("admin", orchestrator.secrets.admin_password, expect=200).json()
    second = api.post("/v1/auth/refresh", json={"refresh_token": first["refresh_token"]})
    assert second.status_code == 200, second.text
    engine = orchestrator.db.engine
    with engine.begin() as conn:  # make the rotated row look long ago rotated
        conn.execute(text("UPDATE refresh_sessions SET updated_at = now() - interval '30 days' WHERE NOT is_active"))

    assert sweep(engine, policy(orchestrator)) is not None

    replay = api.post("/v1/auth/refresh", json={"refresh_token": first["refresh_token"]})
    assert replay.status_code == 401
    # The family was revoked: the token pair issued by the rotation no longer refreshes either.
    after = api.post("/v1/auth/refresh", json={"refresh_token": second.json()["refresh_token"]})
    assert after.status_code == 401


def test_only_one_orchestrator_sweeps_at_a_time_and_once_per_interval(orchestrator: OrchestratorUnderTest) -> None:
    engine = orchestrator.db.engine
    planted = plant(engine)
    # Another orchestrator is sweeping: it holds the lock on its own connection.
    with engine.connect() as other:
        assert other.execute(text("SELECT pg_try_advisory_lock(:k)"), {"k": SWEEP_LOCK_KEY}).scalar() is True
        other.commit()
        assert sweep(engine, policy(orchestrator)) is None
        assert planted.doomed["auth_audit_log"] <= present(engine)["auth_audit_log"]
        other.execute(text("SELECT pg_advisory_unlock(:k)"), {"k": SWEEP_LOCK_KEY})
        other.commit()

    # Turns: of eight orchestrators waking together, exactly one gets this interval's turn.
    results: list[bool] = []
    barrier = threading.Barrier(8)

    def take() -> None:
        barrier.wait()
        results.append(claim_turn(engine, 60.0))

    threads = [threading.Thread(target=take) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)
    assert sorted(results) == [False] * 7 + [True]
    assert claim_turn(engine, 60.0) is False
    with engine.begin() as conn:  # the interval has passed
        conn.execute(text("UPDATE maintenance_runs SET ran_at = now() - interval '61 seconds'"))
    assert claim_turn(engine, 60.0) is True


def test_the_orchestrator_process_runs_the_sweeper_on_its_interval(
    database_url: str, orchestrator: OrchestratorUnderTest, test_secrets: Secrets, tmp_path: Path
) -> None:
    """A real ``cynode orchestrator serve`` with a half-second interval and two-row batches."""
    engine = orchestrator.db.engine
    env = orchestrator_environ(database_url, tmp_path / "home", test_secrets)
    proc = Orchestrator(env, tmp_path, dispatcher_enabled="false", retention_interval="0.5", retention_batch_rows="2")
    proc.start()
    try:
        proc.wait_healthy()
        planted = plant(engine)
        wait_until(lambda: nothing(gone_and_kept(engine, planted)[0]), 30, "the sweeper to remove the old rows")
        left, lost = gone_and_kept(engine, planted)
        assert nothing(lost), f"rows still needed were deleted: {lost}"
        assert proc.alive()
    finally:
        proc.stop()
    assert "retention: removed" in proc.output


def test_an_interval_of_zero_turns_the_sweeper_off(orchestrator: OrchestratorUnderTest) -> None:
    from cynode_core.orchestrator.app import create_app
    from cynode_core.orchestrator.process import start_background

    names = {}
    for interval in (0.0, 3600.0):
        settings = dataclasses.replace(orchestrator.settings, retention_interval=interval, dispatcher_enabled=False)
        stop = threading.Event()
        threads = start_background(create_app(settings, orchestrator.db, orchestrator.resources.secrets), stop)
        stop.set()
        for thread in threads:
            thread.join(timeout=10)
        names[interval] = [thread.name for thread in threads]
    assert names == {0.0: [], 3600.0: ["retention"]}
