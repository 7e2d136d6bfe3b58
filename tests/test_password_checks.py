"""Logins check passwords on a bounded pool of their own (issue 16, API under load).

A burst of logins must not take the request threads or database connections
the rest of the API needs: checks run on ``password_checks`` threads at a
lower CPU priority, at most ``password_queue`` logins wait for one, every
further login gets 503 with ``Retry-After`` at once, and no login holds a
pooled connection while its password is checked. Real PostgreSQL, the real
app over HTTP on loopback; an authenticate plugin that blocks on an event
holds the checks where the test wants them.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest
import requests

from cynode_core import hookimpl
from cynode_core.client import GatewayClient
from cynode_core.contract import Identity
from cynode_core.contract.errors import Unavailable
from cynode_core.orchestrator.services.password_checks import NICE, PasswordChecks


@pytest.fixture
def checks() -> Iterator[PasswordChecks]:
    pool = PasswordChecks(1, 1, wait=5.0)
    yield pool
    pool.close()


def test_past_the_queue_a_check_is_refused_at_once_with_a_retry_after(checks: PasswordChecks) -> None:
    gate = threading.Event()
    with ThreadPoolExecutor(2) as waiters:
        running = waiters.submit(checks.run, lambda: gate.wait(5) and "first")
        queued = waiters.submit(checks.run, lambda: "second")
        deadline = time.monotonic() + 5
        while checks.admitted < 2 and time.monotonic() < deadline:
            time.sleep(0.01)
        started = time.monotonic()
        with pytest.raises(Unavailable) as refused:
            checks.run(lambda: "third")
        assert time.monotonic() - started < 0.5, "a full queue must refuse at once, not after a wait"
        assert refused.value.retry_after is not None and refused.value.retry_after >= 1
        assert "Too many logins" in str(refused.value)
        gate.set()
        assert (running.result(5), queued.result(5)) == ("first", "second")
    assert checks.admitted == 0
    assert checks.run(lambda: "again") == "again"


def test_retry_after_grows_with_the_logins_refused_lately() -> None:
    # Refused logins come back: a crowd is told to spread out, not to return together in a second.
    checks = PasswordChecks(1, 0, wait=5.0)
    gate = threading.Event()
    try:
        with ThreadPoolExecutor(1) as waiter:
            blocker = waiter.submit(checks.run, lambda: gate.wait(5))
            while checks.admitted < 1:
                time.sleep(0.01)
            answers = []
            for _ in range(400):
                with pytest.raises(Unavailable) as refused:
                    checks.run(lambda: None)
                answers.append(refused.value.retry_after)
            gate.set()
            blocker.result(5)
        assert answers[0] == 1
        assert answers == sorted(answers), "more refusals never shorten the wait"
        assert 10 <= answers[-1] <= 60, answers[-1]
    finally:
        checks.close()


def test_a_login_that_waits_too_long_gets_503_and_its_check_never_runs() -> None:
    checks = PasswordChecks(1, 4, wait=0.3)
    gate, ran = threading.Event(), []
    try:
        with ThreadPoolExecutor(1) as waiter:
            # The first login also gives up after 0.3 s; its check runs on until the gate opens.
            blocker = waiter.submit(checks.run, lambda: gate.wait(5))
            while checks.admitted < 1:
                time.sleep(0.01)
            with pytest.raises(Unavailable):
                checks.run(lambda: ran.append("late"))
            with pytest.raises(Unavailable):
                blocker.result(5)
            gate.set()
        deadline = time.monotonic() + 5
        while checks.admitted and time.monotonic() < deadline:
            time.sleep(0.01)
        assert ran == [] and checks.admitted == 0
    finally:
        checks.close()


def test_checks_run_at_a_lower_cpu_priority_than_requests(checks: PasswordChecks) -> None:
    base = os.getpriority(os.PRIO_PROCESS, 0)
    seen = checks.run(lambda: os.getpriority(os.PRIO_PROCESS, threading.get_native_id()))
    assert seen == min(base + NICE, 19)
    assert os.getpriority(os.PRIO_PROCESS, threading.get_native_id()) == base, "the caller's priority is untouched"


def test_a_stopping_pool_refuses_with_503(checks: PasswordChecks) -> None:
    checks.close()
    with pytest.raises(Unavailable):
        checks.run(lambda: None)


class HeldCheck:
    """Registered before local accounts' answer: records what the login holds, waits for the gate, then defers."""

    def __init__(self, engine: Any):
        self.engine = engine
        self.gate = threading.Event()
        self.checked_out: list[int] = []
        self.entered = threading.Semaphore(0)

    @hookimpl
    def cynode_authenticate(self, handle: str, password: str) -> Identity | None:
        self.checked_out.append(self.engine.pool.checkedout())
        self.entered.release()
        self.gate.wait(10)
        return None  # local accounts decide


