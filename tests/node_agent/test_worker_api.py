"""The Worker API over real HTTP on loopback, jobs in real Podman containers (docs/wire_contract.md#worker-api)."""

from __future__ import annotations

import json
import re
import time
import uuid
from pathlib import Path

import pytest
import requests
from node_helpers import (
    RESULT_KEYS,
    WORKER_TOKEN,
    Worker,
    WorkerFactory,
    assert_problem,
    containers_of,
    job_body,
    new_podman_runtime,
    nothing_created,
    run_in_thread,
)

from cynode_core.contract import SandboxRuntime
from node_agent.job_result import CANCEL_NOTE

RFC3339_Z = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}Z$")


# --------------------------------------------------------------------- health


def test_healthz_and_readyz_answer_without_a_token(worker: Worker) -> None:
    health = requests.get(f"{worker.url}/healthz", timeout=10)
    ready = requests.get(f"{worker.url}/readyz", timeout=10)
    assert (health.status_code, health.text) == (200, "ok")
    assert health.headers["Content-Type"] == "text/plain; charset=utf-8"
    assert (ready.status_code, ready.text) == (200, "ready")
    assert ready.headers["Content-Type"] == "text/plain; charset=utf-8"


def test_readyz_turns_503_when_the_runtime_stops_answering(
    start_worker: WorkerFactory, tmp_path: Path, sandbox_image: str
) -> None:
    # A runtime of its own, so its Podman service can be killed without harming other tests.
    runtime = new_podman_runtime(tmp_path / "own-podman")
    try:
        worker = start_worker(runtime)
        assert requests.get(f"{worker.url}/readyz", timeout=30).text == "ready"
        service = runtime.service
        service.stop()  # the runtime's Podman service is gone, the runtime object is not told
        ready = requests.get(f"{worker.url}/readyz", timeout=30)
        assert ready.status_code == 503
        assert ready.headers["Content-Type"] == "text/plain; charset=utf-8"
        assert ready.text.startswith("podman not available: ")
        assert requests.get(f"{worker.url}/healthz", timeout=10).text == "ok"
    finally:
        runtime.close()


def test_readyz_is_503_with_the_managers_reason_until_marked_ready(worker: Worker) -> None:
    worker.readiness.set_not_ready("starting: inference backend not started yet")
    ready = requests.get(f"{worker.url}/readyz", timeout=10)
    assert (ready.status_code, ready.text) == (503, "starting: inference backend not started yet")


# ----------------------------------------------------------------------- jobs


def test_a_job_runs_in_a_container_and_returns_the_documented_result(worker: Worker) -> None:
    body = job_body(["sh", "-c", "echo out; echo err >&2"])
    response = worker.run(body)
    assert response.status_code == 200
    assert response.headers["Content-Type"] == "application/json"
    result = response.json()
    assert set(result) == RESULT_KEYS
    assert result["version"] == 1
    assert (result["task_id"], result["job_id"]) == (body["task_id"], body["job_id"])
    assert (result["status"], result["exit_code"]) == ("completed", 0)
    assert (result["stdout"], result["stderr"]) == ("out\n", "err\n")
    assert RFC3339_Z.match(result["started_at"]) and RFC3339_Z.match(result["ended_at"])
    assert result["started_at"] <= result["ended_at"]
    assert result["truncated"] == {"stdout": False, "stderr": False}

    failed = worker.run(job_body(["sh", "-c", "exit 3"])).json()
    assert (failed["status"], failed["exit_code"]) == ("failed", 3)


