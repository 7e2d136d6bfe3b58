"""Bounded tables: the periodic sweep that deletes rows past their retention.

What goes, each kind in its own batches (``retention_batch_rows`` rows per
transaction, so a large backlog never holds many row locks for long):

- auth and chat audit rows older than ``audit_retention``, and API keys
  revoked or expired longer ago than that;
- rate-limit counters whose window started longer ago than
  ``rate_limit_retention`` (and than the longest throttling window, so a
  window still running is never reset);
- refresh sessions that expired longer ago than
  ``refresh_session_retention``. A revoked or rotated session stays until
  its token has expired: replaying a rotated token must still find its row
  and revoke the family;
- agent tokens 7 days after they expired (mcp_contract.md 3.1);
- capability snapshots older than ``capability_retention``, except each
  node's ``capability_snapshots_kept`` newest (so a node's latest snapshot,
  which its configuration is built from, is never deleted).

The sweep also folds the task counters (``task_status_counts``) into one row
per status, which keeps ``/metrics`` cheap.

Orchestrators sharing a database take turns: each one's sweeper wakes every
``retention_interval``, but only the one whose :func:`claim_turn` moves the
``maintenance_runs`` row forward sweeps, and a sweep runs under a
session-level advisory lock, so two never overlap even when one outlasts the
interval.
"""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import text
from sqlalchemy.engine import Connection, Engine

from cynode_core.orchestrator.settings import OrchestratorSettings

log = logging.getLogger(__name__)

# pg_advisory_lock key of a running sweep (the bytes of "cynodere").
SWEEP_LOCK_KEY = 0x63796E6F64657265
TURN_NAME = "retention"
# A sweeper waking a little early still takes its own next turn.
TURN_SLACK = 0.9
# An expired agent token's row stays this long (seconds), then goes.
AGENT_TOKEN_RETENTION = 7 * 86400.0

_DELETES: dict[str, str] = {
    # Each inner SELECT finds one batch through an index; the outer condition
    # is checked again on the row it locks, so a row updated meanwhile (a
    # counter whose window just restarted) is left alone.
    "auth_audit_log": """
        DELETE FROM auth_audit_log WHERE created_at < now() - make_interval(secs => :age)
        AND id IN (SELECT id FROM auth_audit_log WHERE created_at < now() - make_interval(secs => :age) LIMIT :batch)
    """,
    "chat_audit_log": """
        DELETE FROM chat_audit_log WHERE created_at < now() - make_interval(secs => :age)
        AND id IN (SELECT id FROM chat_audit_log WHERE created_at < now() - make_interval(secs => :age) LIMIT :batch)
    """,
    # A revoked or expired API key is kept as long as audit rows may name it, then goes.
    "api_keys": """
        DELETE FROM api_keys WHERE id IN (
            SELECT id FROM api_keys
            WHERE least(revoked_at, expires_at) < now() - make_interval(secs => :age) LIMIT :batch
        )
    """,
    "agent_tokens": """
        DELETE FROM agent_tokens WHERE id IN (
            SELECT id FROM agent_tokens WHERE expires_at < now() - make_interval(secs => :age) LIMIT :batch
        )
    """,
    "rate_limit_counters": """
        DELETE FROM rate_limit_counters WHERE window_start < now() - make_interval(secs => :age)
        AND key IN (SELECT key FROM rate_limit_counters
                    WHERE window_start < now() - make_interval(secs => :age) LIMIT :batch)
    """,
    "refresh_sessions": """
        DELETE FROM refresh_sessions WHERE expires_at < now() - make_interval(secs => :age)
        AND id IN (SELECT id FROM refresh_sessions WHERE expires_at < now() - make_interval(secs => :age) LIMIT :batch)
    """,
    # Per node: the newest ``keep`` snapshots set an edge; older ones that are
    # also past the age go. Ties with the edge stay (one more kept, never one fewer).
    "node_capabilities": """
        DELETE FROM node_capabilities WHERE id IN (
            SELECT old.id FROM nodes n
            CROSS JOIN LATERAL (
                SELECT reported_at AS edge FROM node_capabilities
                WHERE node_id = n.id ORDER BY reported_at DESC OFFSET (:keep - 1) LIMIT 1
            ) e
            CROSS JOIN LATERAL (
                SELECT id FROM node_capabilities
                WHERE node_id = n.id AND reported_at < least(e.edge, now() - make_interval(secs => :age))
                LIMIT :batch
            ) old
            LIMIT :batch
        )
    """,
}

_FOLD = text(
    """
    WITH gone AS (DELETE FROM task_status_counts RETURNING status, n)
    INSERT INTO task_status_counts (status, n)
    SELECT status, sum(n) FROM gone GROUP BY status HAVING sum(n) <> 0
    """
)

# The artifact store's orphan sweep: one orchestrator, once an hour.
ORPHAN_TURN = "artifact-orphans"
ORPHAN_SWEEP_INTERVAL = 3600.0

_CLAIM = text(
    """
    INSERT INTO maintenance_runs AS m (name, ran_at) VALUES (:name, now())
    ON CONFLICT (name) DO UPDATE SET ran_at = now()
    WHERE m.ran_at <= now() - make_interval(secs => :interval)
    RETURNING ran_at
    """
)