@pytest.fixture
def settings_overrides() -> dict[str, Any]:
    return {"password_checks": 1, "password_queue": 1}


@pytest.fixture
def held(orchestrator: Any) -> Iterator[HeldCheck]:
    plugin = HeldCheck(orchestrator.db.engine)
    orchestrator.app.extensions["cynode"].pm.register(plugin, name="held-check")
    yield plugin
    plugin.gate.set()


def test_a_burst_of_logins_gets_503_past_the_queue_while_the_api_answers(
    orchestrator: Any, live_orchestrator: str, logged_in: Any, held: HeldCheck, test_secrets: Any
) -> None:
    _env, alice = logged_in  # logged in before the checks are held
    body = {"handle": "admin", "password": test_secrets.admin_password}

    def login() -> requests.Response:
        return requests.post(f"{live_orchestrator}/v1/auth/login", json=body, timeout=30)

    with ThreadPoolExecutor(2) as first_two:
        running = first_two.submit(login)
        assert held.entered.acquire(timeout=10), "the first login never reached its check"
        queued = first_two.submit(login)
        deadline = time.monotonic() + 10
        while orchestrator.app.extensions["cynode"].password_checks.admitted < 2 and time.monotonic() < deadline:
            time.sleep(0.01)

        refused = [login() for _ in range(4)]
        for resp in refused:
            assert resp.status_code == 503, resp.text
            assert int(resp.headers["Retry-After"]) >= 1
            assert resp.headers["Content-Type"].startswith("application/problem+json")
            assert resp.json()["detail"] == "Too many logins in progress, retry shortly"
        # Two logins hold request threads, none holds a database connection: the rest of the API answers.
        alice.create_command("echo hi")
        listed = alice.get("/v1/tasks", token=alice.token)
        assert listed.status_code == 200 and len(listed.json()["tasks"]) == 1
        assert held.checked_out == [0], "a login held a database connection through its password check"

        held.gate.set()
        assert running.result(30).status_code == 200
        assert queued.result(30).status_code == 200
    assert login().status_code == 200


def test_the_cli_client_waits_out_a_busy_login_queue(
    orchestrator: Any, live_orchestrator: str, held: HeldCheck, test_secrets: Any
) -> None:
    body = {"handle": "admin", "password": test_secrets.admin_password}

    def login() -> Any:
        return GatewayClient(live_orchestrator).call("POST", "/v1/auth/login", auth=False, json=body)

    with ThreadPoolExecutor(2) as first_two:
        ahead = [first_two.submit(login) for _ in range(2)]
        deadline = time.monotonic() + 10
        while orchestrator.app.extensions["cynode"].password_checks.admitted < 2 and time.monotonic() < deadline:
            time.sleep(0.01)
        threading.Timer(0.5, held.gate.set).start()
        started = time.monotonic()
        answer = login()
        assert answer["token_type"] == "Bearer"
        assert time.monotonic() - started >= 0.9, "the 503 was not waited out (Retry-After is at least 1 s)"
        assert all(f.result(30)["token_type"] == "Bearer" for f in ahead)
