"""SBA jobs through the Worker API: the node runs the agent runner in a real hardened Podman sandbox (agents 5.3).

Direct-steps mode needs no model, so these runs are deterministic: the
node checks the spec, mounts ``/job`` and the runner, runs it, and turns
``result.json`` into the response's ``sba_result`` and the job's status.
"""

from __future__ import annotations

from typing import Any

from node_helpers import Worker, containers_of, job_body

from cynode_core.contract import SandboxRuntime
from cynode_core.contract.job.sba import Constraints, JobSpec, StepSpec

PYTHON_IMAGE = "localhost/cynode-sandbox:python"


def _sba_body(steps: list[tuple[str, dict[str, Any]]]) -> dict[str, Any]:
    body = job_body([], image=PYTHON_IMAGE)
    spec = JobSpec(
        job_id=body["job_id"],
        task_id=body["task_id"],
        execution_mode="direct_steps",
        constraints=Constraints(max_runtime_seconds=60, max_output_bytes=4096),
        steps=tuple(StepSpec(kind, args) for kind, args in steps),
    )
    body["sandbox"]["job_spec_json"] = spec.to_text()
    return body


def test_a_direct_steps_job_writes_runs_and_reads_and_returns_its_sba_result(
    worker: Worker, podman_runtime: SandboxRuntime
) -> None:
    body = _sba_body(
        [
            ("write_file", {"path": "hello.txt", "content": "hello from the agent\n"}),
            ("run_command", {"argv": ["cat", "hello.txt"]}),
            ("read_file", {"path": "hello.txt"}),
        ]
    )
    response = worker.run(body)
    assert response.status_code == 200, response.text
    result = response.json()
    assert (result["status"], result["exit_code"]) == ("completed", 0), result
    sba = result["sba_result"]
    assert sba["status"] == "success" and sba["inference_used"] is False and sba["job_id"] == body["job_id"]
    assert [(s["type"], s["status"]) for s in sba["steps"]] == [
        ("write_file", "success"),
        ("run_command", "success"),
        ("read_file", "success"),
    ]
    assert sba["steps"][1]["output"] == "hello from the agent\n" and sba["steps"][1]["exit_code"] == 0
    assert containers_of(podman_runtime, body["job_id"]) == []
    assert not list((worker.settings.resolved_state_dir / "sba" / "jobs").glob("*")), "the /job directory was kept"


def test_a_failing_direct_step_fails_the_job_with_its_code(worker: Worker) -> None:
    body = _sba_body([("run_command", {"argv": ["sh", "-c", "exit 3"]}), ("read_file", {"path": "never.txt"})])
    result = worker.run(body).json()
    assert result["status"] == "failed" and result["exit_code"] != 0
    sba = result["sba_result"]
    assert (sba["status"], sba["failure_code"]) == ("failure", "step_failed")
    assert [s["status"] for s in sba["steps"]] == ["failure"]


def test_an_invalid_spec_fails_without_a_container(worker: Worker, podman_runtime: SandboxRuntime) -> None:
    body = job_body([], image=PYTHON_IMAGE, job_spec_json='{"protocol_version": "2.0"}')
    result = worker.run(body).json()
    assert (result["status"], result["exit_code"]) == ("failed", -1)
    assert result["stderr"].startswith("invalid SBA job_spec_json: ")
    assert "sba_result" not in result
    assert containers_of(podman_runtime, body["job_id"]) == []
