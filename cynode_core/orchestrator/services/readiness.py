"""Readiness of the orchestrator (docs/wire_contract.md#health).

Ready means: the database answers, its schema is at the newest migration,
and at least one node is dispatchable (acked ``applied`` for its current
config version and its own ``/readyz`` answering 200). Node probes are
cached for a few seconds so a busy ``/readyz`` does not hammer nodes. The
answer is the orchestrator's own words: a node's status code, never its
body, since anyone may read this one.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass

from sqlalchemy import text
from sqlalchemy.engine import Engine
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session

from cynode_core.orchestrator import migrate
from cynode_core.orchestrator.node_client import probe_readyz
from cynode_core.orchestrator.services import nodes

PROBE_CACHE_SECONDS = 3.0


@dataclass(frozen=True)
class Check:
    name: str
    ok: bool
    detail: str


class NodeProbe:
    """``GET <worker url>/readyz`` (``node_client.probe_readyz``) with a short cache per URL."""

    def __init__(self) -> None:
        self._cache: dict[str, tuple[float, bool, str]] = {}
        self._lock = threading.Lock()

    def ready(self, url: str) -> tuple[bool, str]:
        now = time.monotonic()
        with self._lock:
            hit = self._cache.get(url)
        if hit and now - hit[0] < PROBE_CACHE_SECONDS:
            return hit[1], hit[2]
        ok, why = probe_readyz(url)
        with self._lock:
            self._cache[url] = (now, ok, why)
        return ok, why


def run_checks(  # type: ignore[no-untyped-def]
    engine: Engine, session_factory, probe: NodeProbe, heartbeat_timeout: float = nodes.HEARTBEAT_TIMEOUT
) -> list[Check]:
    checks: list[Check] = []
    try:
        with engine.connect() as conn:
            conn.execute(text("SELECT 1"))
        checks.append(Check("database", True, "reachable"))
    except Exception as exc:  # noqa: BLE001 - any failure means "not reachable"; never echo the URL
        checks.append(Check("database", False, f"unreachable ({type(exc).__name__})"))
        checks.append(Check("migrations", False, "unknown (database unreachable)"))
        checks.append(Check("dispatchable node", False, "unknown (database unreachable)"))
        return checks
    head = migrate.head_revision()
    current = migrate.current_revision(engine)
    at_head = current == head
    checks.append(Check("migrations", at_head, f"at {current}" if at_head else f"at {current}, head is {head}"))
    session: Session
    try:
        with session_factory() as session:
            candidates = nodes.list_nodes(session, only_dispatchable=True, heartbeat_timeout=heartbeat_timeout)
    except SQLAlchemyError as exc:
        # A schema behind head may lack the tables: report it, never answer 500.
        checks.append(Check("dispatchable node", False, f"unknown (nodes not readable: {type(exc).__name__})"))
        return checks
    ready: list[str] = []
    reasons: list[str] = []
    for node in candidates:
        ok, why = probe.ready(node.url or "")
        (ready if ok else reasons).append(node.slug if ok else f"{node.slug}: {why}")
    if ready:
        checks.append(Check("dispatchable node", True, ", ".join(ready)))
    elif reasons:
        checks.append(Check("dispatchable node", False, "; ".join(reasons)))
    else:
        checks.append(Check("dispatchable node", False, "no node registered with an applied config ack"))
    return checks


def render(checks: list[Check]) -> tuple[str, bool]:
    ok = all(c.ok for c in checks)
    lines = ["ready" if ok else "not ready"]
    lines += [f"{c.name}: {'ok' if c.ok else 'failing'} ({c.detail})" for c in checks]
    return "\n".join(lines) + "\n", ok
