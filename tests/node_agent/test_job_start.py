"""``jobs:start`` over real HTTP on loopback, jobs in real Podman containers (docs/wire_contract.md#worker-start-job).

The node takes the job and answers 202 at once; ``running`` reports follow
every ``heartbeat_seconds`` under the lease of the latest ask, then the end
report, repeated until the control plane takes it. The control plane here
is a recorder that answers as the test tells it to.
"""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import requests
from harness.processes import wait_until
from node_helpers import WORKER_TOKEN, containers_of, job_body, make_settings

from cynode_core.contract import SandboxRuntime
from node_agent.executor import JobExecutor
from node_agent.http_server import BackgroundServer
from node_agent.job_reports import JobReports
from node_agent.readiness import Readiness
from node_agent.worker_api import create_worker_app


class ControlPlane:
    """Records reports; answers each with the next of ``answers`` (then 204)."""

    def __init__(self) -> None:
        self.reports: list[tuple[str, dict[str, Any]]] = []
        self.answers: list[int | None] = []
        self._lock = threading.Lock()
        # Called with each report before it is answered (in the node's sending thread).
        self.on_report: Callable[[str, dict[str, Any]], None] = lambda _job_id, _report: None

    def send(self, job_id: str, report: dict[str, Any]) -> int | None:
        self.on_report(job_id, report)
        with self._lock:
            self.reports.append((job_id, report))
            return self.answers.pop(0) if self.answers else 204

    def of(self, job_id: str, state: str) -> list[dict[str, Any]]:
        with self._lock:
            return [r for j, r in self.reports if j == job_id and r["state"] == state]


class StartWorker:
    def __init__(self, url: str, control: ControlPlane):
        self.url, self.control = url, control

    def start(self, body: dict[str, Any], lease: str, heartbeat: float = 0.3) -> requests.Response:
        body = {**body, "report": {"lease_id": lease, "heartbeat_seconds": heartbeat}}
        headers = {"Authorization": f"Bearer {WORKER_TOKEN}"}
        return requests.post(f"{self.url}/v1/worker/jobs:start", json=body, headers=headers, timeout=30)


@pytest.fixture
def start_node(podman_runtime: SandboxRuntime, tmp_path: Path) -> Iterator[Callable[..., StartWorker]]:
    """A Worker API with ``jobs:start`` whose reports go to a :class:`ControlPlane`; settings overridable."""
    stop = threading.Event()
    servers: list[BackgroundServer] = []
    executors: list[JobExecutor] = []

    def start(output_cap: int = 0, **overrides: Any) -> StartWorker:
        settings = make_settings(tmp_path / "home", **overrides)
        control = ControlPlane()
        readiness = Readiness(cache_seconds=0)
        readiness.mark_ready()
        reports = JobReports(control.send, stop, give_up_after=30.0, output_cap=output_cap)
        executors.append(JobExecutor(podman_runtime, settings))
        app = create_worker_app(executors[-1], bearer_token=WORKER_TOKEN, readiness=readiness, reports=reports)
        server = BackgroundServer(app, host="127.0.0.1", port=0, threads=8)
        server.start()
        servers.append(server)
        return StartWorker(f"http://127.0.0.1:{server.port}", control)

    yield start
    stop.set()
    for server in servers:
        server.stop(drain_timeout=1.0)
    for executor in executors:  # a job ended and reported may still be cleaning up its sandbox
        executor.cancel_all()
        assert executor.wait_idle(30), "a job's sandbox was not cleaned up"


@pytest.fixture
def node(start_node: Callable[..., StartWorker]) -> StartWorker:
    return start_node()


def test_the_node_takes_the_job_at_once_and_reports_it_running_then_ended(node: StartWorker) -> None:
    body = job_body(["sh", "-c", "sleep 2; echo reported"])
    lease = str(uuid.uuid4())
    asked = time.monotonic()
    answer = node.start(body, lease)
    assert answer.status_code == 202, answer.text
    assert time.monotonic() - asked < 1.5  # not the job's 2 s
    assert answer.json() == {"version": 1, "job_id": body["job_id"], "accepted": True}
    end = wait_until(lambda: node.control.of(body["job_id"], "finished"), 60, "the end report")
    assert len(end) == 1 and end[0]["lease_id"] == lease
    assert end[0]["result"]["status"] == "completed" and end[0]["result"]["stdout"] == "reported\n"
    beats = node.control.of(body["job_id"], "running")
    assert len(beats) >= 3 and {b["lease_id"] for b in beats} == {lease}
    # Asked again (a take-over after the lease expired): the stored result at once, no new run.
    again = node.start(body, str(uuid.uuid4()))
    assert again.status_code == 200
    assert again.json() == end[0]["result"]


