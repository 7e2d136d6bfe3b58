"""A cancel that reaches the node before its job does still stops the job (issue 11, item 4).

The orchestrator may send ``jobs/{job_id}:cancel`` while its ``jobs:run``
for that job is still on its way (or when it is fencing the job off a node
it lost contact with). The node answers 404 as before, but keeps the
cancel: a ``jobs:run`` of that job_id arriving later is answered as
canceled and never starts a container (docs/wire_contract.md#worker-cancel).
Real Worker API on loopback, real Podman.
"""

from __future__ import annotations

from typing import Any

from node_helpers import ContainerRecords, WorkerFactory, assert_problem, job_body


def _canceled_unstarted(result: dict[str, Any]) -> bool:
    outcome = (result["status"], result["exit_code"], result["stdout"])
    return outcome == ("failed", -1, "") and "canceled before it started" in result["stderr"]


def test_a_cancel_before_the_run_keeps_the_job_from_starting(
    start_worker: WorkerFactory, container_records: ContainerRecords
) -> None:
    worker = start_worker()
    body = job_body(["sh", "-c", "echo ran"])
    assert_problem(worker.cancel(body["job_id"]), 404, "Job not found", kind="not_found")

    answer = worker.run(body)
    assert answer.status_code == 200, answer.text
    result = answer.json()
    assert _canceled_unstarted(result), result
    assert (result["task_id"], result["job_id"]) == (body["task_id"], body["job_id"])
    assert container_records.of(body["job_id"]) == []
    assert not (worker.workspace_root / body["job_id"]).exists()
    # From then on the job is a canceled one: a cancel says so, a repeat gets the same answer.
    again = worker.cancel(body["job_id"])
    assert again.status_code == 200 and again.json()["canceled"] is True
    assert worker.run(body).json() == result
    assert container_records.of(body["job_id"]) == []


def test_the_cancel_is_kept_across_an_agent_restart(
    start_worker: WorkerFactory, container_records: ContainerRecords
) -> None:
    worker = start_worker()
    body = job_body(["sh", "-c", "echo ran"])
    assert worker.cancel(body["job_id"]).status_code == 404
    record = worker.jobs_dir / f"{body['job_id']}.json"
    assert record.stat().st_mode & 0o777 == 0o600
    restarted = start_worker(home=str(worker.settings.home))
    assert _canceled_unstarted(restarted.run(body).json())
    assert container_records.of(body["job_id"]) == []


def test_other_jobs_still_run(start_worker: WorkerFactory) -> None:
    worker = start_worker()
    canceled, other = job_body(["sh", "-c", "echo ran"]), job_body(["sh", "-c", "echo ran"])
    assert worker.cancel(canceled["job_id"]).status_code == 404
    assert worker.run(other).json()["stdout"] == "ran\n"
    assert _canceled_unstarted(worker.run(canceled).json())
