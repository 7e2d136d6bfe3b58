"""The limits a node puts on a job: its request size and its timeout (docs/wire_contract.md#worker-limits).

Each is the smallest of the node's own setting, the contract's ceiling and
the ``constraints`` of the configuration the orchestrator delivered, which
can only lower them.
"""

from __future__ import annotations

from node_agent.settings import NodeSettings

# No configuration can raise the request cap above this (docs/wire_contract.md#worker-limits).
CONTRACT_MAX_REQUEST_BYTES = 10 * 1024 * 1024


class JobLimits:
    """A node's job limits: its settings, lowered by the delivered configuration's constraints."""

    def __init__(self, settings: NodeSettings) -> None:
        self._settings = settings
        self._max_request_bytes: int | None = None
        self._max_job_timeout: int | None = None

    def apply_constraints(self, *, max_request_bytes: int | None, max_job_timeout_seconds: int | None) -> None:
        """Apply the node configuration's ``constraints``; ``None`` or <= 0 = unset (wire_contract.md#worker-limits)."""
        self._max_request_bytes = max_request_bytes if max_request_bytes and max_request_bytes > 0 else None
        self._max_job_timeout = max_job_timeout_seconds if (max_job_timeout_seconds or 0) > 0 else None

    @property
    def max_request_bytes(self) -> int:
        """Effective request body cap: min(local setting, config constraint, 10 MiB)."""
        caps = [self._settings.max_request_bytes, CONTRACT_MAX_REQUEST_BYTES]
        if self._max_request_bytes is not None:
            caps.append(self._max_request_bytes)
        return min(caps)

    def effective_timeout(self, requested: int) -> int:
        """min(requested if > 0 else default, max, config constraint) (docs/wire_contract.md#worker-timeout)."""
        timeout = requested if requested > 0 else self._settings.default_timeout_seconds
        caps = [timeout, self._settings.max_timeout_seconds]
        if self._max_job_timeout is not None:
            caps.append(self._max_job_timeout)
        return min(caps)
