"""The built-in ``least-loaded`` scheduler plugin.

It chooses the ready node with the most free slots (ties: the first by
slug). As a ``cynode_select_node`` implementation it answers the two-step
claim; as a ``cynode_claim_job`` implementation it makes the same choice in
the claim statement itself (one round trip), as long as no other plugin
chooses nodes.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from typing import Any

from cynode_core import hookimpl
from cynode_core.contract import InferenceInfo, JobInfo, NodeCandidate
from cynode_core.orchestrator.dispatch.fair_order import picked_job_ctes, record_turn
from cynode_core.orchestrator.dispatch.placement import ClaimAttempt
from cynode_core.orchestrator.dispatch.queue import JobQueue

PLUGIN_NAME = "least-loaded"

# Pick, place and take in one statement. The jobs are the first in fair
# order (dispatch/fair_order.py) that this claimer can lock, at most
# ``room`` of them (the dispatcher's idle threads). The first one chooses the
# node; the chosen node's row is locked and its free slots checked again on
# the row as it is after the lock (``nodes.running_jobs``, kept by triggers
# on jobs): a claim that waited for another's lock on the node sees the jobs
# that claim placed, so concurrent claimers never place more jobs than the
# node's slots (a node found full then yields no claim; the jobs stay
# queued). The jobs after the first go to the same node, as many as one
# claim at a time would place there before another node had more free
# slots, and never past a job that prefers another node. Nodes that just
# refused a connection (suspects) get no job while any other node is ready,
# even a full one (the job waits for its slot, as the two-step claim does),
# and then one job at a time; a job retried after a lost lease prefers the
# node it was on (that node answers a repeat from its stored result). Each
# job gets a lease of its own. The owners' turns are recorded only for the
# jobs taken; locked candidates not taken stay queued.
_PLACE_AND_TAKE = """
    , cand AS (
        SELECT n.id, n.node_slug, n.max_concurrency - n.running_jobs AS free, n.id = ANY(%(suspects)s) AS suspect
        FROM nodes n
        WHERE n.status = 'active' AND n.config_ack_status = 'applied' AND n.config_ack_version = n.config_version
          AND coalesce(n.worker_api_target_url, '') <> '' AND n.worker_api_bearer_token IS NOT NULL
          AND n.last_seen_at > now() - make_interval(secs => %(heartbeat)s)
    ), head AS (
        SELECT * FROM j ORDER BY rank LIMIT 1
    ), chosen AS (
        SELECT cand.id, cand.free, cand.suspect FROM cand, head WHERE cand.free > 0
          AND (NOT cand.suspect OR NOT EXISTS (SELECT 1 FROM cand c WHERE NOT c.suspect))
        ORDER BY cand.suspect ASC, (cand.id = head.node_id) DESC, cand.free DESC, cand.node_slug LIMIT 1
    ), pick AS (
        SELECT n.id, n.worker_api_target_url, n.worker_api_bearer_token, n.max_concurrency - n.running_jobs AS free
        FROM nodes n
        WHERE n.id = (SELECT id FROM chosen) AND n.running_jobs < n.max_concurrency
        FOR UPDATE OF n
    ), share AS (
        SELECT least(pick.free, CASE WHEN chosen.suspect THEN 1 ELSE greatest(1, chosen.free + 1 - coalesce(
            (SELECT max(c.free) FROM cand c WHERE c.id <> chosen.id AND NOT c.suspect), 0)) END) AS n
        FROM pick, chosen
    ), take AS (
        SELECT s.id, s.rank FROM (
            SELECT j.id, j.rank, count(*) FILTER (
                WHERE j.rank > head.rank AND j.node_id IS NOT NULL AND j.node_id <> pick.id
            ) OVER (ORDER BY j.rank) AS blocked
            FROM j, head, pick
        ) s
        WHERE s.blocked = 0 ORDER BY s.rank LIMIT (SELECT n FROM share)
    ), u AS (
        UPDATE jobs SET status = 'running', node_id = pick.id, lease_id = gen_random_uuid(), lease_owner = %(owner)s,
            lease_expires_at = now() + make_interval(secs => %(secs)s), attempts = jobs.attempts + 1,
            started_at = coalesce(jobs.started_at, now()), next_attempt_at = NULL, updated_at = now()
        FROM take, pick WHERE jobs.id = take.id
        RETURNING jobs.id, jobs.task_id, jobs.payload, jobs.attempts, jobs.lease_id, take.rank
    ), t AS (
        UPDATE tasks SET status = 'running', updated_at = now() FROM u WHERE tasks.id = u.task_id AND tasks.status = 'pending'
    ),"""

_RETURN = """
    SELECT u.id, u.task_id, u.payload, u.attempts, pick.id, pick.worker_api_target_url, pick.worker_api_bearer_token,
           (SELECT request_id FROM tasks WHERE tasks.id = u.task_id), u.lease_id
    FROM u, pick ORDER BY u.rank
"""


@functools.lru_cache(maxsize=8)
def claim_sql(max_running_per_user: int) -> str:
    """The one-statement claim of up to ``room`` jobs, with the per-user running cap (0: none) written into it."""
    return (
        "WITH RECURSIVE "
        + picked_job_ctes(max_running_per_user, limit="%(room)s")
        + _PLACE_AND_TAKE
        + record_turn("j.id IN (SELECT id FROM u)")
        + _RETURN
    )


class LeastLoaded:
    """Pick the node with the most free slots; ties go to the first by slug."""

    @hookimpl(trylast=True)
    def cynode_select_node(self, job: JobInfo, candidates: Sequence[NodeCandidate]) -> NodeCandidate | None:
        free = [c for c in candidates if c.free_slots > 0]
        if not free:
            return None
        return max(free, key=lambda c: (c.free_slots, -candidates.index(c)))

    @hookimpl(trylast=True)
    def cynode_select_inference_node(
        self, request: InferenceInfo, candidates: Sequence[NodeCandidate]
    ) -> NodeCandidate | None:
        if not candidates:
            return None
        return min(candidates, key=lambda c: (request.in_flight.get(c.node_id, 0), -c.free_slots, candidates.index(c)))

    # Optional: a plugin manager without the orchestrator's claim hook (the node's, a test's) ignores it.
    @hookimpl(optionalhook=True)
    def cynode_claim_job(self, queue: JobQueue, select_node: Any, room: int) -> ClaimAttempt | None:
        if any(impl.plugin is not self for impl in select_node.get_hookimpls()):
            return None  # another plugin chooses nodes: the two-step claim asks it
        jobs = queue.claim_several(claim_sql(queue.settings.max_running_per_user), room)
        return ClaimAttempt(jobs[0] if jobs else None, more=tuple(jobs[1:]))
