"""Node liveness: probe every active node's ``/readyz`` and take failing nodes out of dispatch.

A node that fails ``node_probe_failures`` probes in a row becomes
``inactive`` (no new jobs; its in-flight jobs fail their Worker API call and
are requeued for another node by the dispatch rules); a node that answers
again becomes ``active``. A node whose last report is older than the
heartbeat timeout is not dispatchable either (``services.nodes``). Every
orchestrator runs this; the updates are idempotent.
"""

from __future__ import annotations

import logging
import threading
from typing import Any

from sqlalchemy import text

from cynode_core.orchestrator.node_client import probe_readyz

log = logging.getLogger(__name__)


class NodeMonitor:
    def __init__(self, state: Any):
        self.state = state
        self.failures: dict[str, int] = {}

    def check_once(self) -> None:
        settings = self.state.settings
        with self.state.db.session() as session:
            rows = session.execute(
                text(
                    "SELECT id, node_slug, status, worker_api_target_url FROM nodes "
                    "WHERE status IN ('active', 'inactive') AND coalesce(worker_api_target_url, '') <> ''"
                )
            ).all()
        for node_id, slug, status, url in rows:
            ok, _ = probe_readyz(url)
            key = str(node_id)
            self.failures[key] = 0 if ok else self.failures.get(key, 0) + 1
            new_status = None
            if ok and status == "inactive":
                new_status = "active"
            elif not ok and status == "active" and self.failures[key] >= settings.node_probe_failures:
                new_status = "inactive"
            if new_status:
                with self.state.db.session() as session:
                    session.execute(
                        text("UPDATE nodes SET status = :s, updated_at = now() WHERE id = :id AND status = :old"),
                        {"s": new_status, "id": node_id, "old": status},
                    )
                    if new_status == "active":
                        session.execute(text("SELECT pg_notify('cynode_jobs', '')"))
                log.warning("node %s: readyz %s; now %s", slug, "answers" if ok else "failing", new_status)

    def run(self, stop: threading.Event) -> None:
        interval = self.state.settings.node_probe_interval
        while not stop.wait(interval):
            try:
                self.check_once()
            except Exception as exc:  # noqa: BLE001 - the monitor must outlive database outages
                log.warning("node monitor error (%s)", type(exc).__name__)


def start_monitor(state: Any, stop: threading.Event) -> list[threading.Thread]:
    if not state.settings.dispatcher_enabled or state.settings.node_probe_interval <= 0:
        return []
    thread = threading.Thread(target=NodeMonitor(state).run, args=(stop,), name="node-monitor", daemon=True)
    thread.start()
    return [thread]
