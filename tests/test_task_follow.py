"""Following a task's output live: ``GET /v1/tasks/{id}/logs?follow=true`` (server-sent events).

The orchestrator app is served on loopback by waitress (``live_orchestrator``)
on the test's own PostgreSQL. No node runs here: the test appends output
rows through the service a node's live report will use
(``services.job_output.append``, notified on commit) and ends the task as the
dispatcher does, so what is measured is the follow path itself — the node's
live feed is another part of issue 12.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest
import requests
from harness.api import ApiClient
from harness.follow import EventTap, append_output, finish
from harness.orchestrator import USER_PASSWORD, create_users

HEARTBEAT = 0.5


@pytest.fixture
def settings_overrides() -> dict[str, Any]:
    return {"log_follow_heartbeat": HEARTBEAT, "log_followers": 3}


@pytest.fixture
def tap(live_orchestrator: str) -> Iterator[Callable[..., EventTap]]:
    """Open a follow stream of the served app; every one is closed at the end."""
    opened: list[EventTap] = []

    def open_tap(token: str, task: str, **kwargs: Any) -> EventTap:
        opened.append(EventTap(live_orchestrator, token, task, **kwargs))
        return opened[-1]

    yield open_tap
    for one in opened:
        one.close()


@pytest.fixture
def served(orchestrator: Any, live_orchestrator: str) -> Any:
    create_users(orchestrator.db, "alice", "bob")
    users = {}
    for handle in ("alice", "bob"):
        users[handle] = ApiClient(live_orchestrator)
        users[handle].login(handle, USER_PASSWORD, expect=200)
    admin = ApiClient(live_orchestrator)
    admin.login("admin", orchestrator.secrets.admin_password, expect=200)
    users["admin"] = admin
    return users


def test_lines_arrive_as_they_are_written_with_ids_heartbeats_and_a_final_status(
    orchestrator: Any, live_orchestrator: str, served: Any, tap: Any
) -> None:
    alice = served["alice"]
    task = alice.create_command("for i in 1 2 3; do echo line-$i; sleep 1; done")
    follow = tap(alice.token, task)
    assert follow.response.status_code == 200, follow.response.text
    assert follow.response.headers["Content-Type"].startswith("text/event-stream")
    assert follow.response.headers["Cache-Control"] == "no-store"  # as every answer holding task output
    first_status = follow.next(skip=())[1]
    assert (first_status.event, first_status.json()) == ("status", {"status": "queued"})

    written = []
    for text, stream in (("line-1\n", "stdout"), ("oops\n", "stderr"), ("line-2\nline-3\n", "stdout")):
        started = time.monotonic()
        append_output(orchestrator.db, task, stream, text)
        arrived, event = follow.next(timeout=5)
        # Within a second of the write (the notify path, not a poll at the heartbeat).
        assert arrived - started < 1.0, f"{text!r} took {arrived - started:.2f} s"
        written.append(event)
        if text.count("\n") == 2:
            written.append(follow.next()[1])
    assert [(e.id, e.event, e.json()["text"]) for e in written] == [
        ("1", "stdout", "line-1\n"),
        ("2", "stderr", "oops\n"),
        ("3", "stdout", "line-2\n"),
        ("4", "stdout", "line-3\n"),
    ]
    job_id = written[0].json()["job_id"]
    assert all(e.json()["job_id"] == job_id for e in written)

    # Quiet: keepalive comments, several per second at this heartbeat; the stream stays open.
    raw_before = len(follow.raw)
    follow.ended.wait(3 * HEARTBEAT)
    assert not follow.ended.is_set()
    assert bytes(follow.raw[raw_before:]).count(b": keepalive\n\n") >= 2

    finish(orchestrator.db, task, "failed")
    end = follow.next(timeout=5)[1]
    assert (end.event, end.json()) == ("end", {"task_id": task, "status": "failed"})
    assert end.id == "4"  # the end event carries no id of its own: a resume stays after the last line
    assert follow.ended.wait(5), "the stream did not close after its end event"

    # Without follow the endpoint answers as before (from the stored results, not the stream rows).
    plain = alice.request("GET", f"/v1/tasks/{task}/logs")
    assert plain.json() == {"task_id": task, "stdout": "", "stderr": ""}


def test_a_dropped_follow_resumed_with_last_event_id_loses_and_repeats_nothing(
    orchestrator: Any, live_orchestrator: str, served: Any, tap: Any
) -> None:
    alice = served["alice"]
    task = alice.create_command("echo many")
    for i in range(1, 4):
        append_output(orchestrator.db, task, "stdout", f"before-{i}\n")
    stream = tap(alice.token, task)
    seen = stream.lines(3)
    append_output(orchestrator.db, task, "stdout", "during-4\n")
    seen += stream.lines(1)
    stream.close()  # the connection drops mid-task
    append_output(orchestrator.db, task, "stderr", "while-away-5\nwhile-away-6\n")

    resumed = tap(alice.token, task, last_event_id=seen[-1].id)
    seen += resumed.lines(2)
    append_output(orchestrator.db, task, "stdout", "after-7\n")
    seen += resumed.lines(1)
    finish(orchestrator.db, task)
    assert resumed.next()[1].event == "end"
    assert [int(e.id or 0) for e in seen] == list(range(1, 8))
    assert [e.json()["text"].strip() for e in seen] == [
        "before-1",
        "before-2",
        "before-3",
        "during-4",
        "while-away-5",
        "while-away-6",
        "after-7",
    ]
    # A resume after the end: the remaining lines (none) and the end at once.
    again = tap(alice.token, task, last_event_id="7")
    assert again.next()[1].event == "end"


def test_only_the_owner_or_an_admin_follows_and_bad_requests_are_refused(
    orchestrator: Any, live_orchestrator: str, served: Any, tap: Any
) -> None:
    alice, bob, admin = served["alice"], served["bob"], served["admin"]
    task = alice.create_command("echo mine")
    append_output(orchestrator.db, task, "stdout", "secret\n")
    finish(orchestrator.db, task)

    other = tap(bob.token, task)
    assert other.response.status_code == 404
    assert other.response.headers["Content-Type"] == "application/problem+json"
    assert b"secret" not in other.response.content
    anonymous = requests.get(f"{live_orchestrator}/v1/tasks/{task}/logs", params={"follow": "true"}, timeout=10)
    assert anonymous.status_code == 401

    by_admin = tap(admin.token, task)
    assert [e.json()["text"] for e in by_admin.lines(1)] == ["secret\n"]

    stderr_only = tap(alice.token, task, stream="stderr")
    assert stderr_only.next()[1].event == "end"

    bad_id = tap(alice.token, task, last_event_id="x1")
    assert bad_id.response.status_code == 400
    json_only = requests.get(
        f"{live_orchestrator}/v1/tasks/{task}/logs",
        params={"follow": "true"},
        headers={"Authorization": f"Bearer {alice.token}", "Accept": "application/json"},
        timeout=10,
    )
    assert json_only.status_code == 400 and "text/event-stream" in json_only.json()["detail"]


def test_followers_past_the_cap_get_503_and_a_closed_stream_frees_its_place(
    orchestrator: Any, live_orchestrator: str, served: Any, tap: Any
) -> None:
    alice = served["alice"]
    task = alice.create_command("echo crowd")
    taps = [tap(alice.token, task) for _ in range(3)]
    assert all(t.response.status_code == 200 for t in taps)
    refused = tap(alice.token, task)
    assert refused.response.status_code == 503
    assert int(refused.response.headers["Retry-After"]) >= 1
    assert "log followers" in json.loads(refused.response.content)["detail"]
    metrics = requests.get(f"{live_orchestrator}/metrics", timeout=10).text
    assert "cynode_log_followers 3.0" in metrics
    # The request threads are not all taken: the API still answers while the followers wait.
    assert alice.request("GET", f"/v1/tasks/{task}").status_code == 200

    taps[0].close()  # a client that goes away: noticed at the second or third keepalive after
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        admitted = tap(alice.token, task)
        if admitted.response.status_code == 200:
            break
        admitted.close()
        time.sleep(0.1)
    assert admitted.response.status_code == 200, "the dropped follower never gave its place back"
    for one in [*taps[1:], admitted]:
        one.close()
    deadline = time.monotonic() + 5
    while "cynode_log_followers 0.0" not in requests.get(f"{live_orchestrator}/metrics", timeout=10).text:
        assert time.monotonic() < deadline, "followers still counted after every client left"
        time.sleep(0.1)