def test_the_sandbox_gets_the_node_env_the_request_env_and_nothing_else(worker: Worker) -> None:
    body = job_body(
        ["sh", "-c", "env; id -u; pwd; touch /workspace/x && echo writable"],
        env={"CYNODE_JOB_ID": "forged", "CYNODE_WORKSPACE_DIR": "/etc", "CYNODE_PROMPT": "hi", "KEY": "VALUE"},
    )
    result = worker.run(body).json()
    assert result["status"] == "completed", result
    env = dict(line.split("=", 1) for line in result["stdout"].splitlines() if "=" in line)
    assert env["CYNODE_TASK_ID"] == body["task_id"]
    assert env["CYNODE_JOB_ID"] == body["job_id"]  # the forged value was dropped
    assert env["CYNODE_WORKSPACE_DIR"] == "/workspace"
    assert (env["CYNODE_PROMPT"], env["KEY"]) == ("hi", "VALUE")
    assert not any(name in env for name in ("CYNODE_NODE_PSK", "NODE_REGISTRATION_PSK", "CONTAINERS_CONF"))
    assert WORKER_TOKEN not in result["stdout"]
    lines = result["stdout"].splitlines()
    assert lines[-3:] == ["65534", "/workspace", "writable"]


def test_the_workspace_is_private_and_removed_after_the_job(worker: Worker) -> None:
    body = job_body(["sh", "-c", "echo data > /workspace/file; ls -ld /workspace"])
    result = worker.run(body).json()
    assert result["status"] == "completed", result
    assert result["stdout"].startswith("drwx------")
    assert not (worker.workspace_root / body["job_id"]).exists()


def test_a_job_past_its_timeout_is_killed_and_keeps_partial_output(worker: Worker) -> None:
    began = time.monotonic()
    result = worker.run(job_body(["sh", "-c", "echo partial; sleep 30"], timeout_seconds=1)).json()
    assert time.monotonic() - began < 15
    assert (result["status"], result["exit_code"]) == ("timeout", -1)
    assert result["stdout"] == "partial\n"


def test_output_is_capped_per_stream_at_a_character_boundary(start_worker: WorkerFactory) -> None:
    worker = start_worker(max_output_bytes=1001)
    # 3000 bytes of a 2-byte character on stdout, 5000 ASCII bytes on stderr.
    script = (
        "i=0; while [ $i -lt 1500 ]; do printf '\\303\\251'; i=$((i+1)); done; head -c 5000 /dev/zero | tr '\\0' e >&2"
    )
    result = worker.run(job_body(["sh", "-c", script])).json()
    assert result["status"] == "completed", result["stderr"][:200]
    assert result["stdout"] == "é" * 500  # 1000 bytes: the 1001st would split a character
    assert result["stderr"] == "e" * 1001
    assert result["truncated"] == {"stdout": True, "stderr": True}


def test_invalid_utf8_output_is_made_valid(worker: Worker) -> None:
    result = worker.run(job_body(["sh", "-c", "printf 'a\\377b'"])).json()
    assert result["stdout"] == "a\ufffdb"


def test_a_missing_image_is_a_failed_result_not_an_http_error(worker: Worker) -> None:
    response = worker.run(job_body(["true"], image="localhost/cynode-no-such-image:missing"))
    assert response.status_code == 200
    result = response.json()
    assert result["status"] == "failed"
    assert result["exit_code"] != 0
    assert "no-such-image" in result["stderr"]


# ----------------------------------------------------------------------- auth


@pytest.mark.parametrize(
    "header",
    [
        None,
        "Bearer",
        "Bearer ",
        "Bearer wrong-token",
        f"Bearer {WORKER_TOKEN}x",
        f"bearer {WORKER_TOKEN}",
        f"BEARER {WORKER_TOKEN}",
        f"Bearer  {WORKER_TOKEN}",
        WORKER_TOKEN,
        f"Basic {WORKER_TOKEN}",
    ],
)
def test_jobs_without_the_right_bearer_token_are_refused_before_anything_runs(
    worker: Worker, header: str | None, caplog: pytest.LogCaptureFixture
) -> None:
    body = job_body(["sh", "-c", "echo ran"])
    headers = {"Authorization": header} if header is not None else {}
    response = requests.post(f"{worker.url}/v1/worker/jobs:run", json=body, headers=headers, timeout=30)
    assert_problem(response, 401, "Invalid or missing bearer token", kind="authentication", title="Unauthorized")
    assert nothing_created(worker)
    assert WORKER_TOKEN not in caplog.text
    # Nothing ran: the same job id, now authorised, runs for the first time.
    assert worker.run(body).json()["stdout"] == "ran\n"


