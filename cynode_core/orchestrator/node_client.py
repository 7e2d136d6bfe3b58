"""The orchestrator's one client of a node's Worker API: run a job, cancel a job.

Both calls carry the node's bearer token and the task's request id; a run's
outcome is classified here (transport errors retryable, 503 busy, anything
but a 200 ``RunJobResponse`` final) so the dispatcher only decides what to
do next (docs/wire_contract.md#worker-run-job).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import requests

from cynode_core.contract.job import BadResult, RunJobRequest, RunJobResponse
from cynode_core.logs import REQUEST_ID_HEADER

log = logging.getLogger(__name__)

CANCEL_TIMEOUT = 10.0


@dataclass(frozen=True)
class NodeEndpoint:
    """Where a node's Worker API answers and the token it accepts."""

    url: str
    token: str

    def headers(self, request_id: str | None) -> dict[str, str]:
        headers = {"Authorization": f"Bearer {self.token}"}
        if request_id:
            headers[REQUEST_ID_HEADER] = request_id
        return headers


@dataclass(frozen=True)
class Outcome:
    result: RunJobResponse | None = None
    error: str = ""
    retryable: bool = False
    retry_busy: bool = False
    node_down: bool = False
    # Why no result came (a metrics label): unreachable, timeout, transport, http_status, bad_response, busy.
    reason: str = ""


_session = requests.Session()


def run_job(node: NodeEndpoint, request: RunJobRequest, timeout: float, request_id: str | None = None) -> Outcome:
    """POST jobs:run and wait for the run's answer (or the timeout)."""
    try:
        resp = _session.post(
            f"{node.url.rstrip('/')}/v1/worker/jobs:run",
            json=request.to_json(),
            headers=node.headers(request_id),
            timeout=(5.0, timeout),
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
    try:
        return Outcome(result=RunJobResponse.from_json(body))
    except BadResult as exc:
        return Outcome(error=str(exc) if "version" in str(exc) else f"worker api returned {exc}", reason="bad_response")


def cancel_job(node: NodeEndpoint, job_id: str, request_id: str | None = None) -> bool:
    """Ask a node to stop a job; False (logged) when the node could not be reached or refused."""
    try:
        resp = _session.post(
            f"{node.url.rstrip('/')}/v1/worker/jobs/{job_id}:cancel",
            headers=node.headers(request_id),
            timeout=CANCEL_TIMEOUT,
        )
    except requests.RequestException as exc:
        log.warning("could not reach node to cancel job %s: %s", job_id, type(exc).__name__)
        return False
    if resp.status_code != 200:
        log.warning("node answered %s to the cancel of job %s", resp.status_code, job_id)
        return False
    return True
