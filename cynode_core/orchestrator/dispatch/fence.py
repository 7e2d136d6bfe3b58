"""A job its node may still be running: asked for again on that node, never handed to another meanwhile.

When a ``jobs:run`` call is lost after it went out (the connection reset,
the answer timed out or was cut off), the node may have the job running.
The dispatcher then keeps the job, its lease and its ``node_id`` and asks
the same node again under the same ``job_id``; the node's idempotency
(docs/wire_contract.md#worker-idempotency) answers with the run in progress
or its stored result, and only a job the node never got starts there now.
Each call counts as an attempt. The job leaves the node only when:

- the node answers 503 (it runs no such job) *and* then answers a cancel of
  it, which also keeps a late copy of an earlier call from starting it
  (docs/wire_contract.md#worker-cancel): back to the queue for any node, the
  attempt not counted;
- or the node refuses the connection (no agent listens: an agent's
  containers die with it and a restarted agent sweeps leftovers before it
  listens, decisions.md Node 16 and Node 3);
- or the fence passes with no answer: ``CYNODE_DISPATCH_FENCE_SECONDS`` from
  the first lost call, or by default the job's timeout plus
  ``CYNODE_DISPATCH_HTTP_MARGIN`` from the last call that may have reached
  the node, by when the node has ended the job on its own timeout.

When the attempts run out first, the job fails. Whenever it leaves the node
without the node's word, the dispatcher sends the node a cancel that is
repeated until it answers (decisions.md Dispatch 9).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

from cynode_core.orchestrator.db import Database
from cynode_core.orchestrator.dispatch.claimed_job import ClaimedJob
from cynode_core.orchestrator.dispatch.store import take_attempt
from cynode_core.orchestrator.node_client import Outcome, cancel_job, run_timeout
from cynode_core.orchestrator.settings import OrchestratorSettings

log = logging.getLogger(__name__)


def retry_delay(attempts: int) -> float:
    """The pause before the next call of a job that has had ``attempts``: 0.5 s doubling, at most 10 s."""
    return min(0.5 * 2 ** (attempts - 1), 10.0)


@dataclass(frozen=True)
class Held:
    """How holding a job on its node ended."""

    job: ClaimedJob  # with the attempts the calls used
    # What the dispatcher acts on; None: the job is no longer this dispatcher's (canceled, or shutting down).
    outcome: Outcome | None
    # The node has not said it does not run the job: it must hear a cancel if the job leaves it.
    node_may_run: bool


def hold_on_node(
    db: Database,
    settings: OrchestratorSettings,
    stop: threading.Event,
    job: ClaimedJob,
    lost: Outcome,
    call: Callable[[ClaimedJob], Outcome],
    current: Callable[[ClaimedJob], ClaimedJob] = lambda job: job,
) -> Held:
    """Ask ``job``'s node again (``call``) after the ``lost`` call, until one of the endings above.

    ``current`` gives the job with its node's endpoint as it is now: a node
    that restarted meanwhile registered again and has a new token.
    """
    fixed = settings.dispatch_fence_seconds
    window = fixed or run_timeout(settings, job.request.sandbox.timeout_seconds)
    first_loss = last_reach = time.monotonic()  # the last call that may have reached the node
    outcome = lost
    log.info("job %s: %s after the call went out; it stays on its node", job.job_id, lost.error)
    while job.attempts < settings.max_attempts:
        deadline = (first_loss if fixed else last_reach) + window
        pause = min(retry_delay(job.attempts), deadline - time.monotonic())
        if stop.wait(max(pause, 0.0)):
            return Held(job, None, node_may_run=False)  # the lease runs out; a dispatcher takes the job over
        if time.monotonic() >= deadline:
            log.info("job %s: no answer from its node within the fence (%.0f s)", job.job_id, window)
            break
        taken = take_attempt(db, job, outcome.error, settings.lease_seconds)
        if taken is None:
            log.info("job %s: no longer held (canceled meanwhile)", job.job_id)
            return Held(job, None, node_may_run=False)
        job = current(taken)
        log.info("job %s: asking its node again (attempt %d/%d)", job.job_id, job.attempts, settings.max_attempts)
        outcome = call(job)
        if outcome.result is not None or outcome.accepted:
            return Held(job, outcome, node_may_run=False)
        if outcome.retry_busy:
            # The node runs no such job; a cancel makes sure a lost call of ours never starts it there.
            if cancel_job(job.node, str(job.job_id), job.request_id).reached:
                log.info("job %s: its node does not have it; it may go to any node", job.job_id)
                return Held(job, outcome, node_may_run=False)
        elif outcome.maybe_running:
            last_reach = time.monotonic()
        elif outcome.refused:
            # Refused: no agent listens there. An agent's containers die with it (its
            # Podman service's lifeline) and a restarted one sweeps what is left before
            # it listens, so the job runs there no more; the cancel still follows it.
            log.info("job %s: its node refuses connections; it may go to another node", job.job_id)
            break
        elif not outcome.retryable:
            break
    return Held(job, outcome, node_may_run=True)