def test_the_end_is_reported_when_the_container_exits_before_it_is_removed(
    start_node: Callable[..., StartWorker], podman_runtime: SandboxRuntime
) -> None:
    """The node does not make the end wait for the cleanup: the slot is free and the container still there."""
    node = start_node(job_slots=1)
    first, second = job_body(["sh", "-c", "echo first"]), job_body(["sh", "-c", "echo second"])
    at_end: dict[str, Any] = {}

    def on_report(job_id: str, report: dict[str, Any]) -> None:
        if job_id == first["job_id"] and report["state"] == "finished":
            at_end["containers"] = containers_of(podman_runtime, job_id)
            at_end["second"] = node.start(second, str(uuid.uuid4())).status_code

    node.control.on_report = on_report
    assert node.start(first, str(uuid.uuid4())).status_code == 202
    end = wait_until(lambda: node.control.of(first["job_id"], "finished"), 60, "the first end report")
    assert end[0]["result"]["stdout"] == "first\n"
    assert len(at_end["containers"]) == 1, "the container was removed before the end was reported"
    assert at_end["second"] == 202, "the ended job still held the only slot"
    wait_until(lambda: not containers_of(podman_runtime, first["job_id"]), 30, "the first container to go")
    done = wait_until(lambda: node.control.of(second["job_id"], "finished"), 60, "the second end report")
    assert done[0]["result"]["stdout"] == "second\n"


def test_a_job_asked_again_while_it_runs_reports_under_the_new_lease(start_node: Callable[..., StartWorker]) -> None:
    node = start_node(output_cap=65536)
    body = job_body(["sh", "-c", "echo before; sleep 3; echo once"])
    first, second = str(uuid.uuid4()), str(uuid.uuid4())
    assert node.start(body, first).status_code == 202
    wait_until(lambda: node.control.of(body["job_id"], "output"), 30, "the first output report")
    assert node.start(body, second).status_code == 202  # the same run, not a second one
    end = wait_until(lambda: node.control.of(body["job_id"], "finished"), 60, "the end report")
    assert [e["lease_id"] for e in end] == [second]
    assert end[0]["result"]["stdout"] == "before\nonce\n"
    # The live output went on under the new lease, and the end says the control plane has all of it.
    pieces = [(r["lease_id"], p) for r in node.control.of(body["job_id"], "output") for p in r["output"]]
    assert pieces == [
        (first, {"stream": "stdout", "data": "before\n", "offset": 0}),
        (second, {"stream": "stdout", "data": "once\n", "offset": 7}),
    ]
    assert end[0]["output_streamed"] is True
    time.sleep(0.7)  # no heartbeat after the end
    beats = node.control.of(body["job_id"], "running")
    assert beats[-1]["lease_id"] == second
    assert len(node.control.of(body["job_id"], "running")) == len(beats)


def test_an_end_report_is_repeated_until_taken_and_not_after_a_409(node: StartWorker) -> None:
    node.control.answers = [None, 503, 204]  # no answer, then unavailable, then taken
    taken = job_body(["sh", "-c", "echo taken"])
    assert node.start(taken, str(uuid.uuid4()), heartbeat=30).status_code == 202
    wait_until(lambda: len(node.control.of(taken["job_id"], "finished")) == 3, 30, "three tries of the end report")
    node.control.answers = [409]
    refused = job_body(["sh", "-c", "echo late"])
    assert node.start(refused, str(uuid.uuid4()), heartbeat=30).status_code == 202
    wait_until(lambda: node.control.of(refused["job_id"], "finished"), 30, "the end report")
    time.sleep(1.0)  # a first retry would have come after 0.5 s
    assert len(node.control.of(refused["job_id"], "finished")) == 1
    assert len(node.control.of(taken["job_id"], "finished")) == 3


def test_jobs_start_needs_the_report_lease(node: StartWorker) -> None:
    headers = {"Authorization": f"Bearer {WORKER_TOKEN}"}
    missing = requests.post(f"{node.url}/v1/worker/jobs:start", json=job_body(), headers=headers, timeout=10)
    assert missing.status_code == 400 and missing.json()["detail"] == "report is required for jobs:start"
    bad = node.start(job_body(), "not-a-uuid")
    assert bad.status_code == 400 and bad.json()["detail"] == "report.lease_id must be a UUID"
    unauthenticated = requests.post(f"{node.url}/v1/worker/jobs:start", json=job_body(), timeout=10)
    assert unauthenticated.status_code == 401


def test_a_job_the_node_cannot_start_is_reported_not_started(
    start_node: Callable[..., StartWorker], tmp_path: Path
) -> None:
    blocker = tmp_path / "not-a-directory"
    blocker.write_text("a file where the workspace root should be")
    node = start_node(workspace_root=str(blocker))
    body, lease = job_body(["sh", "-c", "echo ran"]), str(uuid.uuid4())
    assert node.start(body, lease, heartbeat=30).status_code == 202
    report = wait_until(lambda: node.control.of(body["job_id"], "not_started"), 30, "the not_started report")
    assert report == [{"version": 1, "lease_id": lease, "state": "not_started", "error": "Workspace creation failed"}]
    assert not node.control.of(body["job_id"], "finished")
