"""A node's report on a job it was handed with ``jobs:start`` (docs/wire_contract.md#node-job-report).

``POST /v1/nodes/jobs/{job_id}/report`` carries one :class:`JobReport`: a
heartbeat while the job runs (``running``), the run's ``RunJobResponse``
once it ended (``finished``), or the reason the node could not start it
(``not_started``). Every report names the lease it was handed under; the
orchestrator acts on it only while the job still runs on that node under
that lease.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from typing import Any

from cynode_core.contract.errors import InvalidInput
from cynode_core.contract.job.request import INVALID_BODY, WIRE_VERSION, is_uuid
from cynode_core.contract.job.result import BadResult, RunJobResponse


class ReportState(enum.StrEnum):
    RUNNING = "running"
    FINISHED = "finished"
    NOT_STARTED = "not_started"


@dataclass(frozen=True)
class JobReport:
    """One report: the lease it answers to, the state, and the result or the reason."""

    lease_id: str
    state: ReportState
    result: RunJobResponse | None = None
    error: str = ""
    version: int = WIRE_VERSION

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"version": self.version, "lease_id": self.lease_id, "state": self.state.value}
        if self.result is not None:
            out["result"] = self.result.to_json()
        if self.error:
            out["error"] = self.error
        return out

    @classmethod
    def from_json(cls, body: Any) -> JobReport:
        """Decode a report body; ``InvalidInput`` naming what is wrong."""
        if not isinstance(body, dict):
            raise InvalidInput(INVALID_BODY)
        if body.get("version") != WIRE_VERSION:
            raise InvalidInput("unsupported version")
        lease_id = body.get("lease_id")
        if not isinstance(lease_id, str) or not is_uuid(lease_id):
            raise InvalidInput("lease_id must be a UUID")
        try:
            state = ReportState(str(body.get("state")))
        except ValueError as exc:
            raise InvalidInput("state must be running, finished or not_started") from exc
        error = body.get("error") or ""
        if not isinstance(error, str):
            raise InvalidInput(INVALID_BODY)
        result = None
        if state is ReportState.FINISHED:
            try:
                result = RunJobResponse.from_json(body.get("result"))
            except BadResult as exc:
                raise InvalidInput(f"result: {exc}") from exc
        elif state is ReportState.NOT_STARTED and not error:
            raise InvalidInput("a not_started report needs an error")
        return cls(lease_id, state, result, error[:1000])