# ----------------------------------------------------------------- validation


def _valid() -> dict:
    return job_body(["sh", "-c", "echo should-not-run"])


def _with(**changes: object) -> dict:
    body = _valid()
    for key, value in changes.items():
        if value is _DROP:
            del body[key]
        else:
            body[key] = value
    return body


_DROP = object()
_UUID = str(uuid.uuid4())


@pytest.mark.parametrize(
    ("raw", "detail"),
    [
        ('{"version": 1, "task_id": ', "Invalid request body"),
        ("not json at all", "Invalid request body"),
        ("[]", "Invalid request body"),
        (json.dumps(_with(version="1")), "Invalid request body"),
        (json.dumps(_with(version=True)), "Invalid request body"),
        (json.dumps(_with(sandbox={"command": "echo hi"})), "Invalid request body"),
        (json.dumps(_with(sandbox={"command": ["true"], "env": {"A": 1}})), "Invalid request body"),
        (json.dumps(_with(sandbox={"command": ["true"], "timeout_seconds": 1.5})), "Invalid request body"),
        (json.dumps(_with(version=2)), "unsupported version"),
        (json.dumps(_with(version=_DROP)), "unsupported version"),
        (json.dumps(_with(task_id=_DROP)), "task_id and job_id are required"),
        (json.dumps(_with(job_id="")), "task_id and job_id are required"),
        (json.dumps(_with(sandbox={"command": []})), "sandbox.command is required when job_spec_json is not set"),
        (json.dumps(_with(sandbox=None)), "sandbox.command is required when job_spec_json is not set"),
        # The command check comes before the version check (docs/wire_contract.md#worker-run-job-checks).
        (
            json.dumps(_with(version=2, sandbox={"command": []})),
            "sandbox.command is required when job_spec_json is not set",
        ),
        (json.dumps(_with(job_id="../../etc")), "task_id and job_id must be UUIDs"),
        (json.dumps(_with(job_id="j-1")), "task_id and job_id must be UUIDs"),
        (json.dumps(_with(task_id="t-1")), "task_id and job_id must be UUIDs"),
        (json.dumps(_with(job_id="/tmp/x")), "task_id and job_id must be UUIDs"),
        (json.dumps(_with(task_id="..%2F..%2Fetc")), "task_id and job_id must be UUIDs"),
        (json.dumps(_with(job_id=_UUID + "/..")), "task_id and job_id must be UUIDs"),
        (json.dumps(_with(job_id="{" + _UUID + "}")), "task_id and job_id must be UUIDs"),
    ],
)
def test_invalid_job_requests_are_400_and_create_nothing(worker: Worker, raw: str, detail: str) -> None:
    response = requests.post(
        f"{worker.url}/v1/worker/jobs:run",
        data=raw.encode(),
        timeout=30,
        headers={"Authorization": f"Bearer {WORKER_TOKEN}", "Content-Type": "application/json"},
    )
    assert_problem(response, 400, detail, kind="validation", title="Bad Request")
    assert nothing_created(worker)


def test_unknown_fields_are_ignored_and_job_spec_json_without_command_is_accepted(worker: Worker) -> None:
    body = job_body([], job_spec_json="{}", extra_field=True)
    body["future_key"] = {"x": 1}
    # An SBA job whose spec is not valid: a failed result (no container), not a 400.
    response = worker.run(body)
    assert response.status_code == 200
    assert response.json()["stderr"].startswith("invalid SBA job_spec_json: ")


def test_an_oversize_body_is_413_and_only_after_authentication(worker: Worker) -> None:
    body = job_body(["true"])
    body["padding"] = "x" * (11 * 1024 * 1024)
    data = json.dumps(body).encode()
    too_large = requests.post(
        f"{worker.url}/v1/worker/jobs:run", data=data, timeout=60, headers={"Authorization": f"Bearer {WORKER_TOKEN}"}
    )
    assert_problem(
        too_large, 413, "Request body exceeds maximum size", kind="validation", title="Request Entity Too Large"
    )
    assert_problem(requests.post(f"{worker.url}/v1/worker/jobs:run", data=data, timeout=60), 401)
    assert nothing_created(worker)


