"""The node agent's ``/metrics`` and request id (node_agent/metrics.py, the Worker API, the inference proxy).

Named test_node_metrics.py, not test_metrics.py: tests/ has no __init__.py, so two test files of one
basename cannot be collected in one run (tests/test_metrics.py covers the orchestrator's).

Real parts only: a Worker API on 127.0.0.1 over real Podman, and the REAL
embedded llama.cpp backend (entry point ``llamacpp``) behind a proxy the
executor starts exactly as it does for a ``use_inference`` job. Scrapes are
parsed with prometheus_client's own text parser.
"""

from __future__ import annotations

import io
import json
import time
import uuid
from typing import Any

import requests
from metrics_samples import families_of, value
from node_helpers import WORKER_TOKEN, Worker, WorkerFactory, job_body

from cynode_core.contract import InferenceBackend
from node_agent.metrics import LastLine, NodeMetrics
from node_agent.unix_proxy import UnixHTTPConnection


def scrape(worker: Worker) -> dict[str, Any]:
    resp = requests.get(f"{worker.url}/metrics", timeout=10)  # no token, like /healthz
    assert resp.status_code == 200, resp.text
    assert resp.headers["Content-Type"].startswith("text/plain; version=0.0.4")
    return families_of(resp.text)


def test_a_podman_job_is_counted_timed_and_logged_with_the_orchestrators_request_id(
    worker: Worker, json_log_lines: io.StringIO
) -> None:
    body = job_body(["sh", "-c", "echo hello"])
    resp = requests.post(
        f"{worker.url}/v1/worker/jobs:run",
        json=body,
        headers={"Authorization": f"Bearer {WORKER_TOKEN}", "X-Request-Id": "req-from-orchestrator"},
        timeout=60,
    )
    assert resp.status_code == 200 and resp.json()["status"] == "completed", resp.text
    assert resp.headers["X-Request-Id"] == "req-from-orchestrator"
    failed = requests.post(
        f"{worker.url}/v1/worker/jobs:run",
        json=job_body(["sh", "-c", "exit 3"]),
        headers={"Authorization": f"Bearer {WORKER_TOKEN}"},
        timeout=60,
    )
    assert failed.json()["status"] == "failed"
    assert requests.post(f"{worker.url}/v1/worker/jobs:run", json=body, timeout=10).status_code == 401

    families = scrape(worker)
    assert value(families, "cynode_node_jobs_total", outcome="completed") == 1
    assert value(families, "cynode_node_jobs_total", outcome="failed") == 1
    assert value(families, "cynode_node_jobs_total", outcome="error") == 0
    assert value(families, "cynode_node_job_duration_seconds_count", outcome="completed") == 1
    duration = value(families, "cynode_node_job_duration_seconds_sum", outcome="completed")
    assert duration is not None and 0 < duration < 60
    assert value(families, "cynode_node_sandbox_run_seconds_count") == 2
    # The podman runtime reports when the container started: the start time is measured, not guessed.
    assert value(families, "cynode_node_sandbox_start_seconds_count") == 2
    start = value(families, "cynode_node_sandbox_start_seconds_sum")
    run = value(families, "cynode_node_sandbox_run_seconds_sum")
    assert start is not None and run is not None and 0 < start < run
    assert value(families, "cynode_node_running_jobs") == 0
    assert value(families, "cynode_node_free_slots") == worker.settings.job_slots
    run_route = {"route": "/v1/worker/jobs:run", "method": "POST"}
    assert value(families, "cynode_node_http_requests_total", status="200", **run_route) == 2
    assert value(families, "cynode_node_http_requests_total", status="401", **run_route) == 1
    assert value(families, "cynode_node_http_request_duration_seconds_count", **run_route) == 3

    lines = [json.loads(line) for line in json_log_lines.getvalue().splitlines()]
    mine = [line for line in lines if line["request_id"] == "req-from-orchestrator"]
    executor_lines = [line for line in mine if line["logger"] == "node_agent.executor"]
    assert executor_lines, lines
    assert all(line["job_id"] == body["job_id"] and line["task_id"] == body["task_id"] for line in executor_lines)
    assert any(line["logger"] == "node_agent.access" and line["status"] == 200 for line in mine)


