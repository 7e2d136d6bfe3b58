"""A runtime's outcome turned into the Worker API's ``RunJobResponse``.

The shape and the rules are docs/wire_contract.md#worker-run-job-response.
"""

from __future__ import annotations

import datetime as dt

from cynode_core.contract import SandboxOutcome
from cynode_core.contract.job import RunJobResponse, RunStatus, Truncation, format_time, without_nul

CANCEL_NOTE = "[cynode] job canceled: the node stopped its container on request\n"
SHUTDOWN_NOTE = "[cynode] job canceled: the node agent is shutting down and stopped its container\n"
# Put before a run's own stderr when a cancel stopped its container; the exit code is the container's.
STOPPED_NOTE = "job canceled: container killed (exit {exit_code})\n"
INTERRUPTED_NOTE = (
    "[cynode] the node agent stopped while this job was running; "
    "the job was not run again, since it may already have had its effects\n"
)


def utc_now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def stopped_note(exit_code: int) -> bytes:
    """The line that opens the stderr of a run whose container a cancel stopped."""
    return STOPPED_NOTE.format(exit_code=exit_code).encode()


def _drop_partial_tail(data: bytes) -> bytes:
    """Remove a UTF-8 sequence left incomplete at the end by a byte cut."""
    # Look back at most 3 bytes for the lead byte of the last sequence.
    for back in range(1, min(4, len(data)) + 1):
        byte = data[-back]
        if byte & 0xC0 == 0x80:
            continue  # continuation byte: keep looking for the lead
        if byte < 0x80:
            return data
        need = 2 if byte >= 0xC0 and byte < 0xE0 else 3 if byte < 0xF0 else 4
        return data if back >= need else data[:-back]
    return data


def cap_output(data: bytes, limit: int, already_truncated: bool = False) -> tuple[str, bool]:
    """Decode ``data`` as UTF-8 and cut it to at most ``limit`` encoded bytes at a character boundary.

    Invalid bytes become U+FFFD first (a JSON string must be valid UTF-8);
    since a replacement character is 3 bytes, the cut is made on the
    decoded text so the answer never exceeds ``limit``. Returns the text and
    whether anything was cut (here or by the runtime).
    """
    truncated = already_truncated
    if len(data) > limit:
        data = data[:limit]
        truncated = True
    if truncated:
        data = _drop_partial_tail(data)
    text = without_nul(data.decode("utf-8", errors="replace"))
    encoded = text.encode("utf-8")
    if len(encoded) > limit:
        # The cut prefix is valid UTF-8 except possibly its tail, which "ignore" drops.
        text = encoded[:limit].decode("utf-8", errors="ignore")
        truncated = True
    return text, truncated


def _with_note(stderr: bytes, note: str, limit: int, truncated: bool) -> tuple[str, bool]:
    """Stderr with a node note appended; the note is kept whole, the output gives way."""
    room = max(limit - len(note.encode("utf-8")) - 1, 0)  # 1: the newline that may separate them
    text, truncated = cap_output(stderr, room, truncated)
    if text and not text.endswith("\n"):
        text += "\n"
    return text + note, truncated


def build_run_job_response(
    *,
    task_id: str,
    job_id: str,
    outcome: SandboxOutcome,
    started_at: dt.datetime,
    ended_at: dt.datetime,
    max_output_bytes: int,
    cancel_note: str | None = None,
) -> RunJobResponse:
    """The ``RunJobResponse`` of one finished job.

    ``exit_code`` is always present. A runtime status outside the
    contract's enum, or ``completed`` with a non-zero code, is reported as
    ``failed``. A canceled job (``cancel_note`` set) is ``failed`` with
    exit code -1 and the note at the end of ``stderr``.
    """
    status = RunStatus(outcome.status) if outcome.status in set(RunStatus) else RunStatus.FAILED
    exit_code = int(outcome.exit_code)
    if status is RunStatus.COMPLETED and exit_code != 0:
        status = RunStatus.FAILED
    if status is RunStatus.TIMEOUT:
        exit_code = -1
    stdout, stdout_truncated = cap_output(outcome.stdout, max_output_bytes, outcome.stdout_truncated)
    if cancel_note is not None:
        status, exit_code = RunStatus.FAILED, -1
        stderr, stderr_truncated = _with_note(outcome.stderr, cancel_note, max_output_bytes, outcome.stderr_truncated)
    else:
        stderr, stderr_truncated = cap_output(outcome.stderr, max_output_bytes, outcome.stderr_truncated)
    return RunJobResponse(
        task_id=task_id,
        job_id=job_id,
        status=status.value,
        exit_code=exit_code,
        stdout=stdout,
        stderr=stderr,
        started_at=format_time(outcome.started_at or started_at),
        ended_at=format_time(outcome.ended_at or ended_at),
        truncated=Truncation(stdout_truncated, stderr_truncated),
    )


def interrupted_response(task_id: str, job_id: str, when: dt.datetime) -> RunJobResponse:
    """The result given for a job a previous agent process left running."""
    stamp = format_time(when)
    return RunJobResponse(
        task_id=task_id,
        job_id=job_id,
        status=RunStatus.FAILED.value,
        exit_code=-1,
        stdout="",
        stderr=INTERRUPTED_NOTE,
        started_at=stamp,
        ended_at=stamp,
        truncated=Truncation(False, False),
    )
