"""What a ``use_inference`` job gets: its own inference proxy, or a note that the node has none.

See docs/wire_contract.md#inference-proxy. The proxy of a job lives under
``<proxy root>/<job_id>`` for the length of its run; a proxy that cannot
start or answer its health check makes the job a failed run, answered 200
like any other.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

from cynode_core.contract import SandboxOutcome
from cynode_core.contract.job import RunStatus
from node_agent.inference_policy import InferencePolicy
from node_agent.inference_proxy import InferenceProxy, loopback_upstream
from node_agent.metrics import NodeMetrics
from node_agent.unix_proxy import READY_TIMEOUT, ProxyError

log = logging.getLogger(__name__)

NO_INFERENCE_NOTE = (
    "[cynode] use_inference was requested, but this node has no inference backend: "
    "the job ran without an inference proxy (no INFERENCE_PROXY_URL)\n"
)


@dataclass
class JobProxy:
    """How a ``use_inference`` job is to run: with ``proxy``, or with ``stderr_note`` first, or not (``failure``)."""

    proxy: InferenceProxy | None = None
    stderr_note: bytes = b""
    failure: SandboxOutcome | None = None


class JobInference:
    """The node's inference backend as jobs see it: one proxy per job, on a Unix socket."""

    def __init__(self, proxy_root: Path, metrics: NodeMetrics | None = None) -> None:
        self.proxy_root = proxy_root
        self.metrics = metrics
        self.ready_timeout = READY_TIMEOUT
        self._backend_url: str | None = None
        self._policy = InferencePolicy(models=())

    @property
    def backend_url(self) -> str | None:
        return self._backend_url

    def set_backend(self, base_url: str | None, policy: InferencePolicy) -> None:
        """Proxy to this loopback Ollama-API URL from now on, under ``policy`` (``None``: the node has no backend)."""
        self._backend_url = base_url.rstrip("/") if base_url else None
        self._policy = policy
        if self._backend_url is not None:
            try:
                loopback_upstream(self._backend_url)
            except ProxyError as exc:
                # Proxy traffic never leaves the node: each use_inference job will fail with this.
                log.warning("use_inference jobs will fail: %s", exc)

    def for_job(self, key: str) -> JobProxy:
        """Start job ``key``'s proxy; without a backend, the job runs plainly and its stderr says so.

        The reference implementation (CyNodeAI) runs such a job plainly
        without a word; the note saves the job's author a search.
        """
        if self._backend_url is None:
            log.warning(
                "job %s: use_inference requested, but this node has no inference backend; "
                "running it without an inference proxy",
                key,
            )
            return JobProxy(stderr_note=NO_INFERENCE_NOTE.encode())
        try:
            proxy = InferenceProxy(
                self.proxy_root / key, self._backend_url, policy=self._policy, name=key, metrics=self.metrics
            )
            proxy.start()
        except Exception as exc:  # noqa: BLE001 - a failed job, answered 200 (wire_contract.md#inference-proxy)
            log.warning("job %s: inference proxy did not start: %s", key, exc)
            return JobProxy(failure=proxy_failure(f"proxy start: {exc}\n"))
        try:
            proxy.wait_ready(self.ready_timeout)
        except ProxyError as exc:
            proxy.close()
            log.warning("job %s: inference proxy not healthy: %s", key, exc)
            return JobProxy(failure=proxy_failure(f"proxy readiness: {exc}\n"))
        return JobProxy(proxy=proxy)


def proxy_failure(stderr: str) -> SandboxOutcome:
    """A job that failed before its container, because one of its proxies did not come up."""
    return SandboxOutcome(status=RunStatus.FAILED, exit_code=-1, stderr=stderr.encode())
