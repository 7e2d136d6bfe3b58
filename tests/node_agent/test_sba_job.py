"""SBA jobs through the Worker API: the node runs the agent runner in a real hardened Podman sandbox (agents 5.3).

Direct-steps mode needs no model, so these runs are deterministic: the
node checks the spec, mounts ``/job`` and the runner, runs it, and turns
``result.json`` into the response's ``sba_result`` and the job's status.
Agent mode asks the node's inference backend through the job's proxy; here
that backend is a SCRIPTED stand-in for Ollama's ``/api/chat``
(tests/harness/scripted_ollama.py, faithful to Ollama's published API), so
the tests assert the mechanics (agents_contract.md 7), never a model's
cleverness: each decision is executed and fed back, and limits end the loop.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest
import requests
from harness.scripted_ollama import ScriptedOllama
from node_helpers import WORKER_TOKEN, Worker, WorkerFactory, containers_of, job_body

from cynode_core.contract import InferenceBackend, SandboxRuntime
from cynode_core.contract.job.sba import Constraints, ContextSpec, InferenceSpec, JobSpec, SbaResult, StepSpec

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


# ================================================================ agent mode, scripted model


@pytest.fixture
def scripted() -> Iterator[ScriptedOllama]:
    stub = ScriptedOllama()
    yield stub
    stub.stop()


def _decision(tool: str, **arguments: Any) -> str:
    return json.dumps({"action": "call", "tool": tool, "arguments": arguments})


def _agent_body(model: str, max_steps: int = 4) -> dict[str, Any]:
    body = job_body([], image=PYTHON_IMAGE, use_inference=True)
    spec = JobSpec(
        job_id=body["job_id"],
        task_id=body["task_id"],
        execution_mode="agent_inference",
        constraints=Constraints(max_runtime_seconds=60, max_output_bytes=4096, max_steps=max_steps),
        inference=InferenceSpec(allowed_models=(model,), source="worker"),
        context=ContextSpec(baseline_context="You are a sandbox agent.", task_context="Write hello.txt and check it."),
    )
    body["sandbox"]["job_spec_json"] = spec.to_text()
    return body


def _agent_worker(start_worker: WorkerFactory, backend_url: str, model: str) -> Worker:
    worker = start_worker(inference_backend="llamacpp")
    worker.executor.set_inference_backend(backend_url, (model,))
    return worker


def test_an_agent_job_executes_each_decision_feeds_it_back_and_finishes(
    start_worker: WorkerFactory, scripted: ScriptedOllama
) -> None:
    scripted.script = [
        _decision("write_file", path="hello.txt", content="hello from the agent\n"),
        _decision("run_command", argv=["cat", "hello.txt"]),
        _decision("finish", answer="Wrote hello.txt and read it back."),
    ]
    worker = _agent_worker(start_worker, scripted.base_url, scripted.model)
    result = worker.run(_agent_body(scripted.model)).json()
    assert (result["status"], result["exit_code"]) == ("completed", 0), result
    assert result["stdout"] == "Wrote hello.txt and read it back.\n"
    sba = result["sba_result"]
    assert (sba["status"], sba["inference_used"], sba["final_answer"]) == (
        "success",
        True,
        "Wrote hello.txt and read it back.",
    )
    assert [(s["type"], s["status"]) for s in sba["steps"]] == [
        ("write_file", "success"),
        ("run_command", "success"),
        ("finish", "success"),
    ]
    assert sba["steps"][1]["output"] == "hello from the agent\n"
    decides = scripted.decide_requests()
    assert len(decides) == 3 and scripted.reply_requests() == []
    for request in decides:  # constrained, deterministic decide calls (agents_contract.md 3.3)
        assert request["stream"] is False and request["format"]["oneOf"]
        assert request["options"]["temperature"] == 0 and isinstance(request["options"]["seed"], int)
    # Each observation is fed back to the next decide call (and not before its step ran).
    seen = [json.dumps(request["messages"]) for request in decides]
    assert "Result of write_file" not in seen[0] and "wrote 21 bytes to hello.txt" in seen[1]
    assert "Result of run_command" not in seen[1] and "Result of run_command" in seen[2]


def test_an_agent_that_never_finishes_stops_at_its_step_limit(
    start_worker: WorkerFactory, scripted: ScriptedOllama
) -> None:
    scripted.script = [_decision("list_tree")] * 5
    worker = _agent_worker(start_worker, scripted.base_url, scripted.model)
    result = worker.run(_agent_body(scripted.model, max_steps=2)).json()
    assert result["status"] == "failed", result
    sba = result["sba_result"]
    assert (sba["status"], sba["failure_code"]) == ("failure", "constraint_violation")
    assert sba["failure_message"] == "max_steps (2) reached without finish"
    assert len(scripted.decide_requests()) == 2 and len(sba["steps"]) == 2


def test_a_step_that_escapes_the_workspace_fails_alone_and_the_agent_goes_on(
    start_worker: WorkerFactory, scripted: ScriptedOllama
) -> None:
    scripted.script = [_decision("write_file", path="../x", content="out"), _decision("finish", answer="gave up")]
    worker = _agent_worker(start_worker, scripted.base_url, scripted.model)
    result = worker.run(_agent_body(scripted.model)).json()
    assert result["status"] == "completed", result
    steps = result["sba_result"]["steps"]
    assert (steps[0]["type"], steps[0]["status"], steps[0]["error"]) == (
        "write_file",
        "failure",
        "path escapes workspace",
    )
    assert "path escapes workspace" in json.dumps(scripted.decide_requests()[1]["messages"])


def test_an_unreachable_model_fails_the_agent_job_with_inference_failed(start_worker: WorkerFactory) -> None:
    worker = _agent_worker(start_worker, "http://127.0.0.1:9", "scripted:1b")  # nothing listens on port 9
    result = worker.run(_agent_body("scripted:1b")).json()
    assert result["status"] == "failed", result
    assert (result["sba_result"]["status"], result["sba_result"]["failure_code"]) == ("failure", "inference_failed")


def test_an_agent_job_on_the_real_tiny_model_ends_with_a_valid_result_within_its_limit(
    start_worker: WorkerFactory, real_backend: InferenceBackend, real_model: str
) -> None:
    """REAL model (the bundled gemma-3-270m through llama.cpp, agents_contract.md 7 tiny-model smoke): what it
    does is not asserted; that the runner's result is valid and the loop ended within max_steps 3 is."""
    worker = _agent_worker(start_worker, real_backend.base_url, real_model)
    body = _agent_body(real_model, max_steps=3)
    response = requests.post(
        f"{worker.url}/v1/worker/jobs:run", json=body, timeout=180, headers={"Authorization": f"Bearer {WORKER_TOKEN}"}
    )
    result = response.json()
    sba = SbaResult.from_json(result["sba_result"])  # valid, or this raises
    assert sba.inference_used is True and sba.job_id == body["job_id"]
    assert (sba.status, sba.failure_code) in (("success", None), ("failure", "constraint_violation")), result
    assert len(sba.steps) <= 3
    assert result["status"] == ("completed" if sba.status == "success" else "failed")
