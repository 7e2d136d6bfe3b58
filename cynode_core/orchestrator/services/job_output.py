"""A task's output as numbered chunks: written as jobs print, read by followers (wire_contract.md#tasks-logs-follow).

:func:`append` splits text into lines, and a line longer than
:data:`MAX_CHUNK_CHARS` into pieces, and numbers them after the task's last
chunk. The numbers count per task, not per job, so one number orders the
whole task's output and serves as the id of its server-sent event.

Writers of one task take turns: :func:`append` holds a transaction-scoped
advisory lock on the task until its transaction ends, so the chunks of
concurrent writers become visible in ``seq`` order and a reader that has
seen chunk ``n`` has seen every chunk before it; resuming "after ``n``"
therefore loses nothing. Each append notifies :data:`CHANNEL` with the task
id (delivered on commit); a trigger notifies the same channel when a task's
status changes (migration 0007), so followers on any orchestrator wake up.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass

from sqlalchemy import insert, select, text
from sqlalchemy.orm import Session

from cynode_core.contract.job import OUTPUT_CUT_MARKER
from cynode_core.orchestrator.models.job_output import OUTPUT_STREAMS, JobOutput

CHANNEL = "cynode_job_output"

# A line longer than this is stored (and sent) in pieces of this many characters.
MAX_CHUNK_CHARS = 4096


@dataclass(frozen=True)
class OutputChunk:
    seq: int
    job_id: uuid.UUID
    stream: str
    data: str


def split_chunks(data: str, limit: int = MAX_CHUNK_CHARS) -> list[str]:
    """``data`` as lines (each keeping its end of line), long ones cut into pieces of at most ``limit`` characters."""
    pieces: list[str] = []
    for line in data.splitlines(keepends=True):
        pieces.extend(line[i : i + limit] for i in range(0, len(line), limit))
    return pieces


def append(session: Session, job_id: uuid.UUID, stream: str, data: str, *, task_id: uuid.UUID | None = None) -> int:
    """Store ``data`` printed by a job on ``stream`` as the task's next chunks; how many were stored.

    Runs in the caller's transaction; followers hear of it once that commits.
    ``task_id`` saves a lookup when the caller knows the job's task.
    """
    if stream not in OUTPUT_STREAMS:
        raise ValueError(f"unknown output stream {stream!r}")
    pieces = split_chunks(data)
    if not pieces:
        return 0
    if task_id is None:
        task_id = session.execute(text("SELECT task_id FROM jobs WHERE id = :id"), {"id": job_id}).scalar_one()
    _lock_task(session, task_id)
    last = session.execute(
        text("SELECT coalesce(max(seq), 0) FROM job_output WHERE task_id = :t"), {"t": task_id}
    ).scalar_one()
    session.execute(
        insert(JobOutput),
        [
            {"task_id": task_id, "seq": last + n, "job_id": job_id, "stream": stream, "data": piece}
            for n, piece in enumerate(pieces, start=1)
        ],
    )
    session.execute(text("SELECT pg_notify(:c, :t)"), {"c": CHANNEL, "t": str(task_id)})
    return len(pieces)


def append_run(
    session: Session,
    job_id: uuid.UUID,
    task_id: uuid.UUID,
    node_id: uuid.UUID,
    stream: str,
    data: str,
    *,
    offset: int | None,
    cut: bool = False,
) -> int:
    """Store ``data`` a job's run on ``node_id`` printed on ``stream`` from character ``offset`` on.

    What the task's log already holds of that run's stream is skipped, so a
    piece sent again (its answer was lost) or a result whose output was
    mostly streamed adds only what is new; ``offset`` None appends all of
    ``data`` after what is stored. ``cut`` adds :data:`OUTPUT_CUT_MARKER` once.
    How many chunks were stored.
    """
    if data == "" and not cut:
        return 0  # nothing to add (a stream the job left empty)
    _lock_task(session, task_id)
    mark = session.execute(
        text("SELECT chars, cut FROM job_output_marks WHERE job_id = :j AND node_id = :n AND stream = :s"),
        {"j": job_id, "n": node_id, "s": stream},
    ).first()
    stored, was_cut = (mark[0], mark[1]) if mark is not None else (0, False)
    start = stored if offset is None else offset
    new = data[max(stored - start, 0) :]
    end = max(stored, start + len(data))
    marker = OUTPUT_CUT_MARKER if cut and not was_cut else ""
    if new == "" and marker == "" and end == stored:
        return 0
    session.execute(
        text(
            "INSERT INTO job_output_marks (job_id, node_id, stream, chars, cut) VALUES (:j, :n, :s, :c, :cut) "
            "ON CONFLICT (job_id, node_id, stream) DO UPDATE SET chars = EXCLUDED.chars, cut = EXCLUDED.cut"
        ),
        {"j": job_id, "n": node_id, "s": stream, "c": end, "cut": was_cut or cut},
    )
    return append(session, job_id, stream, new + marker, task_id=task_id)


def _lock_task(session: Session, task_id: uuid.UUID) -> None:
    """Take the task's writer turn until the transaction ends (taken again by the same session: no wait)."""
    session.execute(text("SELECT pg_advisory_xact_lock(hashtext(:k))"), {"k": f"job-output:{task_id}"})


def read_after(session: Session, task_id: uuid.UUID, after: int, limit: int) -> list[OutputChunk]:
    """The task's chunks numbered above ``after``, oldest first, at most ``limit`` of them."""
    rows = session.execute(
        select(JobOutput.seq, JobOutput.job_id, JobOutput.stream, JobOutput.data)
        .where(JobOutput.task_id == task_id, JobOutput.seq > after)
        .order_by(JobOutput.seq)
        .limit(limit)
    )
    return [OutputChunk(seq, job, stream, data) for seq, job, stream, data in rows]
