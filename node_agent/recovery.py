"""Crash recovery: settling what a previous agent process of this node left behind.

A killed agent leaves its jobs' containers running, their workspaces on
disk and their start records in the job store. At start, before it takes
any job, the node finds them all: the records in its store, the containers
by their owner label (a runtime's optional ``sweep``, so a container the
store does not know is found too) and the workspaces by listing their root.
It removes the containers and workspaces, and records every such job as
failed.

Such a job is never run again: running it a second time could repeat its
effects, and the orchestrator re-dispatches under the same ``job_id``
precisely because it relies on the node not to
(docs/wire_contract.md#worker-idempotency). The orchestrator learns of the
failure through that re-dispatch, answered from the record; its retry
policy decides what follows.
"""

from __future__ import annotations

import logging
import shutil
import uuid
from pathlib import Path

from cynode_core.contract import LeftoverJob, SandboxRuntime, SweepingRuntime
from node_agent.job_result import interrupted_response, utc_now
from node_agent.job_store import STATE_FINISHED, JobRecord, JobStore
from node_agent.workspace import Workspaces

log = logging.getLogger(__name__)


def _interrupted(record: JobRecord) -> JobRecord:
    result = interrupted_response(record.task_id, record.job_id, utc_now())
    return JobRecord(record.job_id, record.task_id, STATE_FINISHED, result=result)


def settle_interrupted_jobs(
    store: JobStore,
    runtime: SandboxRuntime,
    workspaces: Workspaces,
    proxy_root: Path,
    *,
    retention_seconds: float,
    owner: str = "",
) -> list[str]:
    """Record each job a previous process left as failed and clear what it left; return their keys.

    ``owner`` is the mark on this node's containers (``SandboxSpec.owner``).
    Also drops finished records older than ``retention_seconds``.
    """
    # No proxy outlives the agent process that ran it: whatever is here was left by a crash.
    shutil.rmtree(proxy_root, ignore_errors=True)
    interrupted = store.recover(_interrupted, retention_seconds=retention_seconds)
    for key in interrupted:
        log.warning("job %s was running when the agent stopped; recorded as failed", key)
    swept = _sweep(runtime, owner, interrupted)
    for job in swept:
        key = job.job_id.lower()
        if key and key not in interrupted and store.get_finished(key) is None:
            # Its container ran, but the store never heard of it (or lost it).
            store.save_finished(_interrupted(JobRecord(key, job.task_id, STATE_FINISHED)))
            interrupted.append(key)
            log.warning("job %s had a container but no record when the agent stopped; recorded as failed", key)
    _clear_workspaces(store, workspaces, set(interrupted))
    return interrupted


def _sweep(runtime: SandboxRuntime, owner: str, interrupted: list[str]) -> list[LeftoverJob]:
    """Remove the containers a previous process left; best effort, start-up goes on either way."""
    swept: list[LeftoverJob] = []
    if owner and isinstance(runtime, SweepingRuntime):
        try:
            swept = runtime.sweep(owner)
        except Exception as exc:  # noqa: BLE001 - the node still starts; the runtime check decides
            log.error("could not remove the containers the previous agent left: %s", exc)
        for job in swept:
            log.warning("removed the container of job %s (task %s) left by the previous agent", job.job_id, job.task_id)
    # A container made before it carried an owner, or by a runtime that cannot sweep:
    # at least the jobs the store names are stopped.
    found = {job.job_id.lower() for job in swept}
    for key in interrupted:
        if key in found:
            continue
        try:
            runtime.cancel(key)
        except Exception as exc:  # noqa: BLE001 - best effort, recovery goes on
            log.warning("job %s: could not stop a leftover container: %s", key, exc)
    return swept


def _clear_workspaces(store: JobStore, workspaces: Workspaces, interrupted: set[str]) -> None:
    """Delete every workspace left under the root; a finished job's stays only where workspaces are kept."""
    try:
        entries = [path for path in workspaces.root.iterdir() if path.is_dir()]
    except FileNotFoundError:
        return
    except OSError as exc:
        log.warning("cannot list the workspaces under %s: %s", workspaces.root, exc)
        return
    for path in entries:
        key = path.name
        if not _is_job_key(key):
            continue  # not a job's workspace (e.g. a file system's lost+found)
        if key not in interrupted and store.get_finished(key) is not None:
            workspaces.release(path)  # the job ended before the crash: kept or deleted as configured
        else:
            workspaces.discard(key)  # interrupted, or never started: nothing in it is wanted
            log.info("removed the workspace %s left by the previous agent", key)


def _is_job_key(name: str) -> bool:
    """Whether ``name`` is a job's key: a UUID in its lowercase canonical form."""
    try:
        return str(uuid.UUID(name)) == name
    except ValueError:
        return False
