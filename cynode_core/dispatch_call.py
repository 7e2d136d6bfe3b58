"""One Worker API call (node contract 5) and how its outcome is classified."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

import requests

# Keys of a RunJobResponse that are stored; the worker's other keys are dropped (contract 6.3).
RESULT_KEYS = (
    "version",
    "task_id",
    "job_id",
    "status",
    "exit_code",
    "stdout",
    "stderr",
    "started_at",
    "ended_at",
    "truncated",
    "sba_result",
    "step_executor_result",
    "artifacts",
    "run_diagnostics",
)


@dataclass(frozen=True)
class WorkerCall:
    url: str
    token: str
    body: dict[str, Any]
    timeout: float
    request_id: str | None = None


@dataclass(frozen=True)
class Outcome:
    result: dict[str, Any] | None = None
    error: str = ""
    retryable: bool = False
    retry_busy: bool = False
    node_down: bool = False
    # Why no result came (a metrics label): unreachable, timeout, transport, http_status, bad_response, busy.
    reason: str = ""


_session = requests.Session()


def call_worker(call: WorkerCall) -> Outcome:
    """POST jobs:run; classify transport errors (retryable), busy (503) and bad answers (final)."""
    headers = {"Authorization": f"Bearer {call.token}"}
    if call.request_id:
        headers["X-Request-Id"] = call.request_id
    try:
        resp = _session.post(
            f"{call.url.rstrip('/')}/v1/worker/jobs:run",
            json=call.body,
            headers=headers,
            timeout=(5.0, call.timeout),
        )
    except requests.ConnectionError as exc:
        return Outcome(
            error=f"worker api call failed: connection refused or reset ({type(exc).__name__})",
            retryable=True,
            node_down=True,
            reason="unreachable",
        )
    except requests.Timeout:
        return Outcome(error="worker api call failed: timeout", retryable=True, reason="timeout")
    except requests.RequestException as exc:
        return Outcome(error=f"worker api call failed: {type(exc).__name__}", reason="transport")
    if resp.status_code == 503:
        return Outcome(error="worker api has no free job slot", retry_busy=True, reason="busy")
    if resp.status_code != 200:
        return Outcome(error=f"worker api returned {resp.status_code} {resp.reason}", reason="http_status")
    try:
        body = resp.json()
    except ValueError:
        return Outcome(error="worker api returned a body that is not JSON", reason="bad_response")
    if not isinstance(body, dict):
        return Outcome(error="worker api returned a body that is not a JSON object", reason="bad_response")
    if body.get("version") != 1:
        return Outcome(error=f"unsupported worker response version: {body.get('version')}", reason="bad_response")
    result = {k: body[k] for k in RESULT_KEYS if k in body}
    result.setdefault("exit_code", 0)
    return Outcome(result=result)


def dispatch_error(message: str) -> str:
    """The stored result of a dispatch failure, keys in upstream's order."""
    return json.dumps({"error": message, "status": "failed", "version": 1})
