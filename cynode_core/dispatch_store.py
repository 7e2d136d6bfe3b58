"""The dispatcher's SQL: claim with SKIP LOCKED and a lease, renew, requeue, finish.

Every write that ends a job is guarded by its ``lease_id`` and
``status = 'running'``: a dispatcher that lost its lease, or a job canceled
meanwhile, can never overwrite the job's state (a late result is kept in
``result`` only).
"""

from __future__ import annotations

import json
import logging
import threading
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import pluggy
import psycopg
from sqlalchemy import text
from sqlalchemy.orm import Session

from cynode_core.config import OrchestratorSettings
from cynode_core.db import Database
from cynode_core.dispatch_call import dispatch_error
from cynode_core.hookspecs import JobInfo, NodeCandidate
from cynode_core.services.nodes import HEARTBEAT_TIMEOUT, list_nodes
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
    # The request id the task was created with: sent to the node as X-Request-Id.
    request_id: str | None = None

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
        text(
            "UPDATE jobs SET status = 'failed', result = to_jsonb(CAST(:r AS text)), ended_at = now(), "
            "last_error = :m, lease_id = NULL, lease_owner = NULL, lease_expires_at = NULL, updated_at = now() "
            "WHERE id = :id"
        ),
        {"r": dispatch_error(message), "m": message, "id": job_id},
    )
    _finish_task(session, task_id, "failed")


def _finish_task(session: Any, task_id: uuid.UUID, status: str) -> None:
    session.execute(
        text(
            f"UPDATE tasks SET status = :s, closed = true, updated_at = now() WHERE id = :id AND status NOT IN {_TERMINAL}"
        ),
        {"s": status, "id": task_id},
    )


_PICK = text(
    "SELECT id, task_id, payload, attempts, node_id, (SELECT request_id FROM tasks WHERE tasks.id = jobs.task_id) "
    "FROM jobs "
    "WHERE status = 'queued' AND (next_attempt_at IS NULL OR next_attempt_at <= now()) "
    "ORDER BY created_at, id FOR UPDATE SKIP LOCKED LIMIT 1"
)

# Lock the chosen node, recount its running jobs and take the job in one round
# trip; the job is taken only while the node has a free slot.
_TAKE = text(
    """
    WITH n AS (
        SELECT id, worker_api_target_url, worker_api_bearer_token, max_concurrency FROM nodes
        WHERE id = :node AND status = 'active' FOR UPDATE
    ), c AS (
        SELECT count(*) AS running FROM jobs WHERE node_id = :node AND status = 'running'
    ), u AS (
        UPDATE jobs SET status = 'running', node_id = n.id, lease_id = :lease, lease_owner = :owner,
            lease_expires_at = now() + make_interval(secs => :secs), attempts = jobs.attempts + 1,
            started_at = coalesce(jobs.started_at, now()), next_attempt_at = NULL, updated_at = now()
        FROM n, c WHERE jobs.id = :job AND c.running < n.max_concurrency
        RETURNING jobs.task_id
    ), t AS (
        UPDATE tasks SET status = 'running', updated_at = now() FROM u WHERE tasks.id = u.task_id AND tasks.status = 'pending'
    )
    SELECT n.worker_api_target_url, n.worker_api_bearer_token, (SELECT count(*) FROM u) FROM n
    """
)


# The built-in least-loaded choice made in SQL: pick, place and take in one
# statement (one round trip, like a bare SKIP LOCKED loop). The slot count is
# a snapshot; the node itself refuses work beyond its slots (503) and such a
# job goes back to the queue without using an attempt.
_CLAIM_SQL = """
    WITH j AS (
        SELECT id, task_id, payload, attempts, node_id FROM jobs
        WHERE status = 'queued' AND (next_attempt_at IS NULL OR next_attempt_at <= now())
        ORDER BY created_at, id FOR UPDATE SKIP LOCKED LIMIT 1
    ), cand AS (
        SELECT n.id, n.node_slug, n.worker_api_target_url, n.worker_api_bearer_token,
               n.max_concurrency - (SELECT count(*) FROM jobs r WHERE r.node_id = n.id AND r.status = 'running') AS free
        FROM nodes n
        WHERE n.status = 'active' AND n.config_ack_status = 'applied' AND n.config_ack_version = n.config_version
          AND coalesce(n.worker_api_target_url, '') <> '' AND n.worker_api_bearer_token IS NOT NULL
          AND n.last_seen_at > now() - make_interval(secs => %(heartbeat)s)
    ), pick AS (
        SELECT cand.* FROM cand, j WHERE cand.free > 0
        ORDER BY (cand.id = ANY(%(suspects)s)) ASC, (cand.id = j.node_id) DESC, cand.free DESC, cand.node_slug LIMIT 1
    ), u AS (
        UPDATE jobs SET status = 'running', node_id = pick.id, lease_id = %(lease)s, lease_owner = %(owner)s,
            lease_expires_at = now() + make_interval(secs => %(secs)s), attempts = jobs.attempts + 1,
            started_at = coalesce(jobs.started_at, now()), next_attempt_at = NULL, updated_at = now()
        FROM j, pick WHERE jobs.id = j.id
        RETURNING jobs.id, jobs.task_id, jobs.payload, jobs.attempts
    ), t AS (
        UPDATE tasks SET status = 'running', updated_at = now() FROM u WHERE tasks.id = u.task_id AND tasks.status = 'pending'
    )
    SELECT u.id, u.task_id, u.payload, u.attempts, pick.id, pick.worker_api_target_url, pick.worker_api_bearer_token,
           (SELECT request_id FROM tasks WHERE tasks.id = u.task_id)
    FROM u, pick
"""