def test_the_request_cap_follows_the_smallest_configured_limit(start_worker: WorkerFactory) -> None:
    worker = start_worker(max_request_bytes=2048)
    body = job_body(["true"])
    body["padding"] = "x" * 3000
    assert_problem(worker.run(body), 413, "Request body exceeds maximum size")
    worker.executor.limits.apply_constraints(max_request_bytes=20000, max_job_timeout_seconds=None)
    assert worker.executor.limits.max_request_bytes == 2048  # the config can only lower the local cap
    worker.executor.limits.apply_constraints(max_request_bytes=1024, max_job_timeout_seconds=None)
    del body["padding"]
    body["padding"] = "x" * 1500
    assert_problem(worker.run(body), 413)


def test_unknown_routes_and_wrong_methods_are_problem_details(worker: Worker) -> None:
    assert_problem(requests.get(f"{worker.url}/v1/worker/jobs:run", timeout=10), 405)
    assert_problem(requests.get(f"{worker.url}/v1/worker/telemetry/logs", timeout=10), 404)
    assert_problem(requests.post(f"{worker.url}/v1/worker/jobs:runx", timeout=10), 404)


# ---------------------------------------------------------------- idempotency


def test_a_repeated_finished_job_returns_the_stored_result_without_running(start_worker: WorkerFactory) -> None:
    worker = start_worker(keep_workspaces=True)
    body = job_body(["sh", "-c", "date +%s%N; echo ran >> /workspace/count"])
    first = worker.run(body).json()
    assert first["status"] == "completed", first
    time.sleep(1.1)  # a second run would show a later date and ended_at
    second = worker.run(body).json()
    assert second == first
    count = worker.workspace_root / body["job_id"] / "count"
    assert count.read_text() == "ran\n"


def test_a_repeat_while_the_job_runs_waits_for_that_run(start_worker: WorkerFactory) -> None:
    worker = start_worker(keep_workspaces=True)
    body = job_body(["sh", "-c", "sleep 1; echo ran >> /workspace/count; echo done"])
    thread1, box1 = run_in_thread(lambda: worker.run(body))
    time.sleep(0.3)
    thread2, box2 = run_in_thread(lambda: worker.run(body))
    thread1.join(30)
    thread2.join(30)
    first, second = box1["result"].json(), box2["result"].json()
    assert first == second
    assert first["stdout"] == "done\n"
    assert (worker.workspace_root / body["job_id"] / "count").read_text() == "ran\n"


def test_a_job_left_running_by_a_dead_agent_is_answered_failed_not_rerun(start_worker: WorkerFactory) -> None:
    worker = start_worker()
    body = job_body(["sh", "-c", "echo ran"])
    # What a crashed agent leaves behind: the start record of a job, no result.
    worker.executor._store.mark_running(body["job_id"], body["task_id"])
    restarted = start_worker(home=str(worker.settings.home))
    result = restarted.run(body).json()
    assert (result["status"], result["exit_code"]) == ("failed", -1)
    assert "not run again" in result["stderr"]
    assert result["stdout"] == ""


def test_finished_results_survive_an_agent_restart(start_worker: WorkerFactory) -> None:
    worker = start_worker()
    body = job_body(["sh", "-c", "echo once"])
    first = worker.run(body).json()
    restarted = start_worker(home=str(worker.settings.home))
    assert restarted.run(body).json() == first
    record = restarted.jobs_dir / f"{body['job_id']}.json"
    assert record.stat().st_mode & 0o777 == 0o600


# ---------------------------------------------------------------------- slots


