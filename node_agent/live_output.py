"""A job's output sent to the control plane while it runs (``output`` reports, docs/wire_contract.md#node-job-report).

The runtime hands :meth:`LiveOutput.feed` what the job printed since its
last call (``SandboxSpec.on_output``, from the runtime's own thread of the
job). Each call is sent at once, in ``output`` reports of at most
``MAX_OUTPUT_BATCH`` characters, under the job's lease. Back-pressure: the
call returns only when the control plane took the batch, so a job that
floods output has its log read more slowly, by its own thread; the node's
other jobs and the orchestrator do not wait for it. Nothing is buffered past
the batch in hand, and at most ``cap`` bytes per stream are sent, like the
stored result.

At the end, :meth:`finish` answers whether the control plane has every
character of the result's output, which the end report says
(``output_streamed``); when it does not (a runtime that does not follow
output, a batch not taken, a capped stream, output printed since the last
read), the end report's result carries the rest and the orchestrator appends
what it lacks, with the cut mark: one request ends the job. After a batch that was
not taken (no answer, refused), nothing more is sent live: the end report
brings the rest. Every piece names its offset in
its stream, so a batch the control plane stored but whose answer was lost is
not stored twice when sent again. Reports go under the job's newest lease (a
job asked for again after a take-over keeps its live output).
"""

from __future__ import annotations

import codecs
import logging
import threading
from collections.abc import Callable

from cynode_core.contract.job import (
    MAX_OUTPUT_BATCH,
    JobReport,
    OutputPiece,
    ReportState,
    RunJobResponse,
    Truncation,
    without_nul,
)

log = logging.getLogger(__name__)

# Sends one report body; the answer's status or None (node_agent.job_reports.Send, bound to the job).
SendReport = Callable[[JobReport], "int | None"]


class LiveOutput:
    """The live output of one job handed over with ``jobs:start``."""

    def __init__(self, job_key: str, lease_id: Callable[[], str], send: SendReport, cap: int) -> None:
        self._job_key = job_key
        self._lease_id = lease_id
        self._send = send
        self._cap = max(cap, 0)
        self._lock = threading.Lock()
        self._taken = {"stdout": 0, "stderr": 0}  # bytes given by the runtime
        self._sent = {"stdout": "", "stderr": ""}  # text the control plane took
        self._decoders = {s: codecs.getincrementaldecoder("utf-8")(errors="replace") for s in self._sent}
        self._live = True

    def feed(self, stream: str, data: bytes) -> None:
        """``SandboxSpec.on_output``: send ``data`` printed on ``stream`` (blocks while it is sent)."""
        with self._lock:
            if not self._live or stream not in self._sent:
                return
            room = self._cap - self._taken[stream]
            data = data[: max(room, 0)]
            self._taken[stream] += len(data)
            text = without_nul(self._decoders[stream].decode(data))
            for start in range(0, len(text), MAX_OUTPUT_BATCH):
                if not self._post([self._piece(stream, text[start : start + MAX_OUTPUT_BATCH])]):
                    self._live = False
                    return

    def finish(self, result: RunJobResponse) -> bool:
        """Stop sending; True when the control plane has every character of ``result``'s output and no cut mark is due.

        Otherwise the end report's result brings the rest: the orchestrator appends only what it lacks of
        each stream (and a cut mark once), so nothing is sent twice and no extra request delays the end.
        """
        with self._lock:
            self._live = False
            cut = result.truncated or Truncation()
            whole = self._sent["stdout"] == (result.stdout or "") and self._sent["stderr"] == (result.stderr or "")
            return whole and not cut.stdout and not cut.stderr

    def _piece(self, stream: str, data: str) -> OutputPiece:
        return OutputPiece(stream, data, offset=len(self._sent[stream]))

    def _post(self, pieces: list[OutputPiece]) -> bool:
        status = self._send(JobReport(self._lease_id(), ReportState.OUTPUT, output=tuple(pieces)))
        if status == 204:
            for piece in pieces:
                self._sent[piece.stream] += piece.data
            return True
        log.info("job %s: output report not taken (%s); the rest goes with the end", self._job_key, status)
        return False