@dataclass(frozen=True)
class RetentionPolicy:
    """Ages in seconds (0: keep that kind forever) and the batch size of one sweep."""

    audit: float
    rate_limits: float
    refresh_sessions: float
    capabilities: float
    capabilities_kept: int
    batch_rows: int
    agent_tokens: float = AGENT_TOKEN_RETENTION

    @classmethod
    def from_settings(cls, settings: OrchestratorSettings) -> RetentionPolicy:
        longest_window = max(60.0, settings.login_handle_window)
        return cls(
            audit=settings.audit_retention,
            rate_limits=max(settings.rate_limit_retention, longest_window),
            refresh_sessions=settings.refresh_session_retention,
            capabilities=settings.capability_retention,
            capabilities_kept=max(1, settings.capability_snapshots_kept),
            batch_rows=settings.retention_batch_rows,
        )

    def ages(self) -> dict[str, float]:
        return {
            "auth_audit_log": self.audit,
            "chat_audit_log": self.audit,
            "api_keys": self.audit,
            "agent_tokens": self.agent_tokens,
            "rate_limit_counters": self.rate_limits,
            "refresh_sessions": self.refresh_sessions,
            "node_capabilities": self.capabilities,
        }


@dataclass
class SweepReport:
    """Rows deleted and delete transactions run, by table."""

    rows: dict[str, int] = field(default_factory=dict)
    batches: dict[str, int] = field(default_factory=dict)

    def summary(self) -> str:
        return ", ".join(f"{n} from {table}" for table, n in self.rows.items() if n)


def fold_task_counts(conn: Connection) -> None:
    """Replace the counter rows this transaction sees by one per status (the caller commits).

    Rows appended meanwhile by transactions not yet committed are not seen,
    so they are neither lost nor counted twice.
    """
    conn.execute(_FOLD)


def claim_turn(engine: Engine, interval: float, name: str = TURN_NAME) -> bool:
    """True for the one caller per ``interval`` that should do the ``name`` chore (the row update decides)."""
    with engine.begin() as conn:
        row = conn.execute(_CLAIM, {"name": name, "interval": interval * TURN_SLACK}).first()
    return row is not None


def _delete_in_batches(
    conn: Connection, table: str, params: dict[str, Any], batch: int, stop: threading.Event | None
) -> tuple[int, int]:
    statement = text(_DELETES[table])
    rows = batches = 0
    while True:
        deleted = conn.execute(statement, {**params, "batch": batch}).rowcount
        conn.commit()
        rows += deleted
        batches += 1
        if deleted < batch or (stop is not None and stop.is_set()):
            return rows, batches


def sweep(engine: Engine, policy: RetentionPolicy, stop: threading.Event | None = None) -> SweepReport | None:
    """Delete what is past its retention and fold the task counters; ``None`` when another sweep is running."""
    with engine.connect() as conn:
        locked = conn.execute(text("SELECT pg_try_advisory_lock(:k)"), {"k": SWEEP_LOCK_KEY}).scalar()
        conn.commit()
        if not locked:
            return None
        try:
            report = SweepReport()
            for table, age in policy.ages().items():
                if age <= 0:
                    report.rows[table] = report.batches[table] = 0
                    continue
                params: dict[str, Any] = {"age": age, "keep": policy.capabilities_kept}
                report.rows[table], report.batches[table] = _delete_in_batches(
                    conn, table, params, policy.batch_rows, stop
                )
            fold_task_counts(conn)
            conn.commit()
            return report
        finally:
            conn.rollback()
            conn.execute(text("SELECT pg_advisory_unlock(:k)"), {"k": SWEEP_LOCK_KEY})
            conn.commit()


class RetentionSweeper:
    """The thread body: every ``retention_interval``, take the turn if it is ours, then sweep."""

    def __init__(self, state: Any):
        self.state = state

    def run_once(self, stop: threading.Event | None = None) -> SweepReport | None:
        settings = self.state.settings
        engine = self.state.db.engine
        artifacts = getattr(self.state, "artifacts", None)
        if artifacts is not None and claim_turn(engine, ORPHAN_SWEEP_INTERVAL, ORPHAN_TURN):
            removed = artifacts.sweep_orphans()  # blobs no artifact points at (a crash mid-create)
            if removed:
                log.info("retention: removed %d blob(s) no artifact points at", removed)
        if not claim_turn(engine, settings.retention_interval):
            return None
        report = sweep(engine, RetentionPolicy.from_settings(settings), stop)
        if report is not None and report.summary():
            log.info("retention: removed %s", report.summary())
        return report

    def run(self, stop: threading.Event) -> None:
        while not stop.wait(self.state.settings.retention_interval):
            try:
                self.run_once(stop)
            except Exception as exc:  # noqa: BLE001 - the sweeper must outlive database outages
                log.warning("retention sweep failed (%s: %s)", type(exc).__name__, exc)


def start_sweeper(state: Any, stop: threading.Event) -> list[threading.Thread]:
    """The retention thread of this process (none when ``retention_interval`` is 0)."""
    if state.settings.retention_interval <= 0:
        return []
    thread = threading.Thread(target=RetentionSweeper(state).run, args=(stop,), name="retention", daemon=True)
    thread.start()
    return [thread]
