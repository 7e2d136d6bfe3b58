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

At the end, :meth:`finish` sends what the result holds beyond what was sent
(all of it for a runtime that does not follow output) and a ``cut`` mark on
each stream the node capped; it answers whether the control plane has every
byte of the result's output, which the end report says (``output_streamed``)
so that the orchestrator does not append it again. After a batch that was
not taken (no answer, refused), nothing more is sent live: :meth:`finish`
sends the rest from the first byte not taken. Every piece names its offset in
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
        """Send the rest of ``result``'s output and the cut marks; True when the control plane has all of it."""
        with self._lock:
            self._live = False
            rest: list[OutputPiece] = []
            cut = result.truncated or Truncation()
            for stream, final, was_cut in (
                ("stdout", result.stdout or "", cut.stdout),
                ("stderr", result.stderr or "", cut.stderr),
            ):
                sent = len(self._sent[stream])
                # A note the node put in front of the output (a canceled job's) leaves the sent part as it is.
                tail = final[sent:] if final.startswith(self._sent[stream]) else ""
                rest += [
                    OutputPiece(stream, tail[i : i + MAX_OUTPUT_BATCH], offset=sent + i)
                    for i in range(0, len(tail), MAX_OUTPUT_BATCH)
                ]
                if was_cut:
                    rest.append(OutputPiece(stream, "", cut=True, offset=sent + len(tail)))
            batch: list[OutputPiece] = []
            for piece in rest:
                if batch and sum(len(p.data) for p in batch) + len(piece.data) > MAX_OUTPUT_BATCH:
                    if not self._post(batch):
                        return False
                    batch = []
                batch.append(piece)
            return not batch or self._post(batch)

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
