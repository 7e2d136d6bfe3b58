"""The job output table and its service (services/job_output.py), and the client's event-stream parser.

On the test's own PostgreSQL: chunks of concurrent writers of one task are
numbered without gaps or repeats, and in the order they become visible.
"""

from __future__ import annotations

import threading
import uuid
from typing import Any

import pytest
from harness.api import ApiClient
from harness.orchestrator import USER_PASSWORD, create_users
from sqlalchemy import text

from cynode_core.client import parse_events
from cynode_core.orchestrator.services import job_output


def test_text_is_cut_into_lines_and_bounded_pieces() -> None:
    assert job_output.split_chunks("") == []
    assert job_output.split_chunks("a\nb\r\nno end") == ["a\n", "b\r\n", "no end"]
    long = "x" * (2 * job_output.MAX_CHUNK_CHARS + 5) + "\n"
    assert [len(p) for p in job_output.split_chunks(long)] == [job_output.MAX_CHUNK_CHARS] * 2 + [6]
    assert "".join(job_output.split_chunks(long)) == long


def test_the_parser_reads_events_across_chunk_boundaries() -> None:
    body = [b"retry: 1000\n\n: keep", b'alive\n\nid: 7\r\nevent: stdout\ndata: {"text":', b'"a"}\n\n']
    body += [b"event: end\ndata: one\ndata: two\n\n", b"data: unfinished"]
    events = list(parse_events(body))
    assert [(e.event, e.data, e.id) for e in events] == [
        ("stdout", '{"text":"a"}', "7"),
        ("end", "one\ntwo", "7"),  # no id of its own: the last id stays
    ]
    assert events[0].json() == {"text": "a"}


@pytest.fixture
def job(orchestrator: Any, api: ApiClient) -> tuple[uuid.UUID, uuid.UUID]:
    create_users(orchestrator.db, "alice")
    api.login("alice", USER_PASSWORD, expect=200)
    task = api.create_command("echo hi")
    with orchestrator.db.session() as session:
        job_id = session.execute(text("SELECT id FROM jobs WHERE task_id = :t"), {"t": task}).scalar_one()
    return uuid.UUID(task), job_id


def test_concurrent_writers_number_the_task_s_chunks_without_gaps(orchestrator: Any, job: Any) -> None:
    task_id, job_id = job
    db = orchestrator.db

    def write(stream: str) -> None:
        for i in range(20):
            with db.session() as session:
                assert job_output.append(session, job_id, stream, f"{stream}-{i}\nsecond line\n") == 2

    writers = [threading.Thread(target=write, args=(s,)) for s in ("stdout", "stderr")]
    for writer in writers:
        writer.start()
    for writer in writers:
        writer.join(30)
    with db.session() as session:
        chunks = job_output.read_after(session, task_id, 0, 1000)
        assert job_output.read_after(session, task_id, 78, 1000) == chunks[78:]
        assert len(job_output.read_after(session, task_id, 10, 5)) == 5
    assert [c.seq for c in chunks] == list(range(1, 81))
    # One call's lines stay together and in order: a writer holds the task until it commits.
    for first, second in zip(chunks[::2], chunks[1::2], strict=True):
        assert first.stream == second.stream and second.data == "second line\n"
    for stream in ("stdout", "stderr"):
        assert [c.data for c in chunks if c.stream == stream][::2] == [f"{stream}-{i}\n" for i in range(20)]
    with db.session() as session, pytest.raises(ValueError):
        job_output.append(session, job_id, "stdin", "no")