def uses_default_scheduler(pm: pluggy.PluginManager) -> bool:
    """True when no plugin but the built-in least-loaded one answers ``cynode_select_node``."""
    from cynode_core.scheduling import LeastLoaded

    impls = pm.hook.cynode_select_node.get_hookimpls()
    return len(impls) == 1 and isinstance(impls[0].plugin, LeastLoaded)


class ClaimConnection:
    """A dispatcher thread's own autocommit connection for the one-statement claim.

    Kept outside the pool: no checkout, no pre-ping, prepared after a few uses,
    so a claim costs one round trip. Reopened after any error.
    """

    def __init__(self, url: str):
        self.url = url.replace("postgresql+psycopg://", "postgresql://")
        self._conn: psycopg.Connection | None = None

    def execute(self, query: str, params: dict[str, Any]) -> tuple | None:
        if self._conn is None or self._conn.closed:
            self._conn = psycopg.connect(
                self.url,
                autocommit=True,
                connect_timeout=5,
                options="-c timezone=UTC",
                application_name="cynode-dispatch",
            )
        try:
            return self._conn.execute(query, params).fetchone()
        except psycopg.Error:
            self.close()
            raise

    def close(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None


def claim_least_loaded(
    db: Database,
    settings: OrchestratorSettings,
    cipher: TokenCipher,
    owner: str,
    conn: ClaimConnection | None = None,
    suspects: Sequence[uuid.UUID] = (),
) -> ClaimedJob | None:
    """One-statement claim for the default scheduler; see ``_CLAIM_LEAST_LOADED``."""
    own = conn is None
    conn = conn or ClaimConnection(db.url)
    lease_id = uuid.uuid4()
    try:
        row = conn.execute(
            _CLAIM_SQL,
            {
                "lease": lease_id,
                "owner": owner,
                "secs": settings.lease_seconds,
                "heartbeat": settings.node_heartbeat_timeout,
                "suspects": list(suspects),
            },
        )
    finally:
        if own:
            conn.close()
    if row is None:
        return None
    job_id, task_id, payload, attempts, node_id, url, stored_token, request_id = row
    try:
        sandbox = sandbox_of(payload)
    except ValueError as exc:
        with db.session() as session:
            _fail_unparsable(session, job_id, task_id, str(exc))
        return None
    timeout = int(sandbox.get("timeout_seconds") or settings.job_timeout_seconds)
    return ClaimedJob(
        job_id, task_id, lease_id, attempts, node_id, url, _token(cipher, stored_token), sandbox, timeout, request_id
    )


class CandidateCache:
    """Dispatchable nodes, re-read at most every ``ttl`` seconds.

    The running counts in it are only a hint for the scheduler: the claim
    itself recounts under the node's row lock, and a full node invalidates
    the cache.
    """

    def __init__(self, ttl: float = 1.0, heartbeat_timeout: float = HEARTBEAT_TIMEOUT):
        self.ttl = ttl
        self.heartbeat_timeout = heartbeat_timeout
        self._at = 0.0
        self._nodes: list[NodeCandidate] = []
        self._lock = threading.Lock()

    def get(self, conn: Any) -> list[NodeCandidate]:
        with self._lock:
            if time.monotonic() - self._at < self.ttl:
                return self._nodes
        with Session(bind=conn) as session:
            nodes = [
                NodeCandidate(str(n.id), n.slug, n.max_concurrency, n.running, n.capability)
                for n in list_nodes(session, only_dispatchable=True, heartbeat_timeout=self.heartbeat_timeout)
            ]
        with self._lock:
            self._nodes, self._at = nodes, time.monotonic()
        return nodes

    def invalidate(self) -> None:
        with self._lock:
            self._at = 0.0


_tokens: dict[str, str] = {}


def _token(cipher: TokenCipher, stored: str) -> str:
    # Fernet decryption per claim is measurable; ciphertexts change only on rotation.
    if stored not in _tokens:
        _tokens[stored] = cipher.decrypt(stored)
    return _tokens[stored]


def claim_next(
    db: Database,
    pm: pluggy.PluginManager,
    settings: OrchestratorSettings,
    cipher: TokenCipher,
    owner: str,
    cache: CandidateCache | None = None,
    claim_conn: ClaimConnection | None = None,
    suspects: Sequence[uuid.UUID] = (),
) -> ClaimedJob | None:
    """Claim the oldest due job for a node with a free slot, or ``None``.

    With only the built-in scheduler the claim is one SQL statement; a
    third-party ``cynode_select_node`` plugin is asked in a two-step claim.
    """
    if uses_default_scheduler(pm):
        return claim_least_loaded(db, settings, cipher, owner, claim_conn, suspects)
    cache = cache or CandidateCache(ttl=0.0, heartbeat_timeout=settings.node_heartbeat_timeout)
    with db.engine.begin() as conn:
        row = conn.execute(_PICK).first()
        if row is None:
            return None
        job_id, task_id, payload, attempts, preferred, request_id = row
        try:
            sandbox = sandbox_of(payload)
        except ValueError as exc:
            _fail_unparsable(conn, job_id, task_id, str(exc))
            return None
        candidates = cache.get(conn)
        suspect_ids = {str(s) for s in suspects}
        healthy = [c for c in candidates if c.node_id not in suspect_ids]
        candidates = healthy or candidates  # suspects only when nothing else is left
        chosen = next((c for c in candidates if preferred and c.node_id == str(preferred)), None)
        if chosen is None:
            chosen = pm.hook.cynode_select_node(
                job=JobInfo(str(job_id), str(task_id), bool(sandbox.get("use_inference")), attempts + 1),
                candidates=candidates,
            )
        if chosen is None:
            conn.rollback()
            return None
        lease_id = uuid.uuid4()
        taken = conn.execute(
            _TAKE,
            {
                "node": uuid.UUID(chosen.node_id),
                "job": job_id,
                "lease": lease_id,
                "owner": owner,
                "secs": settings.lease_seconds,
            },
        ).first()
        if taken is None or not taken[2]:
            cache.invalidate()  # the node left, or its slots are full: look again next time
            conn.rollback()
            return None
        url, stored_token = taken[0], taken[1]
    timeout = int(sandbox.get("timeout_seconds") or settings.job_timeout_seconds)
    return ClaimedJob(
        job_id,
        task_id,
        lease_id,
        attempts + 1,
        uuid.UUID(chosen.node_id),
        url,
        _token(cipher, stored_token),
        sandbox,
        timeout,
        request_id,
    )


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
        ).rowcount  # type: ignore[attr-defined]
        if not updated:
            # Canceled meanwhile: keep 'canceled' but record what the node reported.
            session.execute(
                text(
                    "UPDATE jobs SET result = to_jsonb(CAST(:r AS text)), updated_at = now() WHERE id = :id AND status = 'canceled'"
                ),
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
        ).rowcount  # type: ignore[attr-defined]
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


