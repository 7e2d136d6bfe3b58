"""The node's control-plane client (docs/wire_contract.md#control-plane).

Registration trades the PSK for a node JWT and the bootstrap payload; every
later call goes to the URLs that payload names, with the JWT as bearer. The
PSK and the tokens never appear in a log line or an exception message.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import requests

log = logging.getLogger(__name__)

READYZ_PROBE_TIMEOUT = 2.0
READYZ_POLL_INTERVAL = 1.0
QUICK_READYZ_PAUSE, QUICK_READYZ_SECONDS = 0.1, 10.0


class ControlPlaneError(Exception):
    """A control-plane call failed; ``status`` and ``detail`` come from the answer when there was one."""

    def __init__(self, message: str, *, status: int | None = None, detail: str | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.detail = detail


class OrchestratorUnreachable(ControlPlaneError):
    """No HTTP answer at all (connection refused, timeout, DNS)."""


class BootstrapError(ControlPlaneError):
    """The registration answer is not a usable ``node_bootstrap_payload_v1``."""


@dataclass(frozen=True)
class Bootstrap:
    """The parts of the bootstrap payload the node uses."""

    node_jwt: str = field(repr=False)
    base_url: str
    registration_url: str
    report_url: str
    config_url: str
    expires_at: str = ""


def json_object(value: Any) -> dict[str, Any]:
    """``value`` when it is a JSON object, else an empty one (absent and null read as empty)."""
    return value if isinstance(value, dict) else {}


def validate_bootstrap(payload: Any) -> Bootstrap:
    """Check a bootstrap payload (docs/wire_contract.md#node-register); return its URLs and JWT.

    Rejected: ``version`` other than 1, or an empty ``auth.node_jwt``,
    ``orchestrator.endpoints.node_report_url`` or ``node_config_url``.
    """
    if not isinstance(payload, dict):
        raise BootstrapError("bootstrap payload is not a JSON object")
    if payload.get("version") != 1 or isinstance(payload.get("version"), bool):
        raise BootstrapError(f"unsupported bootstrap version: {payload.get('version')!r}")
    orchestrator = json_object(payload.get("orchestrator"))
    endpoints = json_object(orchestrator.get("endpoints"))
    auth = json_object(payload.get("auth"))

    def text(obj: dict[str, Any], key: str) -> str:
        value = obj.get(key)
        return value if isinstance(value, str) else ""

    jwt = text(auth, "node_jwt")
    report_url = text(endpoints, "node_report_url")
    config_url = text(endpoints, "node_config_url")
    if not jwt:
        raise BootstrapError("bootstrap payload has no auth.node_jwt")
    if not report_url:
        raise BootstrapError("bootstrap payload has no orchestrator.endpoints.node_report_url")
    if not config_url:
        raise BootstrapError("bootstrap payload has no orchestrator.endpoints.node_config_url")
    return Bootstrap(
        node_jwt=jwt,
        base_url=text(orchestrator, "base_url").rstrip("/"),
        registration_url=text(endpoints, "worker_registration_url"),
        report_url=report_url,
        config_url=config_url,
        expires_at=text(auth, "expires_at"),
    )


def _problem_detail(response: requests.Response) -> str | None:
    try:
        body = response.json()
    except ValueError:
        return None
    if isinstance(body, dict) and isinstance(body.get("detail"), str):
        return body["detail"]
    return None


class ControlPlaneClient:
    """Calls the orchestrator's control plane for one node."""

    def __init__(self, orchestrator_url: str, *, timeout: float, session: requests.Session | None = None) -> None:
        self._base = orchestrator_url.rstrip("/")
        self._timeout = timeout
        self._session = session or requests.Session()
        self._bootstrap: Bootstrap | None = None

    @property
    def bootstrap(self) -> Bootstrap:
        """The bootstrap of the last registration; ``register`` first."""
        if self._bootstrap is None:
            raise ControlPlaneError("the node has not registered yet")
        return self._bootstrap

    def close(self) -> None:
        self._session.close()

    # ----------------------------------------------------------- readiness

    def probe_readyz(self, timeout: float = READYZ_PROBE_TIMEOUT) -> int | None:
        """Status of ``GET <orchestrator>/readyz``, or ``None`` when nothing answered."""
        try:
            response = self._session.get(f"{self._base}/readyz", timeout=timeout)
        except requests.RequestException:
            return None
        response.close()
        return response.status_code

    def wait_reachable(
        self,
        limit: float,
        *,
        stop: threading.Event | None = None,
        interval: float = READYZ_POLL_INTERVAL,
        on_wait: Callable[[float], None] | None = None,
    ) -> None:
        """Poll ``/readyz`` until it answers 200 or 503 (both mean reachable); give up after ``limit`` s.

        ``on_wait(elapsed)`` is called after each failed probe (for progress
        logs). Raises ``OrchestratorUnreachable`` on giving up, or when
        ``stop`` is set.
        """
        started = time.monotonic()
        while True:
            status = self.probe_readyz()
            if status in (200, 503):
                return
            elapsed = time.monotonic() - started
            if elapsed >= limit:
                shown = "no answer" if status is None else f"HTTP {status}"
                raise OrchestratorUnreachable(
                    f"orchestrator at {self._base} not reachable after {limit:g} s (last probe: {shown})"
                )
            if on_wait is not None:
                on_wait(elapsed)
            # Often at first (a stack whose parts start together), then every ``interval``.
            pause = min(QUICK_READYZ_PAUSE, interval) if elapsed < QUICK_READYZ_SECONDS else interval
            if stop is not None and stop.wait(pause):
                raise OrchestratorUnreachable("stopped while waiting for the orchestrator")
            if stop is None:
                time.sleep(pause)

    # -------------------------------------------------------------- calls

    def _call(
        self,
        action: str,
        method: str,
        url: str,
        *,
        ok: tuple[int, ...],
        json_body: Any = None,
        token: str | None = None,
    ) -> requests.Response:
        headers = {"Accept": "application/json"}
        if token is not None:
            headers["Authorization"] = f"Bearer {token}"
        try:
            response = self._session.request(method, url, json=json_body, headers=headers, timeout=self._timeout)
        except requests.RequestException as exc:
            # The exception text names the URL and the cause, never headers or body.
            raise OrchestratorUnreachable(f"{action} failed: {type(exc).__name__}: {exc}") from exc
        if response.status_code not in ok:
            detail = _problem_detail(response)
            message = f"{action} failed: HTTP {response.status_code}" + (f" {detail}" if detail else "")
            raise ControlPlaneError(message, status=response.status_code, detail=detail)
        return response

    def register(self, psk: str, capability: dict[str, Any]) -> Bootstrap:
        """``POST /v1/nodes/register`` with the PSK; 200 or 201 → the validated bootstrap."""
        url = (
            self._bootstrap.registration_url
            if self._bootstrap and self._bootstrap.registration_url
            else (f"{self._base}/v1/nodes/register")
        )
        response = self._call(
            "registration", "POST", url, ok=(200, 201), json_body={"psk": psk, "capability": capability}
        )
        try:
            payload = response.json()
        except ValueError as exc:
            raise BootstrapError("registration answer is not JSON") from exc
        self._bootstrap = validate_bootstrap(payload)
        log.info(
            "registered with the orchestrator (HTTP %d); node JWT expires %s",
            response.status_code,
            self._bootstrap.expires_at or "(not stated)",
        )
        return self._bootstrap

    def report_capability(self, report: dict[str, Any]) -> None:
        """``POST`` the capability report to the bootstrap ``node_report_url``; expects 204."""
        boot = self.bootstrap
        self._call("capability report", "POST", boot.report_url, ok=(204,), json_body=report, token=boot.node_jwt)

    def fetch_config(self) -> dict[str, Any]:
        """``GET`` the bootstrap ``node_config_url``: the ``node_configuration_payload_v1``."""
        boot = self.bootstrap
        response = self._call("config fetch", "GET", boot.config_url, ok=(200,), token=boot.node_jwt)
        try:
            payload = response.json()
        except ValueError as exc:
            raise ControlPlaneError("config fetch failed: the answer is not JSON", status=200) from exc
        if not isinstance(payload, dict):
            raise ControlPlaneError("config fetch failed: the answer is not a JSON object", status=200)
        return payload

    def report_job(self, job_id: str, report: dict[str, Any]) -> None:
        """``POST`` a job report to ``<orchestrator>/v1/nodes/jobs/{job_id}/report``; expects 204."""
        boot = self.bootstrap
        url = f"{boot.base_url}/v1/nodes/jobs/{job_id}/report"
        self._call("job report", "POST", url, ok=(204,), json_body=report, token=boot.node_jwt)

    def ack_config(self, ack: dict[str, Any]) -> None:
        """``POST`` a ``node_config_ack_v1`` to the bootstrap ``node_config_url``; 204 or 200."""
        boot = self.bootstrap
        self._call("config ack", "POST", boot.config_url, ok=(204, 200), json_body=ack, token=boot.node_jwt)
