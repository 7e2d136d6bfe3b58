"""A job runs on one node at most once at a time, also when the orchestrator loses its node mid-job.

A real ``cynode orchestrator serve`` dispatches to two nodes, each a real
Worker API on loopback over a scripted sandbox (``harness.worker``). The
first node sits behind a :class:`~harness.loopback.CuttingProxy`: the job
reaches it and runs, then the proxy resets the orchestrator's connection
(and, in some tests, every later one for a while), as a network that drops
a node would. The second node must not get the job while the first may
still run it; a cancel issued meanwhile must reach the first node
(issue 11, item 4; decisions.md Dispatch 9).
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from harness.api import ApiClient
from harness.loopback import CuttingProxy
from harness.nodes import NodeHandle, make_dispatchable
from harness.processes import wait_until
from harness.worker import Script, WorkerNode

RUN_REQUEST = b"POST /v1/worker/jobs:run"


@dataclass
class TwoNodes:
    first: WorkerNode
    second: WorkerNode
    proxy: CuttingProxy  # in front of the first

    def job_of(self, task: str) -> str:
        """The job id of ``task``, once the first node has received it."""
        calls = wait_until(
            lambda: [c for c in self.first.run_calls() if c.task_id == task], 30, "the first node to get the job"
        )
        return str(calls[0].job_id)

    def second_got(self, job: str) -> bool:
        return bool(self.second.run_calls(job)) or self.second.runtime.runs(job) > 0


@pytest.fixture
def nodes(cluster, tmp_path: Path) -> Iterator[TwoNodes]:  # type: ignore[no-untyped-def]
    first, second = WorkerNode(tmp_path / "w1"), WorkerNode(tmp_path / "w2")
    for worker in (first, second):
        worker.runtime.when_command_contains("hold-me", Script(stdout="held\n", hold=True))
        worker.runtime.when_command_contains("quick", Script(stdout="quick\n", delay=0.2))
    proxy = CuttingProxy(first.port)
    yield TwoNodes(first, second, proxy)
    proxy.close()
    first.close()
    second.close()


def _start(cluster, nodes: TwoNodes, **settings: str) -> ApiClient:  # type: ignore[no-untyped-def]
    """The orchestrator, and both nodes dispatchable: node-01 (behind the proxy) first in the tie-break."""
    orch = cluster.orchestrator(**settings).start().wait_healthy()
    control = ApiClient(orch.control)
    make_dispatchable(control, cluster.secrets.psk, NodeHandle("node-01", nodes.proxy.url, nodes.first))
    make_dispatchable(control, cluster.secrets.psk, NodeHandle("node-02", nodes.second.url, nodes.second))
    return cluster.admin(orch)


def _cut_while_running(nodes: TwoNodes, api: ApiClient, command: str, *, partition: bool) -> tuple[str, str]:
    """Create the task, let node-01 start its job, then reset the orchestrator's connection to it.

    With ``partition`` every later connection to node-01 is reset too, until the proxy heals.
    """
    nodes.proxy.hold_requests(RUN_REQUEST)
    task = api.create_command(command)
    job = nodes.job_of(task)
    wait_until(lambda: nodes.first.runtime.runs(job) == 1 and nodes.proxy.held() == 1, 15, "node-01 to run the job")
    if partition:
        nodes.proxy.partition()
    assert nodes.proxy.reset_held() == 1
    return task, job


def test_a_lost_connection_keeps_the_job_on_its_node_and_a_cancel_reaches_it(cluster, nodes: TwoNodes) -> None:  # type: ignore[no-untyped-def]
    api = _start(cluster, nodes)
    task, job = _cut_while_running(nodes, api, "echo hold-me", partition=False)
    # The orchestrator asks node-01 again (same job_id) instead of handing the job to node-02.
    wait_until(
        lambda: nodes.second_got(job) or len(nodes.first.run_calls(job)) >= 2, 20, "the orchestrator to go on with J"
    )
    time.sleep(1.0)  # room for a wrong dispatch to show
    assert not nodes.second_got(job), "node-02 got the job while node-01 was still running it"
    assert api.call("GET", f"/v1/tasks/{task}")["status"] == "running"

    api.call("POST", f"/v1/tasks/{task}/cancel")
    wait_until(lambda: nodes.first.cancel_calls(job), 15, "the cancel to reach node-01")
    wait_until(lambda: job in nodes.first.responses, 15, "node-01's run to end")
    assert "job canceled" in nodes.first.responses[job]["stderr"]
    result = api.wait_result(task, timeout=15)
    assert result["status"] == "canceled" and len(result["jobs"]) == 1
    time.sleep(1.0)  # a late answer or a retry must not change the ending
    assert api.call("GET", f"/v1/tasks/{task}")["status"] == "canceled"
    assert nodes.first.runtime.runs(job) == 1
    assert not nodes.second_got(job)


def test_a_cancel_issued_while_the_node_is_unreachable_reaches_it_when_it_is_back(cluster, nodes: TwoNodes) -> None:  # type: ignore[no-untyped-def]
    api = _start(cluster, nodes, max_attempts="50")
    task, job = _cut_while_running(nodes, api, "echo hold-me", partition=True)
    wait_until(lambda: nodes.second_got(job) or nodes.proxy.reset_connections >= 2, 20, "a call to node-01 again")
    time.sleep(1.0)
    assert not nodes.second_got(job), "node-02 got the job while node-01, unreachable, was still running it"

    api.call("POST", f"/v1/tasks/{task}/cancel")
    time.sleep(1.0)  # the cancel cannot get through yet
    assert not nodes.first.cancel_calls(job)
    nodes.proxy.heal()
    wait_until(lambda: nodes.first.cancel_calls(job), 20, "the cancel to reach node-01 once it answers again")
    wait_until(lambda: job in nodes.first.responses, 15, "node-01's run to end")
    assert "job canceled" in nodes.first.responses[job]["stderr"]
    assert api.wait_result(task, timeout=15)["status"] == "canceled"
    assert nodes.first.runtime.runs(job) == 1
    assert not nodes.second_got(job)


def test_a_job_moves_to_another_node_only_after_the_fence(cluster, nodes: TwoNodes) -> None:  # type: ignore[no-untyped-def]
    """node-01 finished the job but its answer was lost and it stays unreachable: after the fence, node-02 runs it."""
    fence = 4.0
    api = _start(cluster, nodes, max_attempts="50", dispatch_fence_seconds=str(fence))
    task, job = _cut_while_running(nodes, api, "echo quick", partition=True)
    cut = time.monotonic()
    wait_until(lambda: nodes.second.run_calls(job), 30, "the job to move to node-02")
    assert time.monotonic() - cut >= fence - 0.5, "the job moved before the fence had passed"
    assert job in nodes.first.responses  # node-01 had finished it: never two runs at a time
    result = api.wait_result(task, timeout=15)
    assert result["status"] == "completed" and len(result["jobs"]) == 1
    assert nodes.second.runtime.runs(job) == 1
    # node-01 is told to stop the job it may still hold, once it answers again.
    nodes.proxy.heal()
    wait_until(lambda: nodes.first.cancel_calls(job), 20, "the fence cancel to reach node-01")
