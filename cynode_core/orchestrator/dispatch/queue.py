"""Claiming queued jobs: ``SELECT ... FOR UPDATE SKIP LOCKED`` plus a lease, placed on a node.

A :class:`JobQueue` offers two ways to claim, and the scheduling plugins
choose between them (see ``claim_hooks``): a two-step claim (pick the job,
let ``cynode_select_node`` choose among the candidates, take the job on that
node under the node's row lock) and the one-statement least-loaded claim the
built-in scheduler uses. Either way a claimed job leaves the queue as a
:class:`ClaimedJob`: the typed run request for the node, the node's endpoint
and the lease that fences every later write.
"""

from __future__ import annotations

import dataclasses
import threading
import time
import uuid
from collections.abc import Callable
from typing import Any

import psycopg
from sqlalchemy import text
from sqlalchemy.orm import Session

from cynode_core.contract import JobInfo, NodeCandidate
from cynode_core.contract.job import RunJobRequest, SandboxRequest, UnusablePayload, payload_from_storage
from cynode_core.orchestrator.db import Database
from cynode_core.orchestrator.dispatch.claimed_job import ClaimedJob
from cynode_core.orchestrator.dispatch.fair_order import two_step_pick
from cynode_core.orchestrator.dispatch.store import fail_unusable
from cynode_core.orchestrator.node_client import NodeEndpoint
from cynode_core.orchestrator.services.nodes import HEARTBEAT_TIMEOUT, list_nodes
from cynode_core.orchestrator.services.secrets import TokenCipher
from cynode_core.orchestrator.settings import OrchestratorSettings

SelectNode = Callable[..., NodeCandidate | None]


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


# Take over the oldest expired lease, on the job's own node.
_ADOPT = """
    WITH j AS (
        SELECT id FROM jobs WHERE status = 'running' AND lease_expires_at < now() AND attempts < %(max)s
        ORDER BY lease_expires_at, id FOR UPDATE SKIP LOCKED LIMIT 1
    ), u AS (
        UPDATE jobs SET lease_id = %(lease)s, lease_owner = %(owner)s, attempts = jobs.attempts + 1,
            lease_expires_at = now() + make_interval(secs => %(secs)s), last_error = 'lease expired', updated_at = now()
        FROM j WHERE jobs.id = j.id
        RETURNING jobs.id, jobs.task_id, jobs.payload, jobs.attempts, jobs.node_id
    )
    SELECT u.id, u.task_id, u.payload, u.attempts, u.node_id, n.worker_api_target_url, n.worker_api_bearer_token,
           (SELECT request_id FROM tasks WHERE tasks.id = u.task_id)
    FROM u LEFT JOIN nodes n ON n.id = u.node_id AND coalesce(n.worker_api_target_url, '') <> ''
"""

# An adopted job whose node cannot be called: back to the queue, for any node, the attempt not counted.
_RELEASE = """
    UPDATE jobs SET status = 'queued', node_id = NULL, lease_id = NULL, lease_owner = NULL, lease_expires_at = NULL,
        next_attempt_at = now(), attempts = attempts - 1, updated_at = now()
    WHERE id = %(id)s AND lease_id = %(lease)s AND status = 'running' RETURNING id
"""


