"""Stopping a canceled job's container: the executor's stopper thread, and whether it stopped one.

The runtime keeps no note of a cancel: its ``cancel(job_id)`` stops the
job's container only if one is running, so the stopper asks again until it
stopped one or the run ended. ``lock`` is the executor's, under which a
job's fields are read and written.
"""

from __future__ import annotations

import logging
import threading

from cynode_core.contract import SandboxRuntime
from node_agent.active_job import ActiveJob

log = logging.getLogger(__name__)

# How long a cancel call waits for the container to be stopped; the stopping goes on after it.
CANCEL_WAIT_SECONDS = 5.0
# Between two stop attempts while the container is not running yet: first short, then longer.
STOP_RETRY_FIRST, STOP_RETRY_MAX = 0.1, 1.0


def start_stopper(runtime: SandboxRuntime, lock: threading.Lock, key: str, job: ActiveJob) -> threading.Thread:
    """A started thread running :func:`stop_container` for the job."""
    stopper = threading.Thread(target=stop_container, args=(runtime, lock, key, job), name=f"stop-{key}", daemon=True)
    stopper.start()
    return stopper


def stop_container(runtime: SandboxRuntime, lock: threading.Lock, key: str, job: ActiveJob) -> None:
    """Ask the runtime to stop the job's container until it stopped one or the run ended.

    runtime.run may not have created or started the container yet;
    the runtime keeps no note of a cancel, so asking again is ours to do.
    """
    delay, warned = STOP_RETRY_FIRST, False
    while not job.sandbox_ended.is_set():
        try:
            if runtime.cancel(key):
                with lock:
                    job.container_stopped = True
                log.info("job %s: container stopped", key)
                return
        except Exception as exc:  # noqa: BLE001 - a failed stop must not fail the cancel call
            if not warned:
                log.warning("job %s: runtime cancel failed: %s", key, exc)
                warned = True
        job.sandbox_ended.wait(delay)
        delay = min(delay * 2, STOP_RETRY_MAX)


def stopped_by_cancel(lock: threading.Lock, job: ActiveJob) -> bool:
    """Whether a cancel stopped the job's container (call once ``sandbox_ended`` is set)."""
    with lock:
        stopper = job.stopper
    if stopper is not None:
        stopper.join()  # short: the run has ended, so at most one runtime.cancel call is left
    with lock:
        return job.container_stopped
