"""What the Worker API's ``GET /readyz`` answers (docs/wire_contract.md#worker-health).

Ready means: the Node Manager finished every start-up step (it clears the
start-up reason last), and the live probes still pass (the sandbox runtime
answers, and so does the inference backend when there is one). Probe results
are cached for a few seconds so a busy health checker cannot turn
``/readyz`` into a load on the runtime.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable

from cynode_core.contract import InferenceBackend, SandboxRuntime

log = logging.getLogger(__name__)

# A probe returns None when fine, or a short reason when not; it may also raise.
Probe = Callable[[], "str | None"]


class Readiness:
    """The node's readiness: a start-up reason set by the manager plus cached live probes."""

    def __init__(self, *, cache_seconds: float = 5.0, probe_timeout: float = 5.0) -> None:
        self._lock = threading.Lock()
        self._startup_reason: str | None = "node manager is starting"
        self._probes: list[tuple[str, Probe]] = []
        self._cache_seconds = cache_seconds
        self._probe_timeout = probe_timeout
        self._cached: tuple[float, str | None] | None = None
        # The probe thread still waiting for an answer, per probe name: a hung
        # runtime then costs one thread, not one per /readyz call.
        self._in_flight: dict[str, threading.Thread] = {}
        # Concurrent /readyz calls share one probe round instead of each starting one.
        self._probe_lock = threading.Lock()

    def set_not_ready(self, reason: str) -> None:
        """Report not ready with ``reason`` (start-up in progress, shutting down, ...)."""
        with self._lock:
            self._startup_reason = reason

    def mark_ready(self) -> None:
        """Every start-up step passed; readiness now depends on the live probes only."""
        with self._lock:
            self._startup_reason = None
            self._cached = None

    def add_probe(self, name: str, probe: Probe) -> None:
        """Add a live check; ``name`` prefixes the reason when it raises."""
        with self._lock:
            self._probes.append((name, probe))
            self._cached = None

    def check(self) -> str | None:
        """``None`` when ready, else the plain-text reason ``/readyz`` answers with 503."""
        with self._lock:
            if self._startup_reason is not None:
                return self._startup_reason
            cached = self._cached
            probes = list(self._probes)
        if cached is not None and time.monotonic() - cached[0] < self._cache_seconds:
            return cached[1]
        with self._probe_lock:
            with self._lock:
                cached = self._cached
            if cached is not None and time.monotonic() - cached[0] < self._cache_seconds:
                return cached[1]
            reason = self._run_probes(probes)
            with self._lock:
                self._cached = (time.monotonic(), reason)
        return reason

    def _run_probes(self, probes: list[tuple[str, Probe]]) -> str | None:
        for name, probe in probes:
            reason = self._run_probe(name, probe)
            if reason:
                return reason
        return None

    def _run_probe(self, name: str, probe: Probe) -> str | None:
        unanswered = f"{name} not available: no answer within {self._probe_timeout:g} s"
        previous = self._in_flight.get(name)
        if previous is not None and previous.is_alive():
            return unanswered
        box: dict[str, object] = {}

        def target() -> None:
            try:
                box["reason"] = probe()
            except Exception as exc:  # noqa: BLE001 - any failure means not ready
                box["error"] = exc

        # A daemon thread, so a runtime that never answers cannot hold up process exit.
        thread = threading.Thread(target=target, name=f"readyz-{name}", daemon=True)
        self._in_flight[name] = thread
        thread.start()
        thread.join(self._probe_timeout)
        if thread.is_alive():
            return unanswered
        if "error" in box:
            return f"{name} not available: {box['error']}"
        reason = box.get("reason")
        return str(reason) if reason else None


def runtime_probe(runtime: SandboxRuntime, image: str) -> Probe:
    """A live check of the sandbox runtime for ``/readyz``.

    A runtime may offer a cheap ``ping()`` (not part of the hook contract,
    so looked up by name); otherwise ``check(image)`` runs the start-up
    check again, which is the only call the contract guarantees to reach
    the runtime (``version()`` may be cached).
    """
    ping = getattr(runtime, "ping", None)

    def probe() -> None:
        if callable(ping):
            ping()
        else:
            runtime.check(image)

    return probe


def backend_probe(backend: InferenceBackend) -> Probe:
    """A live check of the inference backend for ``/readyz``: it must list its models."""
    return lambda: _none(backend.models())


def _none(_: object) -> None:
    """A probe passes when the call returned at all; its value does not matter."""
    return None