class ClaimConnection:
    """A dispatcher thread's own autocommit connection for the one-statement claim.

    Kept outside the pool: no checkout, no pre-ping, prepared after a few uses,
    so a claim costs one round trip. Reopened after any error.
    """

    def __init__(self, url: str):
        self.url = url.replace("postgresql+psycopg://", "postgresql://")
        self._conn: psycopg.Connection | None = None

    def execute(self, query: str, params: dict[str, Any]) -> tuple | None:
        rows = self.execute_all(query, params)
        return rows[0] if rows else None

    def execute_all(self, query: str, params: dict[str, Any]) -> list[tuple]:
        if self._conn is None or self._conn.closed:
            self._conn = psycopg.connect(
                self.url,
                autocommit=True,
                connect_timeout=5,
                options="-c timezone=UTC",
                application_name="cynode-dispatch",
            )
        try:
            return self._conn.execute(query, params).fetchall()
        except psycopg.Error:
            self.close()
            raise

    def close(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None


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


class JobQueue:
    """The queued jobs of one database, as one dispatcher thread claims them."""

    def __init__(
        self,
        db: Database,
        settings: OrchestratorSettings,
        cipher: TokenCipher,
        owner: str,
        *,
        candidates: CandidateCache | None = None,
        suspects: SuspectNodes | None = None,
    ):
        self.db = db
        self.settings = settings
        self.owner = owner
        self._cipher = cipher
        self._tokens: dict[str, str] = {}
        self.candidates = candidates or CandidateCache(ttl=0.0, heartbeat_timeout=settings.node_heartbeat_timeout)
        self.suspects = suspects or SuspectNodes()
        self._conn = threading.local()

    def close(self) -> None:
        conn = getattr(self._conn, "value", None)
        if conn is not None:
            conn.close()
            self._conn.value = None

    def _claim_connection(self) -> ClaimConnection:
        conn = getattr(self._conn, "value", None)
        if conn is None:
            conn = self._conn.value = ClaimConnection(self.db.url)
        return conn

    def _token(self, stored: str) -> str:
        # Fernet decryption per claim is measurable; ciphertexts change only on rotation.
        if stored not in self._tokens:
            self._tokens[stored] = self._cipher.decrypt(stored)
        return self._tokens[stored]

    def _claimed(
        self,
        job_id: Any,
        task_id: Any,
        sandbox: SandboxRequest,
        lease_id: uuid.UUID,
        attempts: int,
        node_id: Any,
        endpoint: tuple[str, str],
        request_id: str | None,
    ) -> ClaimedJob:
        url, stored_token = endpoint
        return ClaimedJob(
            request=RunJobRequest(task_id=str(task_id), job_id=str(job_id), sandbox=sandbox),
            lease_id=lease_id,
            attempts=attempts,
            node_id=node_id if isinstance(node_id, uuid.UUID) else uuid.UUID(str(node_id)),
            node=NodeEndpoint(url, self._token(stored_token)),
            request_id=request_id,
        )

    def claim_in_one_statement(self, sql: str) -> ClaimedJob | None:
        """Pick, place and take in one round trip with a scheduler's own claim ``sql``.

        ``sql`` takes the parameters ``lease``, ``owner``, ``secs``,
        ``heartbeat`` and ``suspects`` and returns ``job id, task id,
        payload, attempts, node id, node URL, stored node token, request id``.
        """
        lease_id = uuid.uuid4()
        row = self._claim_connection().execute(sql, {**self._claim_params(), "lease": lease_id})
        return self._from_row(row, lease_id)

    def claim_several(self, sql: str, room: int) -> list[ClaimedJob]:
        """Pick, place and take up to ``room`` jobs in one round trip with a scheduler's own claim ``sql``.

        ``sql`` takes the parameters of :meth:`claim_in_one_statement` but
        ``lease``, and ``room``; it returns a row per job taken, in the order
        they should start, as :meth:`claim_in_one_statement`'s plus the job's
        own lease id.
        """
        rows = self._claim_connection().execute_all(sql, {**self._claim_params(), "room": max(1, room)})
        claimed = (self._from_row(row[:8], row[8]) for row in rows)
        return [job for job in claimed if job is not None]

    def _claim_params(self) -> dict[str, Any]:
        """The parameters every one-statement claim gets: ``owner``, ``secs``, ``heartbeat`` and ``suspects``."""
        return {
            "owner": self.owner,
            "secs": self.settings.lease_seconds,
            "heartbeat": self.settings.node_heartbeat_timeout,
            "suspects": self.suspects.current(),
        }

    def _from_row(self, row: tuple | None, lease_id: uuid.UUID) -> ClaimedJob | None:
        """A claimed ``job id, task id, payload, attempts, node id, URL, stored token, request id`` row."""
        if row is None:
            return None
        job_id, task_id, payload, attempts, node_id, url, stored_token, request_id = row
        try:
            sandbox = payload_from_storage(payload)
        except UnusablePayload as exc:
            with self.db.session() as session:
                fail_unusable(session, job_id, task_id, str(exc))
            return None
        return self._claimed(job_id, task_id, sandbox, lease_id, attempts, node_id, (url, stored_token), request_id)

    def with_current_node(self, job: ClaimedJob) -> ClaimedJob:
        """``job`` with its node's Worker API URL and token as they are now.

        A node that registered again since the claim (say, after a restart) has
        a new token: a job asked for again on it must not carry the old one.
        """
        with self.db.session() as session:
            row = session.execute(
                text("SELECT worker_api_target_url, worker_api_bearer_token FROM nodes WHERE id = :id"),
                {"id": job.node_id},
            ).first()
        if row is None or not row[0] or row[1] is None:
            return job  # the node left: the call fails and the fence decides
        return dataclasses.replace(job, node=NodeEndpoint(row[0], self._token(row[1])))

    def adopt_expired(self) -> ClaimedJob | None:
        """Take over a job whose lease expired (its dispatcher died), on the node it was sent to.

        The node may still be running it: it is asked again under the same
        ``job_id`` (its idempotency answers with that run), never handed to
        another node. A job whose node can no longer be called goes back to
        the queue. One more attempt is counted; ``recover_expired_leases``
        fails the job once the attempts are used up.
        """
        lease_id = uuid.uuid4()
        row = self._claim_connection().execute(
            _ADOPT,
            {
                "lease": lease_id,
                "owner": self.owner,
                "secs": self.settings.lease_seconds,
                "max": self.settings.max_attempts,
            },
        )
        if row is not None and (row[5] is None or row[6] is None):  # the node left, or has no Worker API now
            self._claim_connection().execute(_RELEASE, {"id": row[0], "lease": lease_id})
            return None
        return self._from_row(row, lease_id)

    def claim_with(self, select_node: SelectNode) -> ClaimedJob | None:
        """Pick the next due job in fair order, let ``select_node(job=, candidates=)`` place it, take it there."""
        with self.db.engine.begin() as conn:
            row = conn.execute(text(two_step_pick(self.settings.max_running_per_user))).first()
            if row is None:
                return None
            job_id, task_id, payload, attempts, preferred, request_id = row
            try:
                sandbox = payload_from_storage(payload)
            except UnusablePayload as exc:
                fail_unusable(conn, job_id, task_id, str(exc))
                return None
            candidates = self.candidates.get(conn)
            suspect_ids = {str(s) for s in self.suspects.current()}
            healthy = [c for c in candidates if c.node_id not in suspect_ids]
            candidates = healthy or candidates  # suspects only when nothing else is left
            chosen = next((c for c in candidates if preferred and c.node_id == str(preferred)), None)
            if chosen is None:
                chosen = select_node(
                    job=JobInfo(str(job_id), str(task_id), sandbox.use_inference, attempts + 1),
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
                    "owner": self.owner,
                    "secs": self.settings.lease_seconds,
                },
            ).first()
            if taken is None or not taken[2]:
                self.candidates.invalidate()  # the node left, or its slots are full: look again next time
                conn.rollback()
                return None
        return self._claimed(
            job_id, task_id, sandbox, lease_id, attempts + 1, chosen.node_id, (taken[0], taken[1]), request_id
        )
