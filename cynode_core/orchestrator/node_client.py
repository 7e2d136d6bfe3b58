"""The orchestrator's one client of a node's Worker API: run a job, cancel a job, probe ``/readyz``.

Run and cancel carry the node's bearer token and the task's request id; a
run's outcome is classified here (transport errors retryable, 503 busy,
anything but a 200 ``RunJobResponse`` final) so the dispatcher only decides
what to do next (docs/wire_contract.md#worker-run-job). A node is not
trusted further than its answer: no call follows a redirect, and no more
than :data:`MAX_ANSWER_BYTES` of a body is ever read (decisions.md Dispatch 8).
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass

import requests

from cynode_core.contract.job import BadResult, RunJobRequest, RunJobResponse
from cynode_core.logs import REQUEST_ID_HEADER

log = logging.getLogger(__name__)

CANCEL_TIMEOUT = 10.0
PROBE_TIMEOUT = 2.0
# The most of a run's answer read from a node. The answer carries stdout and
# stderr, each capped by the node (256 KiB by default), which JSON escaping
# can grow up to sixfold, plus small fields: 16 MiB leaves room for a node
# whose cap was raised a few times over, and bounds what a hostile node can
# make the orchestrator hold.
MAX_ANSWER_BYTES = 16 * 1024 * 1024
_READ_CHUNK = 64 * 1024


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
        with _session.post(
            f"{node.url.rstrip('/')}/v1/worker/jobs:run",
            json=request.to_json(),
            headers=node.headers(request_id),
            timeout=(5.0, timeout),
            allow_redirects=False,
            stream=True,
        ) as resp:
            return _run_outcome(resp)
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


def _run_outcome(resp: requests.Response) -> Outcome:
    """What a node's answer to jobs:run means; its body is read only for a 200, and only up to the cap."""
    if resp.status_code == 503:
        return Outcome(error="worker api has no free job slot", retry_busy=True, reason="busy")
    if 300 <= resp.status_code < 400:
        return Outcome(
            error=f"worker api returned {resp.status_code} {resp.reason} (redirects are not followed)",
            reason="http_status",
        )
    if resp.status_code != 200:
        return Outcome(error=f"worker api returned {resp.status_code} {resp.reason}", reason="http_status")
    raw = _read_capped(resp, MAX_ANSWER_BYTES)
    if raw is None:
        return Outcome(error=f"worker api returned a body over {MAX_ANSWER_BYTES} bytes", reason="bad_response")
    try:
        body = json.loads(raw)
    except (ValueError, RecursionError):
        return Outcome(error="worker api returned a body that is not JSON", reason="bad_response")
    if not isinstance(body, dict):
        return Outcome(error="worker api returned a body that is not a JSON object", reason="bad_response")
    try:
        return Outcome(result=RunJobResponse.from_json(body))
    except BadResult as exc:
        return Outcome(error=str(exc), reason="bad_response")


def _read_capped(resp: requests.Response, limit: int) -> bytes | None:
    """The (decoded) body, or None as soon as it is known to be longer than ``limit``."""
    declared = resp.headers.get("Content-Length", "")
    if declared.isdigit() and int(declared) > limit:
        return None
    body = bytearray()
    for chunk in resp.iter_content(_READ_CHUNK):
        body += chunk
        if len(body) > limit:
            return None
    return bytes(body)


def cancel_job(node: NodeEndpoint, job_id: str, request_id: str | None = None) -> bool:
    """Ask a node to stop a job; False (logged) when the node could not be reached or refused.

    Only the status counts: the body is never read.
    """
    try:
        with _session.post(
            f"{node.url.rstrip('/')}/v1/worker/jobs/{job_id}:cancel",
            headers=node.headers(request_id),
            timeout=CANCEL_TIMEOUT,
            allow_redirects=False,
            stream=True,
        ) as resp:
            status = resp.status_code
    except requests.RequestException as exc:
        log.warning("could not reach node to cancel job %s: %s", job_id, type(exc).__name__)
        return False
    if status != 200:
        log.warning("node answered %s to the cancel of job %s", status, job_id)
        return False
    return True


def probe_readyz(url: str) -> tuple[bool, str]:
    """``GET <url>/readyz``: ready or not, and why in the orchestrator's own words.

    Only the status counts; the node's body is never read, so nothing a node
    writes there can reach an answer of the orchestrator (its own ``/readyz``).
    """
    try:
        target = f"{url.rstrip('/')}/readyz"
        with requests.get(target, timeout=PROBE_TIMEOUT, allow_redirects=False, stream=True) as resp:
            status = resp.status_code
    except requests.RequestException as exc:
        return False, f"unreachable ({type(exc).__name__})"
    return status == 200, f"readyz answered {status}"
