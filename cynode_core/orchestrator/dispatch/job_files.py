"""A job's files at hand-over and at its end: inputs into the run request, outputs into artifacts.

``with_inputs`` adds the task's input artifacts to the request before it is
sent (``services/job_files.py``); a task without any costs one indexed
query. ``with_outputs`` stores what a node returned under ``artifacts``
before the result is written, for both ways a result comes back (the
``jobs:run`` answer and the ``jobs:start`` end report).
"""

from __future__ import annotations

import dataclasses
from typing import Any

from cynode_core.contract.job import RunJobResponse
from cynode_core.orchestrator.dispatch.claimed_job import ClaimedJob
from cynode_core.orchestrator.services.job_files import InputUnavailable, job_inputs, stored_outputs


def with_inputs(state: Any, job: ClaimedJob) -> ClaimedJob:
    """``job`` with its task's input artifacts in ``sandbox.inputs``; ``InputUnavailable`` when one is gone."""
    inputs = job_inputs(state.artifacts, job.task_id)
    if not inputs:
        return job
    sandbox = dataclasses.replace(job.request.sandbox, inputs=inputs)
    return dataclasses.replace(job, request=dataclasses.replace(job.request, sandbox=sandbox))


def with_outputs(state: Any, job: Any, result: RunJobResponse) -> RunJobResponse:
    """``result`` with the files it brought back stored as artifacts of ``job``'s task."""
    return stored_outputs(state.artifacts, job.task_id, job.job_id, result)


__all__ = ["InputUnavailable", "with_inputs", "with_outputs"]
