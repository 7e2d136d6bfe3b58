"""Following a task through a real ``cynode orchestrator serve`` process that did not write its output.

The test process holds an orchestrator of its own on the same database
(``orchestrator`` fixture) and writes the output rows through the service a
node's live report will use (``services.job_output.append``): the serving
process hears of them only by PostgreSQL ``NOTIFY`` (the path any second
orchestrator takes). Its dispatcher is off and no node runs; the node's
live feed is another part of issue 12.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest
import requests
from harness.api import ApiClient
from harness.follow import EventTap, append_output, finish
from harness.orchestrator import USER_PASSWORD, create_users
from harness.processes import Orchestrator, orchestrator_environ

from cynode_core.client import Credentials, GatewayClient, ServerEvent

FOLLOWERS = 20
HEARTBEAT = 2.0


@pytest.fixture
def serving(tmp_path: Path, database_url: str, test_secrets: Any, orchestrator: Any) -> Iterator[Orchestrator]:
    env = orchestrator_environ(database_url, tmp_path / "home-b", test_secrets)
    proc = Orchestrator(
        env,
        tmp_path,
        "orch-b",
        dispatcher_enabled="false",
        http_threads=2 * FOLLOWERS + 8,
        log_followers=FOLLOWERS,
        log_follow_heartbeat=HEARTBEAT,
    )
    proc.start().wait_healthy()
    yield proc
    proc.stop()


def backends(database_url: str, where: str = "true") -> int:
    """Connections to the test database now, other than this one (and matching ``where``)."""
    with psycopg.connect(database_url.replace("postgresql+psycopg://", "postgresql://")) as conn:
        return int(
            conn.execute(
                "SELECT count(*) FROM pg_stat_activity "
                f"WHERE datname = current_database() AND pid <> pg_backend_pid() AND {where}"
            ).fetchone()[0]  # type: ignore[index]
        )


LISTENING = "query = 'LISTEN cynode_job_output'"


def followers_gauge(proc: Orchestrator) -> float:
    for line in requests.get(f"{proc.gateway}/metrics", timeout=10).text.splitlines():
        if line.startswith("cynode_log_followers "):
            return float(line.split()[1])
    raise AssertionError("cynode_log_followers missing from /metrics")


def test_followers_on_another_process_wake_by_notify_and_hold_no_connection_each(
    orchestrator: Any, serving: Orchestrator, database_url: str
) -> None:
    create_users(orchestrator.db, "alice")
    alice = ApiClient(serving.gateway)
    alice.login("alice", USER_PASSWORD, expect=200)
    task = alice.create_command("echo crowd")
    assert alice.request("GET", f"/v1/tasks/{task}").status_code == 200  # the process's pool is warm
    before = backends(database_url)

    taps = [EventTap(serving.gateway, alice.token, task) for _ in range(FOLLOWERS)]
    try:
        assert [t.response.status_code for t in taps] == [200] * FOLLOWERS
        for one in taps:
            assert one.next(skip=())[1].event == "status"
        time.sleep(HEARTBEAT + 0.5)  # past a heartbeat: quiet followers read nothing
        quiet = backends(database_url)
        # One LISTEN connection for all of them, not one each. The slack is the process's own: its
        # dispatcher threads and sweepers connect when they first run, which a loaded machine delays
        # (3 more connections were seen with another test run beside this one); one per follower is 20.
        assert quiet - before < FOLLOWERS // 2, (before, quiet)
        assert backends(database_url, LISTENING) == 1
        assert followers_gauge(serving) == FOLLOWERS

        refused = requests.get(
            f"{serving.gateway}/v1/tasks/{task}/logs",
            params={"follow": "true"},
            headers={"Authorization": f"Bearer {alice.token}", "Accept": "text/event-stream"},
            timeout=10,
        )
        assert refused.status_code == 503 and refused.headers["Retry-After"]
        # The crowd leaves request threads for everything else.
        assert alice.request("GET", f"/v1/tasks/{task}/result").status_code == 200

        # Written by this process, heard by the other one through NOTIFY: every follower, within a second.
        written = time.monotonic()
        append_output(orchestrator.db, task, "stdout", "to-everyone\n")
        arrivals = [one.next(timeout=5) for one in taps]
        assert all(event.json()["text"] == "to-everyone\n" for _, event in arrivals)
        slowest = max(arrived for arrived, _ in arrivals) - written
        assert slowest < 1.0, f"the slowest follower got the line after {slowest:.2f} s"
        # Woken together, they read through the process's pool (10), not a connection each.
        assert backends(database_url) - before <= 12
    finally:
        for one in taps:
            one.close()
    # Gone clients end their streams: waitress notices at the second or third keepalive written to a
    # closed connection. Then nobody is counted, and the LISTEN connection goes within a second.
    deadline = time.monotonic() + 5 * HEARTBEAT
    while followers_gauge(serving) != 0:
        assert time.monotonic() < deadline, f"{followers_gauge(serving)} followers still counted"
        time.sleep(0.2)
    gone = time.monotonic()
    while backends(database_url, LISTENING):
        assert time.monotonic() < gone + 3, "the LISTEN connection outlived the last follower"
        time.sleep(0.2)
    finish(orchestrator.db, task)


def test_the_client_resumes_after_its_orchestrator_died_without_losing_or_repeating_lines(
    orchestrator: Any, serving: Orchestrator
) -> None:
    create_users(orchestrator.db, "alice")
    api = ApiClient(serving.gateway)
    api.login("alice", USER_PASSWORD, expect=200)
    task = api.create_command("echo long")
    assert api.credentials is not None
    client = GatewayClient(serving.gateway, Credentials(serving.gateway, api.token, api.credentials.refresh_token))
    client.store = Path("/nonexistent/never-written")  # a refresh is not expected; it must not write anywhere
    got: list[ServerEvent] = []
    failed: list[BaseException] = []

    def follow() -> None:
        try:
            got.extend(e for e in client.follow_logs(task) if e.event != "status")
        except BaseException as exc:  # noqa: BLE001 - reported by the assertion below
            failed.append(exc)

    reader = threading.Thread(target=follow, daemon=True)
    reader.start()
    for i in (1, 2):
        append_output(orchestrator.db, task, "stdout", f"line-{i}\n")
    deadline = time.monotonic() + 10
    while len(got) < 2:
        assert time.monotonic() < deadline and not failed, (got, failed)
        time.sleep(0.05)

    serving.kill()  # kill -9: the stream drops without an end
    append_output(orchestrator.db, task, "stderr", "line-3\nline-4\n")
    serving.start().wait_healthy()
    append_output(orchestrator.db, task, "stdout", "line-5\n")
    finish(orchestrator.db, task)
    reader.join(60)
    assert not reader.is_alive() and not failed, failed
    lines, end = got[:-1], got[-1]
    assert [(e.id, e.event, e.json()["text"]) for e in lines] == [
        ("1", "stdout", "line-1\n"),
        ("2", "stdout", "line-2\n"),
        ("3", "stderr", "line-3\n"),
        ("4", "stderr", "line-4\n"),
        ("5", "stdout", "line-5\n"),
    ]
    assert (end.event, end.json()["status"]) == ("end", "completed")