def test_a_request_without_an_id_gets_one_and_cancel_takes_the_callers(worker: Worker) -> None:
    health = requests.get(f"{worker.url}/healthz", timeout=10)
    assert len(health.headers["X-Request-Id"]) == 32
    unknown = requests.post(
        f"{worker.url}/v1/worker/jobs/{uuid.uuid4()}:cancel",
        headers={"Authorization": f"Bearer {WORKER_TOKEN}", "X-Request-Id": "req-cancel-1"},
        timeout=10,
    )
    assert unknown.status_code == 404 and unknown.headers["X-Request-Id"] == "req-cancel-1"
    families = scrape(worker)
    cancel_route = "/v1/worker/jobs/<job_id>:cancel"
    assert value(families, "cynode_node_http_requests_total", route=cancel_route, status="404") == 1


def test_tokens_and_latency_of_inference_through_a_jobs_proxy_on_the_real_backend(
    start_worker: WorkerFactory, real_backend: InferenceBackend, real_model: str
) -> None:
    worker = start_worker(inference_backend="llamacpp")
    worker.executor.set_inference_backend(real_backend.base_url, (real_model,))
    # The proxy a use_inference job gets, started by the executor itself.
    started = worker.executor.inference.for_job(str(uuid.uuid4()))
    proxy = started.proxy
    assert started.failure is None and proxy is not None
    try:
        for stream in (False, True):
            conn = UnixHTTPConnection(proxy.socket_path, timeout=130)
            try:
                body = json.dumps(
                    {
                        "model": real_model,
                        "prompt": "The capital of France is",
                        "stream": stream,
                        "options": {"num_predict": 6, "temperature": 0},
                    }
                )
                conn.request("POST", "/api/generate", body=body, headers={"Content-Type": "application/json"})
                response = conn.getresponse()
                lines = [json.loads(line) for line in response.read().splitlines() if line.strip()]
            finally:
                conn.close()
            assert response.status == 200 and lines[-1]["done"] is True
            final = lines[-1]
            assert final["eval_count"] > 0 and final["prompt_eval_count"] > 0
        conn = UnixHTTPConnection(proxy.socket_path, timeout=10)
        try:
            conn.request("POST", "/api/pull", body=b"{}")
            assert conn.getresponse().status == 403
        finally:
            conn.close()
    finally:
        proxy.close()

    # A proxy's handler thread counts a request just after its last byte went out: give it a moment.
    deadline = time.monotonic() + 10
    while True:
        families = scrape(worker)
        counted = value(families, "cynode_node_inference_request_duration_seconds_count", endpoint="/api/generate")
        if counted == 2 and value(families, "cynode_node_inference_requests_total", endpoint="other") == 1:
            break
        assert time.monotonic() < deadline, f"the proxy counted {counted} generate requests"
        time.sleep(0.05)
    completion = value(families, "cynode_node_inference_tokens_total", kind="completion")
    prompt = value(families, "cynode_node_inference_tokens_total", kind="prompt")
    assert completion is not None and completion >= 2  # at least one per request
    assert prompt is not None and prompt > 0
    generate = {"endpoint": "/api/generate"}
    assert value(families, "cynode_node_inference_requests_total", status="200", **generate) == 2
    assert value(families, "cynode_node_inference_request_duration_seconds_count", **generate) == 2
    assert value(families, "cynode_node_inference_requests_total", endpoint="other", status="403") == 1
    # The proxy's own readiness checks are not inference requests.
    assert value(families, "cynode_node_inference_requests_total", endpoint="/healthz") is None


def test_token_counts_come_from_the_last_ndjson_line_however_the_stream_is_cut() -> None:
    metrics = NodeMetrics()
    stream = (
        b"".join(json.dumps({"response": "x", "done": False}).encode() + b"\n" for _ in range(5))
        + json.dumps({"done": True, "prompt_eval_count": 7, "eval_count": 5}).encode()
        + b"\n"
    )
    for size in (1, 3, 17, len(stream)):
        tail = LastLine()
        for i in range(0, len(stream), size):
            tail.feed(stream[i : i + size])
        metrics.inference_usage(tail.value)

    def tokens() -> dict[str, float]:
        samples = metrics.inference_tokens.collect()[0].samples
        return {s.labels["kind"]: s.value for s in samples if s.name.endswith("_total")}

    assert tokens() == {"prompt": 28.0, "completion": 20.0}
    for junk in (b"not json", b'{"eval_count": true}', b"[1, 2]", b""):
        metrics.inference_usage(junk)
    assert tokens() == {"prompt": 28.0, "completion": 20.0}


def test_two_workers_in_one_process_keep_their_own_registries(start_worker: WorkerFactory) -> None:
    first, second = start_worker(), start_worker()
    requests.get(f"{first.url}/healthz", timeout=10)
    assert value(scrape(second), "cynode_node_http_requests_total", route="/healthz") is None
    assert value(scrape(first), "cynode_node_http_requests_total", route="/healthz") == 1
