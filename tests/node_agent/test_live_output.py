"""A job's live output on the node (node_agent/live_output.py): batches, caps, and what the end says.

The sender is a list that answers with scripted statuses; the rules under
test are the node's own: at most the cap per stream, batches of at most
MAX_OUTPUT_BATCH characters, nothing more live after a batch that was not
taken, and at the end only a word: whether the control plane has it all.
"""

from __future__ import annotations

from cynode_core.contract.job import MAX_OUTPUT_BATCH, JobReport, RunJobResponse, Truncation
from node_agent.live_output import LiveOutput

LEASE = "0b6e4b7e-3a5e-4d2a-9d55-0c7f1f0f5a11"


class Recorder:
    def __init__(self, *statuses: int | None) -> None:
        self.statuses = list(statuses)
        self.reports: list[JobReport] = []

    def __call__(self, report: JobReport) -> int | None:
        self.reports.append(report)
        return self.statuses.pop(0) if self.statuses else 204

    def pieces(self) -> list[tuple[str, str, bool]]:
        return [(p.stream, p.data, p.cut) for r in self.reports for p in r.output]


def result(stdout: str, stderr: str = "", *, cut: bool = False) -> RunJobResponse:
    return RunJobResponse(None, None, "completed", 0, stdout=stdout, stderr=stderr, truncated=Truncation(cut))


def test_output_is_sent_as_printed_capped_in_batches_and_the_end_adds_the_cut_mark() -> None:
    sent = Recorder()
    live = LiveOutput("job", lambda: LEASE, sent, cap=MAX_OUTPUT_BATCH + 10)
    live.feed("stdout", "é".encode()[:1])  # half a character waits for its other half
    live.feed("stdout", "é".encode()[1:] + b"\n")
    live.feed("stderr", b"x" * (MAX_OUTPUT_BATCH + 100))
    assert all(sum(len(p.data) for p in r.output) <= MAX_OUTPUT_BATCH for r in sent.reports)
    assert "".join(d for s, d, _ in sent.pieces() if s == "stdout") == "é\n"
    assert "".join(d for s, d, _ in sent.pieces() if s == "stderr") == "x" * (MAX_OUTPUT_BATCH + 10)
    before = len(sent.reports)
    # All was sent, but a stream was cut: the end report brings the cut mark (the orchestrator stores it once).
    assert live.finish(result("é\n", "x" * (MAX_OUTPUT_BATCH + 10), cut=True)) is False
    assert len(sent.reports) == before
    assert live.finish(result("é\n", "x" * (MAX_OUTPUT_BATCH + 10))) is True


def test_after_a_batch_is_not_taken_nothing_more_is_sent_and_the_end_brings_the_rest() -> None:
    sent = Recorder(204, None)
    live = LiveOutput("job", lambda: LEASE, sent, cap=1000)
    live.feed("stdout", b"one\n")
    live.feed("stdout", b"two\n")  # no answer: nothing more is sent live
    live.feed("stdout", b"three\n")
    assert len(sent.reports) == 2
    assert live.finish(result("one\ntwo\nthree\n")) is False  # the end report's result has the rest
    assert [d for _, d, _ in sent.pieces()] == ["one\n", "two\n"]
    # Each piece names where it starts in its stream: "two\n", if it was stored after all, is not stored twice.
    assert [p.offset for r in sent.reports for p in r.output] == [0, 4]


def test_an_end_not_taken_says_the_output_was_not_all_streamed() -> None:
    sent = Recorder(409)
    live = LiveOutput("job", lambda: LEASE, sent, cap=1000)
    assert live.finish(result("late\n")) is False
    assert live.finish(result("")) is True  # nothing left to send


def test_pieces_go_under_the_newest_lease() -> None:
    sent, lease = Recorder(), ["lease-1"]
    live = LiveOutput("job", lambda: lease[0], sent, cap=6)
    live.feed("stdout", b"abc")
    lease[0] = "lease-2"  # the job was asked for again under a new lease while it runs
    live.feed("stdout", b"defgh")
    assert live.finish(result("abcdef", cut=True)) is False  # the cut mark comes with the end report
    assert [r.lease_id for r in sent.reports] == ["lease-1", "lease-2"]
    assert [(p.data, p.offset, p.cut) for r in sent.reports for p in r.output] == [("abc", 0, False), ("def", 3, False)]