class SuspectNodes:
    """Nodes that just refused a connection, tried last for ``ttl`` seconds.

    Not excluded: with no other node the job still retries there (bounded by
    the attempts), and the node monitor decides whether the node is out.
    """

    def __init__(self, ttl: float = 30.0):
        self.ttl = ttl
        self._until: dict[uuid.UUID, float] = {}
        self._lock = threading.Lock()

    def add(self, node_id: uuid.UUID) -> None:
        with self._lock:
            self._until[node_id] = time.monotonic() + self.ttl

    def current(self) -> list[uuid.UUID]:
        now = time.monotonic()
        with self._lock:
            self._until = {k: v for k, v in self._until.items() if v > now}
            return list(self._until)


def renew_leases(db: Database, leases: list[uuid.UUID], seconds: float) -> None:
    with db.session() as session:
        session.execute(
            text(
                "UPDATE jobs SET lease_expires_at = now() + make_interval(secs => :s) "
                "WHERE lease_id = ANY(:ids) AND status = 'running'"
            ),
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
        # A job whose node refused it, while no node at all can take work: fail it with
        # that reason rather than let it wait forever (a never-tried job does wait).
        stranded = session.execute(
            text(
                "UPDATE jobs SET status = 'failed', ended_at = now(), updated_at = now(), "
                "result = to_jsonb(CAST(json_build_object('error', last_error || '; no ready node took the retry', "
                "'status', 'failed', 'version', 1)::text AS text)) "
                "WHERE status = 'queued' AND attempts > 0 AND last_error LIKE 'worker api call failed%' "
                "AND next_attempt_at < now() - make_interval(secs => :grace) "
                "AND NOT EXISTS (SELECT 1 FROM nodes n WHERE n.status = 'active' AND n.config_ack_status = 'applied' "
                "AND n.config_ack_version = n.config_version AND coalesce(n.worker_api_target_url, '') <> '' "
                "AND n.worker_api_bearer_token IS NOT NULL "
                "AND n.last_seen_at > now() - make_interval(secs => :heartbeat)) RETURNING task_id"
            ),
            {"grace": settings.retry_placement_timeout, "heartbeat": settings.node_heartbeat_timeout},
        ).all()
        for (task_id,) in [*failed, *stranded]:
            _finish_task(session, task_id, "failed")
    for (job_id,) in requeued:
        log.info("job %s: lease expired, back in the queue", job_id)
    return [str(t) for (t,) in [*failed, *stranded]]
