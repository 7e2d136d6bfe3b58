"""The node's warm containers (node_agent/warm_pool.py) on real Podman, through the Worker API.

A pool as large as the slots fills in the background and shows on
``/metrics``; a job that fits takes a warm container (its inputs in its
workspace, nothing of the pool's left there) and the pool refills; a job
that does not fit runs cold and the container it took is removed; a warm
container that died is replaced by a cold start; closing the pool removes
its containers and their workspaces.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import pytest
import requests
from metrics_samples import families_of, value
from node_helpers import Worker, WorkerFactory, job_body

from cynode_core.contract.job.files import JobInput
from node_agent.sandbox_spec import sandbox_owner

READY_WAIT_SECONDS = 60


def scrape(worker: Worker, name: str, **labels: str) -> float | None:
    resp = requests.get(f"{worker.url}/metrics", timeout=10)
    assert resp.status_code == 200, resp.text
    return value(families_of(resp.text), name, **labels)


def wait_for(condition: Callable[[], bool], what: str) -> None:
    deadline = time.monotonic() + READY_WAIT_SECONDS
    while not condition():
        if time.monotonic() > deadline:
            pytest.fail(f"not within {READY_WAIT_SECONDS} s: {what}")
        time.sleep(0.1)


def warm_names(worker: Worker) -> list[str]:
    client = worker.executor.warm._runtime.client  # type: ignore[union-attr, attr-defined]
    owner = sandbox_owner(worker.settings)
    found = client.containers.list(all=True, filters={"label": f"cynodeai.node={owner}"})
    return sorted(c.name for c in found if (c.labels or {}).get("cynodeai.warm"))


@pytest.fixture
def pooled(start_worker: WorkerFactory) -> Any:
    worker = start_worker(job_slots=2)
    pool = worker.executor.warm
    assert pool is not None and pool.size == 2
    pool.start()
    wait_for(lambda: pool.ready == 2, "two warm containers")
    yield worker
    pool.close()


def test_jobs_that_fit_take_warm_containers_and_the_pool_refills(pooled: Worker) -> None:
    assert scrape(pooled, "cynode_node_warm_sandboxes") == 2
    before = set(warm_names(pooled))
    inputs = [JobInput.of("data.txt", b"from the task\n").to_json()]
    body = job_body(["sh", "-c", "cat /workspace/inputs/data.txt; ls -A /workspace; id -u"], inputs=inputs)
    resp = pooled.run(body)
    assert resp.status_code == 200 and resp.json()["status"] == "completed", resp.text
    assert resp.json()["stdout"] == "from the task\n.cynode\ninputs\n65534\n"
    assert scrape(pooled, "cynode_node_sandbox_starts_total", path="warm") == 1
    assert scrape(pooled, "cynode_node_sandbox_starts_total", path="cold") == 0
    pool = pooled.executor.warm
    assert pool is not None
    wait_for(lambda: pool.ready == 2, "the pool refilled")
    assert len(set(warm_names(pooled)) - before) == 1, "exactly one new warm container"
    workspaces = [path for path in pooled.workspace_root.iterdir() if path.is_dir()]
    assert len(workspaces) == 2, "the job's workspace is gone, the pool's two stay"


def test_a_job_that_does_not_fit_runs_cold_and_its_taken_container_goes(pooled: Worker) -> None:
    # An environment name a shell cannot export: no warm container fits it.
    resp = pooled.run(job_body(["sh", "-c", "echo cold"], env={"NOT-AN-IDENTIFIER": "x"}))
    assert resp.status_code == 200 and resp.json()["stdout"] == "cold\n", resp.text
    assert scrape(pooled, "cynode_node_sandbox_starts_total", path="cold") == 1
    assert scrape(pooled, "cynode_node_sandbox_starts_total", path="warm") == 0
    pool = pooled.executor.warm
    assert pool is not None
    wait_for(lambda: pool.ready == 2 and len(warm_names(pooled)) == 2, "two warm containers, none left over")


def test_a_warm_container_that_died_gives_way_to_a_cold_start(pooled: Worker) -> None:
    client = pooled.executor.warm._runtime.client  # type: ignore[union-attr, attr-defined]
    for name in warm_names(pooled):
        client.containers.get(name).kill(signal="SIGKILL")
    resp = pooled.run(job_body(["sh", "-c", "echo still-runs"]))
    assert resp.status_code == 200 and resp.json()["stdout"] == "still-runs\n", resp.text
    assert scrape(pooled, "cynode_node_sandbox_starts_total", path="cold") == 1


def test_closing_the_pool_removes_its_containers_and_workspaces(start_worker: WorkerFactory) -> None:
    worker = start_worker(job_slots=1, warm_sandboxes=5)  # never more than the slots
    pool = worker.executor.warm
    assert pool is not None and pool.size == 1
    pool.start()
    wait_for(lambda: pool.ready == 1, "one warm container")
    pool.close()
    assert warm_names(worker) == [] and list(worker.workspace_root.iterdir()) == []


def test_no_pool_when_it_is_turned_off_or_workspaces_are_kept(start_worker: WorkerFactory) -> None:
    assert start_worker(warm_sandboxes=0).settings.warm_pool_size == 0
    assert start_worker(keep_workspaces=True).settings.warm_pool_size == 0


def test_a_restarted_node_removes_the_warm_containers_its_killed_agent_left(start_worker: WorkerFactory) -> None:
    """An agent that died without closing its pool: the next one on its state directory sweeps both."""
    first = start_worker(job_slots=2)
    pool = first.executor.warm
    assert pool is not None
    pool.start()
    wait_for(lambda: pool.ready == 2, "two warm containers")
    pool._closed = True  # the agent "dies": its pool stops refilling, nothing is removed  # noqa: SLF001
    left = warm_names(first)
    assert len(left) == 2
    again = start_worker(home=first.settings.home, job_slots=2)  # settles what the first left at start
    assert warm_names(again) == []
    assert [path for path in again.workspace_root.iterdir() if path.is_dir()] == []
