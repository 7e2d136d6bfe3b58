"""The node's standing with the control plane (docs/wire_contract.md#control-plane).

Registration (retried while the orchestrator answers 5xx, 429 or not at all),
the node configuration, config acks, the periodic capability reports, and
registering again when the node JWT is refused, which brings a new Worker
API token and a new ``config_version`` to ack. The start-up sequence that
uses it is ``manager``'s.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from typing import Any, NoReturn

from cynode_core.contract.job import format_time
from node_agent.client import ControlPlaneClient, ControlPlaneError, OrchestratorUnreachable
from node_agent.job_result import utc_now
from node_agent.node_config import NodeConfig, parse_node_config
from node_agent.readiness import Readiness

log = logging.getLogger(__name__)

REGISTER_MAX_BACKOFF = 10.0


class StartupError(Exception):
    """A start-up step failed; the message names the step and the cause."""


class StopRequested(Exception):
    """A signal arrived during start-up."""


class ControlSession:
    """One node's calls to the control plane, and what they established (slug, config version)."""

    def __init__(
        self,
        client: ControlPlaneClient,
        psk: str,
        *,
        node_slug: str,
        readiness: Readiness,
        capability: Callable[[], dict[str, Any]],
        stop: threading.Event,
    ) -> None:
        self.client = client
        self.node_slug = node_slug
        self.config_version = ""
        # Set once the Worker API serves: how a rotated token reaches it.
        self.set_worker_token: Callable[[str], None] | None = None
        self._psk = psk
        self._readiness = readiness
        self._capability = capability
        self._stop = stop
        self._rejoin_lock = threading.Lock()

    # ------------------------------------------------------------- start-up

    def register(self, timeout: float) -> None:
        """Register with the PSK, retrying transient failures with backoff for up to ``timeout`` s."""
        deadline = time.monotonic() + timeout
        delay = 1.0
        while True:
            if self._stop.is_set():
                raise StopRequested()
            try:
                self.client.register(self._psk, self._capability())
                return
            except ControlPlaneError as exc:
                # 429: the orchestrator's per-address registration limit, over within a minute.
                transient = isinstance(exc, OrchestratorUnreachable) or (exc.status or 0) >= 500 or exc.status == 429
                if not transient or time.monotonic() + delay > deadline:
                    raise StartupError(str(exc)) from exc
                log.warning("%s; retrying in %g s", exc, delay)
                if self._stop.wait(delay):
                    raise StopRequested() from exc
                delay = min(delay * 2, REGISTER_MAX_BACKOFF)

    def fetch_config(self) -> NodeConfig:
        """The node configuration; its version and slug are remembered for the acks."""
        try:
            config = parse_node_config(self.client.fetch_config())
        except ControlPlaneError as exc:
            raise StartupError(str(exc)) from exc
        self.config_version = config.config_version
        self.node_slug = config.node_slug or self.node_slug
        log.info("fetched node configuration %s", self.config_version or "(no config_version)")
        return config

    # ------------------------------------------------------------ config ack

    def ack(self, status: str, error: dict[str, str] | None = None) -> None:
        """Acknowledge the configuration (docs/wire_contract.md#node-config-ack).

        A failed ``applied`` ack makes the node unready and raises
        ``StartupError``; a failed ``failed`` ack is only logged.
        """
        ack: dict[str, Any] = {
            "version": 1,
            "node_slug": self.node_slug,
            "config_version": self.config_version,
            "ack_at": format_time(utc_now()),
            "status": status,
        }
        if error is not None:
            ack["error"] = error
        try:
            self.client.ack_config(ack)
        except ControlPlaneError as exc:
            if status == "failed":
                log.error("could not send the failed config ack: %s", exc)
                return
            self._readiness.set_not_ready("config ack failed")
            raise StartupError(str(exc)) from exc
        log.info("config %s acknowledged: %s", self.config_version or "(none)", status)

    def fail_config(self, error_type: str, message: str) -> NoReturn:
        """Send a ``failed`` ack with the reason, then end start-up with it."""
        self.ack("failed", {"type": error_type, "message": message})
        raise StartupError(message)

    # ----------------------------------------------------- capability reports

    def send_report(self) -> None:
        """One capability report; a refused node JWT means: register again, then report once more."""
        self._with_rejoin("capability report", lambda: self.client.report_capability(self._capability()))

    def report_job(self, job_id: str, report: dict[str, Any]) -> int | None:
        """Send one job report: 204, the status it was refused with, or None for no answer."""
        return self._with_rejoin("job report", lambda: self.client.report_job(job_id, report))

    def _with_rejoin(self, what: str, call: Callable[[], None]) -> int | None:
        """``call`` once more after registering again when the node JWT is refused; the last status."""
        used = self.client.bootstrap.node_jwt
        for attempt in (1, 2):
            try:
                call()
                return 204
            except ControlPlaneError as exc:
                if exc.status != 401 or attempt == 2 or self.set_worker_token is None:
                    if what == "capability report" or exc.status == 401:
                        log.warning("%s", exc)
                    return exc.status
            # The node JWT expired (there is no refresh): register again, then retry once. Job
            # reports refused at the same moment register once, not once per job.
            with self._rejoin_lock:
                if self.client.bootstrap.node_jwt == used:
                    log.info("node JWT refused on a %s; registering again", what)
                    try:
                        self._rejoin()
                    except (ControlPlaneError, StartupError) as exc:
                        log.warning("%s", exc)
                        return None
        return None

    def report_loop(self, interval: float) -> None:
        """Report every ``interval`` s until the stop event is set."""
        while not self._stop.wait(interval):
            self.send_report()

    def _rejoin(self) -> None:
        """Register again, then take the new configuration: the orchestrator rotates the
        Worker API token and issues a new config_version, which must be acked."""
        assert self.set_worker_token is not None
        self.client.register(self._psk, self._capability())
        config = parse_node_config(self.client.fetch_config())
        self.config_version = config.config_version
        if not config.worker_token:
            log.error("the new node configuration has no Worker API token; staying unready")
            self._readiness.set_not_ready("configuration without a Worker API token")
            return
        self.set_worker_token(config.worker_token)
        self.ack("applied")
        log.info("registered again; Worker API token rotated, config %s applied", self.config_version)
