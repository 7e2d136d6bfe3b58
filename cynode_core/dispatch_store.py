"""The dispatcher's SQL: claim with SKIP LOCKED and a lease, renew, requeue, finish.

Every write that ends a job is guarded by its ``lease_id`` and
``status = 'running'``: a dispatcher that lost its lease, or a job canceled
meanwhile, can never overwrite the job's state (a late result is kept in
``result`` only).
"""

from __future__ import annotations

import json
import logging
import uuid
from dataclasses import dataclass
from typing import Any

import pluggy
from sqlalchemy import text

from cynode_core.config import OrchestratorSettings
from cynode_core.db import Database
from cynode_core.dispatch_call import dispatch_error
from cynode_core.hookspecs import JobInfo, NodeCandidate
from cynode_core.services.nodes import list_nodes
from cynode_core.services.secrets import TokenCipher

log = logging.getLogger(__name__)

_TERMINAL = "('completed', 'failed', 'canceled', 'superseded')"


@dataclass(frozen=True)
class ClaimedJob:
    job_id: uuid.UUID
    task_id: uuid.UUID
    lease_id: uuid.UUID
    attempts: int
    node_id: uuid.UUID
    node_url: str
    node_token: str
    sandbox: dict[str, Any]
    timeout_seconds: int

    def request_body(self) -> dict[str, Any]:
        return {"version": 1, "task_id": str(self.task_id), "job_id": str(self.job_id), "sandbox": self.sandbox}


def sandbox_of(payload: Any) -> dict[str, Any]:
    """The Worker API ``sandbox`` object from a stored payload; ValueError with upstream's words."""
    if payload in (None, ""):
        raise ValueError("job payload is empty")
    try:
        data = json.loads(payload) if isinstance(payload, str) else payload
    except ValueError as exc:
        raise ValueError(f"parse payload json: {exc}") from exc
    if not isinstance(data, dict):
        raise ValueError("parse payload json: not an object")
    if not data.get("command") and not data.get("job_spec_json"):
        raise ValueError("payload.command is required when job_spec_json is not set")
    sandbox: dict[str, Any] = {"image": data.get("image") or "", "command": data.get("command") or []}
    for key in ("env", "timeout_seconds", "network_policy", "use_inference", "job_spec_json"):
        if data.get(key):
            sandbox[key] = data[key]
    return sandbox


def _fail_unparsable(session: Any, job_id: uuid.UUID, task_id: uuid.UUID, message: str) -> None:
    session.execute(
        text("UPDATE jobs SET status = 'failed', result = to_jsonb(CAST(:r AS text)), ended_at = now(), "
             "last_error = :m, updated_at = now() WHERE id = :id"),
        {"r": dispatch_error(message), "m": message, "id": job_id},
    )
    _finish_task(session, task_id, "failed")


def _finish_task(session: Any, task_id: uuid.UUID, status: str) -> None:
    session.execute(
        text(f"UPDATE tasks SET status = :s, closed = true, updated_at = now() WHERE id = :id AND status NOT IN {_TERMINAL}"),
        {"s": status, "id": task_id},
    )


def claim_next(
    db: Database, pm: pluggy.PluginManager, settings: OrchestratorSettings, cipher: TokenCipher, owner: str
) -> ClaimedJob | None:
    """Claim the oldest due job for a node with a free slot, or ``None``."""
    with db.session() as session:
        row = session.execute(
            text(
                "SELECT id, task_id, payload, attempts, node_id FROM jobs "
                "WHERE status = 'queued' AND (next_attempt_at IS NULL OR next_attempt_at <= now()) "
                "ORDER BY created_at, id FOR UPDATE SKIP LOCKED LIMIT 1"
            )
        ).first()
        if row is None:
            return None
        job_id, task_id, payload, attempts, preferred = row
        try:
            sandbox = sandbox_of(payload)
        except ValueError as exc:
            _fail_unparsable(session, job_id, task_id, str(exc))
            return None
        nodes = [n for n in list_nodes(session, only_dispatchable=True)]
        candidates = [
            NodeCandidate(str(n.id), n.slug, n.max_concurrency, n.running, n.capability) for n in nodes
        ]
        chosen = next((c for c in candidates if preferred and c.node_id == str(preferred)), None)
        if chosen is None:
            chosen = pm.hook.cynode_select_node(
                job=JobInfo(str(job_id), str(task_id), bool(sandbox.get("use_inference")), attempts + 1), candidates=candidates
            )
        if chosen is None:
            session.rollback()
            return None
        # Serialise claims per node and recount under the lock, so slots are never oversubscribed.
        node = session.execute(
            text("SELECT id, worker_api_target_url, worker_api_bearer_token, max_concurrency FROM nodes WHERE id = :id FOR UPDATE"),
            {"id": uuid.UUID(chosen.node_id)},
        ).first()
        running = session.execute(
            text("SELECT count(*) FROM jobs WHERE node_id = :id AND status = 'running'"), {"id": node[0]}
        ).scalar()
        if running >= node[3]:
            session.rollback()
            return None
        lease_id = uuid.uuid4()
        session.execute(
            text(
                "UPDATE jobs SET status = 'running', node_id = :node, lease_id = :lease, lease_owner = :owner, "
                "lease_expires_at = now() + make_interval(secs => :secs), attempts = attempts + 1, "
                "started_at = coalesce(started_at, now()), next_attempt_at = NULL, updated_at = now() WHERE id = :id"
            ),
            {"node": node[0], "lease": lease_id, "owner": owner, "secs": settings.lease_seconds, "id": job_id},
        )
        session.execute(
            text("UPDATE tasks SET status = 'running', updated_at = now() WHERE id = :id AND status = 'pending'"),
            {"id": task_id},
        )
        token = cipher.decrypt(node[2])
    timeout = int(sandbox.get("timeout_seconds") or settings.job_timeout_seconds)
    return ClaimedJob(job_id, task_id, lease_id, attempts + 1, node[0], node[1], token, sandbox, timeout)


