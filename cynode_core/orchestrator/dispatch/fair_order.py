"""The order in which queued jobs leave the queue, fair across users (decisions.md, Dispatch, "Fair sharing").

Every claim, one-statement or two-step, takes the first due job in this
order that it can lock:

1. its *turn*: the owner's running jobs plus the job's place among the
   owner's queued jobs (1 for the oldest; a job waiting out a retry delay
   keeps its place). A job another dispatcher has locked but not yet taken
   is still queued in this statement's snapshot, so it keeps its place: a
   concurrent claimer that skips it moves on to another owner's first job,
   not to the same owner's second;
2. then the owner whose last turn is the oldest (never served first), so
   owners with as many running jobs take turns one job at a time;
3. then the oldest job.

The owner is ``jobs.owner_id`` (the task's creator, the nil UUID for none).
A claim reads each owner's first few queued jobs (an index-only read of the
partial index on queued jobs by owner) and counts each owner's running jobs:
its cost grows with the number of owners waiting, not with the queue. With a
per-user running cap, a job whose turn is past the cap is not claimed. The
owner's turn is recorded in ``dispatch_turns`` in the same statement (or
transaction) that takes the job.

The SQL has no bind parameters, ``%`` or ``:`` of its own (but the
``limit`` a caller writes in), so the same text serves psycopg's
``%(name)s`` statements and SQLAlchemy's ``text()``.
"""

from __future__ import annotations

import functools

# How many of each owner's first queued jobs a claim considers (an index-only
# read per owner); also the most jobs one claim takes (a claim for several
# idle dispatcher threads). If every one of them, for every owner, is being
# claimed by someone else at this moment, each owner is being served at once
# and the claim takes the oldest due job instead. With a running cap, an
# owner's jobs past the cap cannot run anyway: the first ``cap`` (at most
# :data:`MAX_HEADS`) are all the candidates, and there is no fallback.
HEADS = 8
MAX_HEADS = 64

# ``owners`` walks the distinct owners of queued jobs down the partial index
# (one index probe per owner); ``waiting`` counts each one's running jobs
# once; ``fair`` has one row per candidate job, ranked in fair order;
# ``j_fair`` locks the first ``limit`` candidates it can (fetched by id: a
# join would let the planner read the whole queue), ``j_any`` is the
# one-job fallback.
_FAIR = """
    owners AS (
        (SELECT owner_id FROM jobs WHERE status = 'queued' ORDER BY owner_id LIMIT 1)
        UNION ALL
        SELECT (SELECT q.owner_id FROM jobs q WHERE q.status = 'queued' AND q.owner_id > o.owner_id
                ORDER BY q.owner_id LIMIT 1)
        FROM owners o WHERE o.owner_id IS NOT NULL
    ), waiting AS MATERIALIZED (
        SELECT o.owner_id AS owner, d.last_turn_at,
               CASE WHEN {count_running} THEN
                   (SELECT count(*) FROM jobs r WHERE r.owner_id = o.owner_id AND r.status = 'running')
               ELSE 0 END AS running
        FROM owners o LEFT JOIN dispatch_turns d ON d.owner = o.owner_id
        WHERE o.owner_id IS NOT NULL
    ), heads AS (
        SELECT h.id, w.owner, h.created_at, w.last_turn_at,
               w.running + row_number() OVER (PARTITION BY w.owner ORDER BY h.created_at, h.id) AS turn
        FROM waiting w CROSS JOIN LATERAL (
            SELECT q.id, q.created_at FROM jobs q WHERE q.owner_id = w.owner AND q.status = 'queued'
            ORDER BY q.created_at, q.id LIMIT {heads}
        ) h
    ), fair AS (
        SELECT heads.*, row_number() OVER (ORDER BY turn, last_turn_at NULLS FIRST, created_at, id) AS rank
        FROM heads {cap}
    ), j_fair AS (
        SELECT jobs.id, jobs.task_id, jobs.payload, jobs.attempts, jobs.node_id, fair.owner, fair.rank
        FROM fair JOIN jobs ON jobs.id = fair.id
        WHERE jobs.id = ANY(ARRAY(SELECT id FROM fair))
          AND jobs.status = 'queued' AND (jobs.next_attempt_at IS NULL OR jobs.next_attempt_at <= now())
        ORDER BY fair.rank
        FOR UPDATE OF jobs SKIP LOCKED LIMIT {limit}
    ), j_any AS (
        SELECT jobs.id, jobs.task_id, jobs.payload, jobs.attempts, jobs.node_id, jobs.owner_id, CAST(1 AS bigint)
        FROM jobs
        WHERE {fallback} AND NOT EXISTS (SELECT 1 FROM j_fair) AND jobs.status = 'queued'
          AND (jobs.next_attempt_at IS NULL OR jobs.next_attempt_at <= now())
        ORDER BY jobs.created_at, jobs.id
        FOR UPDATE SKIP LOCKED LIMIT 1
    ), j AS (
        SELECT * FROM j_fair UNION ALL SELECT * FROM j_any
    )"""


_OTHER_OWNER_WAITS = "EXISTS (SELECT 1 FROM owners x WHERE x.owner_id <> o.owner_id)"


@functools.lru_cache(maxsize=16)
def picked_job_ctes(max_running_per_user: int, limit: str = "1") -> str:
    """``WITH RECURSIVE`` items ending in ``j``: the next jobs to take, locked.

    ``j`` has ``id, task_id, payload, attempts, node_id, owner, rank`` (1 for
    the first in fair order); at most ``limit`` rows (an SQL expression, e.g. a
    bind parameter; one row when only the fallback finds a job). The
    statement must begin with ``WITH RECURSIVE`` and these items.
    ``max_running_per_user`` 0 means no cap.
    """
    cap = int(max_running_per_user)
    if cap > 0:
        return _FAIR.format(
            heads=min(cap, MAX_HEADS), cap=f"WHERE turn <= {cap}", fallback="false", count_running="true", limit=limit
        )
    # Without a cap, running jobs only order owners against each other: a lone owner's jobs need no count.
    return _FAIR.format(heads=HEADS, cap="", fallback="true", count_running=_OTHER_OWNER_WAITS, limit=limit)


def record_turn(taken: str) -> str:
    """A ``WITH`` item that stamps the turn of the owners of the rows of ``j`` for which ``taken`` (SQL) holds."""
    return f"""
    turn AS (
        INSERT INTO dispatch_turns (owner, last_turn_at) SELECT DISTINCT j.owner, now() FROM j WHERE {taken}
        ON CONFLICT (owner) DO UPDATE SET last_turn_at = excluded.last_turn_at
    )"""


@functools.lru_cache(maxsize=8)
def two_step_pick(max_running_per_user: int) -> str:
    """The first step of the two-step claim: the job, in fair order, with its task's request id.

    Returns ``id, task_id, payload, attempts, node_id, request_id``; the
    owner's turn is recorded in the same transaction (undone with it when no
    node takes the job).
    """
    return f"""
    WITH RECURSIVE {picked_job_ctes(max_running_per_user)}, {record_turn("true")}
    SELECT j.id, j.task_id, j.payload, j.attempts, j.node_id, (SELECT request_id FROM tasks WHERE tasks.id = j.task_id)
    FROM j"""