def test_a_job_over_capacity_is_refused_with_503_and_retry_after(start_worker: WorkerFactory) -> None:
    worker = start_worker(job_slots=1)
    busy = job_body(["sleep", "30"])
    thread, box = run_in_thread(lambda: worker.run(busy))
    deadline = time.monotonic() + 10
    while worker.executor.running_jobs < 1 and time.monotonic() < deadline:
        time.sleep(0.05)
    refused = worker.run(job_body(["sh", "-c", "echo should-not-run"]))
    assert_problem(refused, 503)
    assert refused.headers["Retry-After"] == "1"
    assert worker.cancel(busy["job_id"]).status_code == 200
    thread.join(30)
    assert box["result"].json()["status"] == "failed"
    assert worker.run(job_body(["true"])).json()["status"] == "completed"  # the slot is free again


# --------------------------------------------------------------------- cancel


def test_cancel_stops_a_running_job_and_is_idempotent(worker: Worker, podman_runtime: SandboxRuntime) -> None:
    body = job_body(["sleep", "300"])
    job_id = body["job_id"]
    thread, box = run_in_thread(lambda: worker.run(body))
    deadline = time.monotonic() + 10
    while not containers_of(podman_runtime, job_id) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert containers_of(podman_runtime, job_id), "the job's container never appeared"

    first = worker.cancel(job_id)
    assert first.status_code == 200
    assert first.json() == {"version": 1, "job_id": job_id, "canceled": True}
    thread.join(15)
    assert not thread.is_alive(), "the pending jobs:run did not return"
    result = box["result"].json()
    assert result["status"] == "failed"
    assert result["exit_code"] == -1
    assert result["stderr"].endswith(CANCEL_NOTE)
    assert containers_of(podman_runtime, job_id) == []

    second = worker.cancel(job_id)
    assert (second.status_code, second.json()) == (200, first.json())
    assert worker.run(body).json() == result  # no new container: the stored result


def test_cancel_of_a_job_that_finished_on_its_own_says_so(worker: Worker) -> None:
    body = job_body(["true"])
    worker.run(body)
    response = worker.cancel(body["job_id"])
    assert (response.status_code, response.json()["canceled"]) == (200, False)


@pytest.mark.parametrize(
    ("job", "token", "status"),
    [
        ("running", None, 401),
        ("running", "wrong-token", 401),
        ("unknown", WORKER_TOKEN, 404),
        ("not-a-uuid", WORKER_TOKEN, 400),
        ("..", WORKER_TOKEN, 400),
    ],
)
def test_cancel_calls_unauthenticated_malformed_or_unknown(
    start_worker: WorkerFactory, job: str, token: str | None, status: int
) -> None:
    worker = start_worker()
    running = job_body(["sleep", "30"])
    thread, box = run_in_thread(lambda: worker.run(running))
    deadline = time.monotonic() + 10
    while worker.executor.running_jobs < 1 and time.monotonic() < deadline:
        time.sleep(0.05)
    target = {"running": running["job_id"], "unknown": str(uuid.uuid4())}.get(job, job)
    response = requests.post(
        f"{worker.url}/v1/worker/jobs/{target}:cancel",
        timeout=30,
        headers={"Authorization": f"Bearer {token}"} if token else {},
    )
    detail = {401: "Invalid or missing bearer token", 404: "Job not found", 400: "job_id must be a UUID"}[status]
    assert_problem(response, status, detail)
    assert worker.executor.running_jobs == 1  # nothing was stopped
    worker.cancel(running["job_id"])
    thread.join(30)


def test_a_workspace_that_cannot_be_created_is_a_500_and_the_job_can_be_retried(
    start_worker: WorkerFactory, tmp_path: Path
) -> None:
    blocker = tmp_path / "not-a-directory"
    blocker.write_text("a file where the workspace root should be")
    worker = start_worker(workspace_root=str(blocker))
    body = job_body(["sh", "-c", "echo ran"])
    assert_problem(worker.run(body), 500, "Workspace creation failed", kind="internal")
    blocker.unlink()
    assert worker.run(body).json()["stdout"] == "ran\n"  # nothing was recorded: a retry runs it
