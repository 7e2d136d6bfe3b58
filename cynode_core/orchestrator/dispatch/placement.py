"""How a dispatcher thread claims a job: the ``cynode_claim_job`` hook and the built-in two-step claim.

The dispatcher always asks this hook, and nothing else, for its next job.
A scheduler that only chooses nodes implements the contract's
``cynode_select_node``; the built-in ``two-step-claim`` plugin asks it for
every job it picks. A scheduler whose rule can be written as one SQL
statement (the built-in ``least-loaded``) implements this hook as well and
claims in one round trip while it is the one choosing nodes.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from cynode_core import hookimpl, hookspec

if TYPE_CHECKING:
    from cynode_core.orchestrator.dispatch.claimed_job import ClaimedJob
    from cynode_core.orchestrator.dispatch.queue import JobQueue

PLUGIN_NAME = "two-step-claim"


@dataclass(frozen=True)
class ClaimAttempt:
    """A plugin's answer: it tried, and ``job`` is what it claimed (``None``: nothing was due).

    ``more`` are further jobs taken in the same claim (at most ``room - 1``),
    in the order they should start; idle dispatcher threads hand them over.
    """

    job: ClaimedJob | None
    more: tuple[ClaimedJob, ...] = ()


@hookspec(firstresult=True)
def cynode_claim_job(queue: JobQueue, select_node: Any, room: int) -> ClaimAttempt | None:
    """Take the next due job off the queue and place it on a node.

    :param queue: the :class:`~cynode_core.orchestrator.dispatch.queue.JobQueue`;
        ``queue.claim_with(select_node)`` claims in two steps,
        ``queue.claim_several(sql, room)`` or
        ``queue.claim_in_one_statement(sql)`` with a scheduler's own SQL.
    :param select_node: the ``cynode_select_node`` hook (call it with
        ``job=`` and ``candidates=``; ``select_node.get_hookimpls()`` lists
        who answers it).
    :param room: how many jobs the dispatcher can hand over now (1 or more:
        its idle threads); a plugin may claim up to that many at once.
    :returns: a :class:`ClaimAttempt`, or ``None`` to let the next plugin claim.
    Called by: every dispatcher thread, once per claim. Default plugins:
    ``least-loaded`` (one statement, while it is the only node chooser), then
    ``two-step-claim``.
    """


class TwoStepClaim:
    """Pick the next due job in fair order across users, ask ``cynode_select_node`` for its node, take it there."""

    @hookimpl(trylast=True)
    def cynode_claim_job(self, queue: JobQueue, select_node: Any) -> ClaimAttempt:
        return ClaimAttempt(queue.claim_with(select_node))
