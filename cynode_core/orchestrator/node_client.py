"""The orchestrator's one client of a node's Worker API: run or start a job, cancel a job, probe ``/readyz``.

Run and cancel carry the node's bearer token and the task's request id; a
run's outcome is classified here (transport errors retryable, 503 busy,
anything but a 200 ``RunJobResponse`` final; a call lost after it went out
may have left the job running) so the dispatcher only decides what to do
next (docs/wire_contract.md#worker-run-job). A cancel is delivered until the
node answers it (:func:`deliver_cancel`). A node is not trusted further
than its answer: no call follows a redirect, and no more than
:data:`MAX_ANSWER_BYTES` of a body is ever read (decisions.md Dispatch 8).
"""

from __future__ import annotations

import contextvars
import enum
import json
import logging
import threading
import time
from dataclasses import dataclass

import requests
from urllib3.exceptions import ConnectTimeoutError, MaxRetryError, NewConnectionError

from cynode_core.contract.job import BadResult, RunJobRequest, RunJobResponse
from cynode_core.logs import REQUEST_ID_HEADER
from cynode_core.orchestrator.settings import OrchestratorSettings

log = logging.getLogger(__name__)

CANCEL_TIMEOUT = 10.0
# A jobs:start answers at once (202, or a finished job's stored result).
START_TIMEOUT = 30.0
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
    # The call was lost after it went out (reset, timeout, answer cut off): the node may be running the job.
    maybe_running: bool = False
    # The node's host refused the connection: nothing listens on the Worker API port.
    refused: bool = False
    # jobs:start: the node took the job and reports its end to the control plane (202).
    accepted: bool = False
    # jobs:start: the node does not serve it (404, 405); it speaks jobs:run only.
    unsupported: bool = False


_session = requests.Session()


def run_job(node: NodeEndpoint, request: RunJobRequest, timeout: float, request_id: str | None = None) -> Outcome:
    """POST jobs:run and wait for the run's answer (or the timeout)."""
    return _post_job(node, "jobs:run", request, timeout, request_id)


def start_job(node: NodeEndpoint, request: RunJobRequest, request_id: str | None = None) -> Outcome:
    """POST jobs:start: the node takes the job and reports back (``accepted``), or answers a finished one at once.

    ``request.report`` carries the lease the node echoes in its reports
    (docs/wire_contract.md#worker-start-job). A node that does not serve
    ``jobs:start`` (404, 405) answers ``unsupported``: ask it with jobs:run.
    """
    return _post_job(node, "jobs:start", request, START_TIMEOUT, request_id)


def _post_job(
    node: NodeEndpoint, action: str, request: RunJobRequest, timeout: float, request_id: str | None
) -> Outcome:
    try:
        with _session.post(
            f"{node.url.rstrip('/')}/v1/worker/{action}",
            json=request.to_json(),
            headers=node.headers(request_id),
            timeout=(5.0, timeout),
            allow_redirects=False,
            stream=True,
        ) as resp:
            if action == "jobs:start" and resp.status_code in (202, 404, 405):
                return Outcome(accepted=True) if resp.status_code == 202 else Outcome(unsupported=True)
            return _run_outcome(resp)
    except requests.ConnectionError as exc:
        return Outcome(
            error=f"worker api call failed: connection refused or reset ({type(exc).__name__})",
            retryable=True,
            node_down=True,
            reason="unreachable",
            maybe_running=not _never_sent(exc),
            refused=_refused(exc),
        )
    except requests.Timeout:
        return Outcome(error="worker api call failed: timeout", retryable=True, reason="timeout", maybe_running=True)
    except requests.exceptions.ChunkedEncodingError as exc:  # the node was answering: it has the result
        error = f"worker api call failed: {type(exc).__name__}"
        return Outcome(error=error, retryable=True, reason="transport", maybe_running=True)
    except requests.RequestException as exc:
        return Outcome(error=f"worker api call failed: {type(exc).__name__}", reason="transport")


def _never_sent(exc: requests.ConnectionError) -> bool:
    """Whether the connection failed before the request could go out (refused, or no connection in time)."""
    if isinstance(exc, requests.ConnectTimeout):
        return True
    cause = exc.args[0] if exc.args else None
    return isinstance(cause, MaxRetryError) and isinstance(cause.reason, (NewConnectionError, ConnectTimeoutError))


def _refused(exc: requests.ConnectionError) -> bool:
    """Whether the host answered the connection attempt with a refusal (not a timeout, not a reset)."""
    cause = exc.args[0] if exc.args else None
    reason = cause.reason if isinstance(cause, MaxRetryError) else None
    if not isinstance(reason, NewConnectionError):
        return False
    inner = reason.__cause__ or reason.__context__
    return isinstance(inner, ConnectionRefusedError)


def run_timeout(settings: OrchestratorSettings, job_timeout: int = 0) -> float:
    """How long a jobs:run call waits: the job's timeout (0: the default) plus the margin (decisions.md Dispatch 7).

    It is also how long a node may go on running a job after a call of it
    went out: the node ends the job on its own timeout.
    """
    return (job_timeout or settings.job_timeout_seconds) + settings.dispatch_http_margin


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


class CancelAnswer(enum.Enum):
    """What came of a cancel (docs/wire_contract.md#worker-cancel)."""

    STOPPED = "stopped"  # 200: the node stopped the job, or it had ended
    NOT_STARTED = "not_started"  # 404: the node has not had the job, and now never starts it
    REFUSED = "refused"  # any other status
    UNREACHABLE = "unreachable"  # no answer

    @property
    def reached(self) -> bool:
        """The node answered for the job: from now on it does not run it."""
        return self in (CancelAnswer.STOPPED, CancelAnswer.NOT_STARTED)


def cancel_job(node: NodeEndpoint, job_id: str, request_id: str | None = None) -> CancelAnswer:
    """Ask a node once to stop a job; a refusal is logged. Only the status counts: the body is never read."""
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
        log.debug("could not reach node to cancel job %s: %s", job_id, type(exc).__name__)
        return CancelAnswer.UNREACHABLE
    if status == 200:
        return CancelAnswer.STOPPED
    if status == 404:
        return CancelAnswer.NOT_STARTED
    log.warning("node answered %s to the cancel of job %s", status, job_id)
    return CancelAnswer.REFUSED


def deliver_cancel(node: NodeEndpoint, job_id: str, *, within: float, request_id: str | None = None) -> CancelAnswer:
    """Ask a node to stop a job until it answers, for at most ``within`` seconds (0.5 s apart, doubling to 10 s)."""
    deadline, delay = time.monotonic() + within, 0.5
    while True:
        answer = cancel_job(node, job_id, request_id)
        if answer is not CancelAnswer.UNREACHABLE:
            return answer
        if time.monotonic() + delay > deadline:
            log.warning("job %s: the node did not answer its cancel within %.0f s", job_id, within)
            return answer
        if delay == 0.5:
            log.warning("job %s: the node cannot be reached to cancel it; trying again", job_id)
        time.sleep(delay)
        delay = min(delay * 2, 10.0)


def cancel_in_background(
    node: NodeEndpoint, job_id: str, *, within: float, request_id: str | None = None
) -> threading.Thread:
    """:func:`deliver_cancel` in a daemon thread that keeps the caller's log context."""
    context = contextvars.copy_context()
    thread = threading.Thread(
        target=context.run,
        args=(deliver_cancel, node, job_id),
        kwargs={"within": within, "request_id": request_id},
        name=f"cancel-{job_id}",
        daemon=True,
    )
    thread.start()
    return thread


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
