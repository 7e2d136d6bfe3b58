"""A node agent killed with jobs running leaves nothing behind once it starts again (issue 11, item 2).

Real processes: an orchestrator on PostgreSQL and two node agents sharing
one Podman service (``CYNODE_PODMAN_SOCKET``), as nodes on one host can.
The service is the test's, so nothing tied to the killed agent's life ends
its containers: the restarted agent's own sweep must. node-01 is SIGKILLed
while four ``sleep 60`` jobs run, and its job store loses the start records
of two of them (as when the store is lost, or a record was never written):
the restarted agent must still find all four by label, and leave node-02's
job alone.
"""

from __future__ import annotations

import json
import os
import subprocess
import time
from pathlib import Path

import requests
from cynode_podman.service import PodmanService
from harness.processes import wait_until

from node_agent.job_result import INTERRUPTED_NOTE
from node_agent.job_store import JobStore

NODE_01_JOBS = 4


def _containers(jobs: dict[str, str]) -> dict[str, tuple[str, str]]:
    """``(state, cynodeai.node label)`` of the container of each task of ``jobs`` (task -> job id) that has one.

    Asked of Podman's storage through the CLI, which sees every container
    on the host whichever service made it. A job's container is found by
    its name, ``cynode-job-<job id>``: a warm container took that name with
    its job, while its labels were set before it had one.
    """
    env = {**os.environ, "CONTAINERS_CONF": os.environ.get("CONTAINERS_CONF", "/etc/cynode/containers.conf")}
    found: dict[str, tuple[str, str]] = {}
    for task_id, job_id in jobs.items():
        done = subprocess.run(
            ["podman", "ps", "-a", "--filter", f"name=^cynode-job-{job_id}$", "--format", "json"],
            env=env,
            capture_output=True,
            text=True,
            check=True,
            timeout=30,
        )
        for entry in json.loads(done.stdout or "[]"):
            found[task_id] = (str(entry["State"]).lower(), str((entry.get("Labels") or {}).get("cynodeai.node", "")))
    return found


def test_a_restarted_node_sweeps_what_its_killed_agent_left(cluster) -> None:  # type: ignore[no-untyped-def]
    service = PodmanService(Path(cluster.tmp) / "shared-podman")
    socket_url = service.start()
    try:
        _sweep_after_kill(cluster, socket_url)
    finally:
        cluster.stop_all()
        service.stop()


def _sweep_after_kill(cluster, socket_url: str) -> None:  # type: ignore[no-untyped-def]
    # Enough attempts that the orchestrator's calls reach the restarted node and read its records.
    orch = cluster.orchestrator(max_attempts="10", node_probe_interval="1").start().wait_healthy()
    # No warm containers: this test counts each job's workspace and record exactly (a warm container's
    # leftovers are swept too: tests/node_agent/test_warm_pool.py).
    cold = {"podman_socket": socket_url, "warm_sandboxes": "0"}
    node = cluster.node("node-01", orch, job_slots=str(NODE_01_JOBS), **cold).start()
    other = cluster.node("node-02", orch, job_slots="1", **cold).start()
    node.wait_ready()
    other.wait_ready()
    api = cluster.admin(orch)
    wait_until(lambda: requests.get(f"{orch.gateway}/readyz", timeout=2).status_code == 200, 30, "orchestrator ready")
    tasks = [api.create_command("sleep 60; echo never") for _ in range(NODE_01_JOBS + 1)]  # every slot of both
    jobs = {task: wait_until(lambda t=task: _job_of(api, t), 30, "the task's job") for task in tasks}
    wait_until(
        lambda: [state for state, _ in _containers(jobs).values()] == ["running"] * len(tasks),
        60,
        "every job's container running",
        interval=0.3,
    )
    state_dir = Path(cluster.tmp) / "home-node-01" / "node" / "node-01"
    by_node = {task: owner for task, (_, owner) in _containers(jobs).items()}
    mine = [task for task in tasks if by_node[task] == str(state_dir.resolve())]
    theirs = [task for task in tasks if task not in mine]
    assert len(mine) == NODE_01_JOBS and len(theirs) == 1, by_node
    workspaces = state_dir / "sandbox_mounts"
    records = sorted((state_dir / "jobs").glob("*.json"))
    assert len(records) == NODE_01_JOBS and len([p for p in workspaces.iterdir() if p.is_dir()]) == NODE_01_JOBS

    node.kill()
    # The jobs outlive their agent: without a sweep they would run to their end, unseen.
    assert {task: state for task, (state, _) in _containers(_only(jobs, mine)).items()} == dict.fromkeys(
        mine, "running"
    )
    for record in records[:2]:  # the store lost these two
        record.unlink()

    restarted = time.monotonic()
    node.start()
    wait_until(
        lambda: _containers(_only(jobs, mine)) == {}, 30, "no container of the killed agent's jobs", interval=0.3
    )
    swept_after = time.monotonic() - restarted
    node.wait_ready()
    assert [p.name for p in workspaces.iterdir()] == [], "workspaces of the killed agent's jobs are left"
    assert [state for state, _ in _containers(_only(jobs, theirs)).values()] == ["running"], "node-02's job was swept"
    # Every job of the killed agent is recorded failed, those the store had lost included.
    store = JobStore(state_dir / "jobs")
    job_ids = [jobs[task] for task in mine]
    for job_id in job_ids:
        record = store.get_finished(job_id)
        assert record is not None and record.result is not None and record.result.stderr == INTERRUPTED_NOTE

    # The orchestrator hears it from the node: each task fails with the node's reason.
    results = [api.wait_result(task, timeout=45) for task in mine]
    terminal_after = time.monotonic() - restarted
    print(f"containers gone {swept_after:.1f} s after the restart, every task terminal after {terminal_after:.1f} s")
    for result in results:
        assert result["status"] == "failed", result
        assert INTERRUPTED_NOTE in json.loads(result["jobs"][0]["result"]).get("stderr", ""), result["jobs"][0]
    assert swept_after < 20 and terminal_after < 40, (swept_after, terminal_after)


def _job_of(api, task: str) -> str | None:  # type: ignore[no-untyped-def]
    listed = api.call("GET", f"/v1/tasks/{task}/result")["jobs"]
    return str(listed[0]["id"]) if listed else None


def _only(jobs: dict[str, str], tasks: list[str]) -> dict[str, str]:
    return {task: jobs[task] for task in tasks}
