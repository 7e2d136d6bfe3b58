"""RunJobResponse building: output caps at character boundaries, timestamps, status rules.

See docs/wire_contract.md#worker-run-job-response.
"""

from __future__ import annotations

import datetime as dt

import pytest

from cynode_core.contract import SandboxOutcome
from node_agent.job_result import CANCEL_NOTE, build_run_job_response, cap_output, format_time

T0 = dt.datetime(2026, 2, 16, 12, 0, 0, 123456, tzinfo=dt.UTC)


@pytest.mark.parametrize(
    ("data", "limit", "text", "truncated"),
    [
        (b"hello", 10, "hello", False),
        (b"hello", 5, "hello", False),
        (b"hello!", 5, "hello", True),
        ("aé".encode(), 2, "a", True),  # the 2-byte é would be cut in half
        ("a€".encode(), 3, "a", True),  # 3-byte €
        ("a€".encode(), 4, "a€", False),
        ("a😀".encode(), 4, "a", True),  # 4-byte emoji
        (b"a\xffb", 10, "a\ufffdb", False),  # invalid byte: replaced
        (b"\xff\xff\xff\xff", 6, "\ufffd\ufffd", True),  # replacements are 3 bytes each: still under the cap
    ],
)
def test_cap_output(data: bytes, limit: int, text: str, truncated: bool) -> None:
    result, was_cut = cap_output(data, limit)
    assert (result, was_cut) == (text, truncated)
    assert len(result.encode("utf-8")) <= limit


def test_a_runtime_cut_inside_a_character_is_repaired_and_flagged() -> None:
    # The runtime capped at 3 bytes: "a" plus two of the three bytes of "€".
    assert cap_output("a€".encode()[:3], 3, already_truncated=True) == ("a", True)


def test_format_time_is_rfc3339_utc_seconds_with_z() -> None:
    assert format_time(T0) == "2026-02-16T12:00:00Z"
    assert format_time(T0.astimezone(dt.timezone(dt.timedelta(hours=2)))) == "2026-02-16T12:00:00Z"
    assert format_time(T0.replace(tzinfo=None)) == "2026-02-16T12:00:00Z"


def _response(outcome: SandboxOutcome, **kwargs: object) -> dict:
    """The response as it goes on the wire (the job contract's codec)."""
    return build_run_job_response(
        task_id="t", job_id="j", outcome=outcome, started_at=T0, ended_at=T0, max_output_bytes=100, **kwargs
    ).to_json()  # type: ignore[arg-type]


def test_exit_code_is_always_present_and_status_follows_it() -> None:
    assert _response(SandboxOutcome("completed", 0))["exit_code"] == 0
    assert _response(SandboxOutcome("completed", 2))["status"] == "failed"  # a runtime's contradiction
    timeout = _response(SandboxOutcome("timeout", 137, stdout=b"partial"))
    assert (timeout["status"], timeout["exit_code"], timeout["stdout"]) == ("timeout", -1, "partial")
    assert _response(SandboxOutcome("weird", 0))["status"] == "failed"


def test_a_canceled_job_is_failed_and_keeps_the_note_whole() -> None:
    result = _response(SandboxOutcome("completed", 0, stderr=b"x" * 500), cancel_note=CANCEL_NOTE)
    assert (result["status"], result["exit_code"]) == ("failed", -1)
    assert result["stderr"].endswith(CANCEL_NOTE)
    assert len(result["stderr"].encode()) <= 100
    assert result["truncated"]["stderr"] is True
