"""A job the executor is running, and the errors that keep a job from starting on a node.

Split out of ``executor``: the Worker API's ``jobs:run`` waits on an
:class:`ActiveJob` in the request, ``jobs:start`` in a thread of its own.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from cynode_core.contract.errors import CynodeError, JobNotStarted
from cynode_core.contract.job import RunJobResponse
from node_agent.job_result import CANCEL_NOTE

JobEnd = RunJobResponse | CynodeError  # what ``JobExecutor.start`` hands its ``on_end``


class WorkspaceError(JobNotStarted):
    """The per-job workspace could not be made (docs/wire_contract.md#worker-run-job-checks)."""


class JobExecutionError(JobNotStarted):
    """The node could not start a job for a reason of its own (docs/wire_contract.md#worker-run-job-checks)."""


@dataclass
class ActiveJob:
    """A job this process is running: what repeats and cancels of it wait on and look at.

    Every field but the events is read and written under the executor's lock.
    """

    task_id: str
    # ``done``: its result or error is set, its slot free; ``closed``: its sandbox is cleaned up too.
    done: threading.Event = field(default_factory=threading.Event)
    closed: threading.Event = field(default_factory=threading.Event)
    cancel_requested: bool = False
    cancel_note: str = CANCEL_NOTE
    # Set when runtime.run was called; ``sandbox_ended`` once it returned.
    handed_to_runtime: bool = False
    sandbox_ended: threading.Event = field(default_factory=threading.Event)
    # The thread asking the runtime to stop the container, and whether it did.
    stopper: threading.Thread | None = None
    container_stopped: bool = False
    result: RunJobResponse | None = None
    error: CynodeError | None = None
    # The response's pass-through keys the run produced (an SBA job's ``sba_result``).
    extras: dict[str, Any] = field(default_factory=dict)


class EndOnce:
    """Calls ``target`` with a job's first end given (its result or error), and ignores the rest."""

    def __init__(self, target: Callable[[JobEnd], None]) -> None:
        self._target = target
        self._lock = threading.Lock()
        self._called = False

    def __call__(self, value: JobEnd) -> None:
        with self._lock:
            if self._called:
                return
            self._called = True
        self._target(value)
