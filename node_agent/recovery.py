"""Crash recovery: settling the jobs a previous agent process left running.

Such a job is recorded as failed and never run again: running it a second
time could repeat its effects, and the orchestrator re-dispatches under the
same ``job_id`` precisely because it relies on the node not to
(docs/wire_contract.md#worker-idempotency). A failed result with a clear
reason is the safe answer; the orchestrator's retry policy decides what
follows.
"""

from __future__ import annotations

import logging
import shutil
from pathlib import Path

from cynode_core.contract import SandboxRuntime
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
) -> list[str]:
    """Record each job left ``running`` as failed, and clear what it left behind; return their keys.

    Also drops finished records older than ``retention_seconds``.
    """
    # No proxy outlives the agent process that ran it: whatever is here was left by a crash.
    shutil.rmtree(proxy_root, ignore_errors=True)
    interrupted = store.recover(_interrupted, retention_seconds=retention_seconds)
    for key in interrupted:
        log.warning("job %s was running when the agent stopped; recorded as failed", key)
        try:
            runtime.cancel(key)  # its container may still be running
        except Exception as exc:  # noqa: BLE001 - best effort, recovery goes on
            log.warning("job %s: could not stop a leftover container: %s", key, exc)
        workspaces.discard(key)
    return interrupted
