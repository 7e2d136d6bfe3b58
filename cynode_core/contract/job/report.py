"""A node's report on a job it was handed with ``jobs:start`` (docs/wire_contract.md#node-job-report).

``POST /v1/nodes/jobs/{job_id}/report`` carries one :class:`JobReport`: a
heartbeat while the job runs (``running``), the run's ``RunJobResponse``
once it ended (``finished``), or the reason the node could not start it
(``not_started``), or output the job printed while it runs (``output``:
pieces of at most :data:`MAX_OUTPUT_BATCH` characters in all, appended to
the task's log for its followers; a ``finished`` report with
``output_streamed`` says all of the result's output came that way, so the
orchestrator does not append it again). Every report names the lease it was handed under; the
orchestrator acts on it only while the job still runs on that node under
that lease. A ``finished`` report may carry ``ended_at``, the node's clock
when the job ended, in RFC 3339 with milliseconds (the result's own
``ended_at`` has whole seconds); the orchestrator measures its report latency
from it.
"""

from __future__ import annotations

import datetime as dt
import enum
from dataclasses import dataclass
from typing import Any

from cynode_core.contract.errors import InvalidInput
from cynode_core.contract.job.request import INVALID_BODY, WIRE_VERSION, is_uuid
from cynode_core.contract.job.result import BadResult, RunJobResponse, without_nul


class ReportState(enum.StrEnum):
    RUNNING = "running"
    FINISHED = "finished"
    NOT_STARTED = "not_started"
    OUTPUT = "output"


OUTPUT_STREAMS = ("stdout", "stderr")
# At most this much output text in one ``output`` report (the node sends bigger batches in parts).
MAX_OUTPUT_BATCH = 64 * 1024
# The largest ``offset`` of an output piece (far beyond any node's output cap).
MAX_OUTPUT_OFFSET = 2**40
# Followers see this line where a stream reached the node's output cap.
OUTPUT_CUT_MARKER = "[cynode: output cut here: the stream reached the node's output cap]\n"


@dataclass(frozen=True)
class OutputPiece:
    """Text a job printed on one stream; ``cut``: the stream reached its cap here, nothing follows.

    ``offset``: how many characters of the stream the run printed before
    ``data``, so the orchestrator stores a piece sent twice only once (None:
    append after what is stored).
    """

    stream: str
    data: str
    cut: bool = False
    offset: int | None = None

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"stream": self.stream, "data": self.data}
        if self.offset is not None:
            out["offset"] = self.offset
        if self.cut:
            out["cut"] = True
        return out

    @classmethod
    def from_json(cls, body: Any) -> OutputPiece:
        if not isinstance(body, dict) or body.get("stream") not in OUTPUT_STREAMS:
            raise InvalidInput("output: each piece needs a stream, stdout or stderr")
        data, cut, offset = body.get("data", ""), body.get("cut", False), body.get("offset")
        if not isinstance(data, str) or not isinstance(cut, bool):
            raise InvalidInput("output: data must be a string and cut a boolean")
        if offset is not None and (type(offset) is not int or not 0 <= offset <= MAX_OUTPUT_OFFSET):
            raise InvalidInput(f"output: offset must be an integer from 0 to {MAX_OUTPUT_OFFSET}")
        return cls(body["stream"], without_nul(data), cut, offset)


@dataclass(frozen=True)
class JobReport:
    """One report: the lease it answers to, the state, and the result or the reason."""

    lease_id: str
    state: ReportState
    result: RunJobResponse | None = None
    error: str = ""
    ended_at: str = ""
    output: tuple[OutputPiece, ...] = ()
    streamed: bool = False
    version: int = WIRE_VERSION

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"version": self.version, "lease_id": self.lease_id, "state": self.state.value}
        if self.result is not None:
            out["result"] = self.result.to_json()
        if self.error:
            out["error"] = self.error
        if self.ended_at:
            out["ended_at"] = self.ended_at
        if self.state is ReportState.OUTPUT:
            out["output"] = [piece.to_json() for piece in self.output]
        if self.streamed:
            out["output_streamed"] = True
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
            raise InvalidInput("state must be running, finished, not_started or output") from exc
        error = body.get("error") or ""
        if not isinstance(error, str):
            raise InvalidInput(INVALID_BODY)
        ended_at = body.get("ended_at") or ""
        if not isinstance(ended_at, str) or (ended_at and parse_report_time(ended_at) is None):
            raise InvalidInput("ended_at must be an RFC 3339 time")
        result = None
        if state is ReportState.FINISHED:
            try:
                result = RunJobResponse.from_json(body.get("result"))
            except BadResult as exc:
                raise InvalidInput(f"result: {exc}") from exc
        elif state is ReportState.NOT_STARTED and not error:
            raise InvalidInput("a not_started report needs an error")
        output: tuple[OutputPiece, ...] = ()
        if state is ReportState.OUTPUT:
            pieces = body.get("output")
            if not isinstance(pieces, list):
                raise InvalidInput("an output report needs an output list")
            output = tuple(OutputPiece.from_json(piece) for piece in pieces)
            if sum(len(piece.data) for piece in output) > MAX_OUTPUT_BATCH:
                raise InvalidInput(f"output: more than {MAX_OUTPUT_BATCH} characters in one report")
        streamed = body.get("output_streamed", False)
        if not isinstance(streamed, bool):
            raise InvalidInput("output_streamed must be a boolean")
        return cls(lease_id, state, result, without_nul(error[:1000]), ended_at, output, streamed)

    def ended(self) -> dt.datetime | None:
        """The node's end time of the job: ``ended_at``, else the result's (whole seconds), else None."""
        for value in (self.ended_at, self.result.ended_at if self.result else None):
            moment = parse_report_time(value)
            if moment is not None:
                return moment
        return None


def report_time(moment: dt.datetime) -> str:
    """RFC 3339, UTC, millisecond precision, ``Z`` suffix."""
    return moment.astimezone(dt.UTC).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"


def parse_report_time(value: str | None) -> dt.datetime | None:
    """An aware time from RFC 3339 text; None when empty or not a time."""
    if not value:
        return None
    try:
        moment = dt.datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None
    return moment if moment.tzinfo is not None else None