def store_result(db: Database, job: ClaimedJob, result: dict[str, Any]) -> bool:
    """Store a worker's answer; True when this ended the job (False: canceled or lease lost)."""
    status = "completed" if result.get("status") == "completed" else "failed"
    encoded = json.dumps(result)
    with db.session() as session:
        updated = session.execute(
            text(
                "UPDATE jobs SET status = :s, result = to_jsonb(CAST(:r AS text)), ended_at = now(), lease_id = NULL, "
                "lease_owner = NULL, lease_expires_at = NULL, updated_at = now() "
                "WHERE id = :id AND lease_id = :lease AND status = 'running'"
            ),
            {"s": status, "r": encoded, "id": job.job_id, "lease": job.lease_id},
        ).rowcount
        if not updated:
            # Canceled meanwhile: keep 'canceled' but record what the node reported.
            session.execute(
                text("UPDATE jobs SET result = to_jsonb(CAST(:r AS text)), updated_at = now() WHERE id = :id AND status = 'canceled'"),
                {"r": encoded, "id": job.job_id},
            )
            return False
        _finish_task(session, job.task_id, status)
    return True


def fail_job(db: Database, job: ClaimedJob, message: str) -> bool:
    with db.session() as session:
        updated = session.execute(
            text(
                "UPDATE jobs SET status = 'failed', result = to_jsonb(CAST(:r AS text)), ended_at = now(), last_error = :m, "
                "lease_id = NULL, lease_owner = NULL, lease_expires_at = NULL, updated_at = now() "
                "WHERE id = :id AND lease_id = :lease AND status = 'running'"
            ),
            {"r": dispatch_error(message), "m": message, "id": job.job_id, "lease": job.lease_id},
        ).rowcount
        if updated:
            _finish_task(session, job.task_id, "failed")
    log.warning("job %s failed: %s", job.job_id, message)
    return bool(updated)


def requeue(db: Database, job: ClaimedJob, *, delay: float, count_attempt: bool, error: str, keep_node: bool) -> None:
    with db.session() as session:
        session.execute(
            text(
                "UPDATE jobs SET status = 'queued', lease_id = NULL, lease_owner = NULL, lease_expires_at = NULL, "
                "next_attempt_at = now() + make_interval(secs => :d), last_error = :e, updated_at = now(), "
                f"attempts = attempts - {0 if count_attempt else 1}"
                + ("" if keep_node else ", node_id = NULL")
                + " WHERE id = :id AND lease_id = :lease AND status = 'running'"
            ),
            {"d": delay, "e": error, "id": job.job_id, "lease": job.lease_id},
        )


def renew_leases(db: Database, leases: list[uuid.UUID], seconds: float) -> None:
    with db.session() as session:
        session.execute(
            text("UPDATE jobs SET lease_expires_at = now() + make_interval(secs => :s) "
                 "WHERE lease_id = ANY(:ids) AND status = 'running'"),
            {"s": seconds, "ids": leases},
        )


def recover_expired_leases(db: Database, settings: OrchestratorSettings) -> list[str]:
    """Requeue jobs whose dispatcher died (same node preferred), or fail them after the attempts."""
    with db.session() as session:
        requeued = session.execute(
            text(
                "UPDATE jobs SET status = 'queued', lease_id = NULL, lease_owner = NULL, lease_expires_at = NULL, "
                "next_attempt_at = now(), last_error = 'lease expired', updated_at = now() "
                "WHERE status = 'running' AND lease_expires_at < now() AND attempts < :max RETURNING id"
            ),
            {"max": settings.max_attempts},
        ).all()
        message = f"dispatch attempts exhausted: the lease expired {settings.max_attempts} times without a result"
        failed = session.execute(
            text(
                "UPDATE jobs SET status = 'failed', result = to_jsonb(CAST(:r AS text)), ended_at = now(), last_error = :m, "
                "lease_id = NULL, lease_owner = NULL, lease_expires_at = NULL, updated_at = now() "
                "WHERE status = 'running' AND lease_expires_at < now() AND attempts >= :max RETURNING task_id"
            ),
            {"r": dispatch_error(message), "m": message, "max": settings.max_attempts},
        ).all()
        for (task_id,) in failed:
            _finish_task(session, task_id, "failed")
    for (job_id,) in requeued:
        log.info("job %s: lease expired, back in the queue", job_id)
    return [str(t) for (t,) in failed]


