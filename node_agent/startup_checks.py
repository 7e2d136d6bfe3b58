"""The checks of the node's start-up (steps 2 and 3 in ``manager``): is the node fit to register?

The orchestrator is reachable, the sandbox runtime runs the configured
image, the workspace root is writable. A failed check raises
``StartupError`` naming what failed; a stop asked for meanwhile raises
``StopRequested``.
"""

from __future__ import annotations

import logging
import threading
import uuid
from pathlib import Path

from cynode_core.contract import SandboxRuntime
from node_agent.client import ControlPlaneClient, OrchestratorUnreachable
from node_agent.control_session import StartupError, StopRequested
from node_agent.settings import NodeSettings

log = logging.getLogger("node_agent.manager")  # the Node Manager's lines, under its name as before

WAIT_LOG_EVERY = 10.0


def check_stop(stop: threading.Event) -> None:
    """Raise ``StopRequested`` once ``stop`` is set."""
    if stop.is_set():
        raise StopRequested()


def wait_for_orchestrator(client: ControlPlaneClient, settings: NodeSettings, stop: threading.Event) -> None:
    """Wait up to ``settings.readiness_timeout`` for the orchestrator's ``/readyz``, logging the wait."""
    log.info(
        "waiting for the orchestrator at %s/readyz (up to %g s)",
        settings.orchestrator_url.rstrip("/"),
        settings.readiness_timeout,
    )
    last_log = [0.0]

    def progress(elapsed: float) -> None:
        if elapsed - last_log[0] >= WAIT_LOG_EVERY:
            last_log[0] = elapsed
            log.info("orchestrator not reachable yet (%.0f s of %g s)", elapsed, settings.readiness_timeout)

    try:
        client.wait_reachable(settings.readiness_timeout, stop=stop, on_wait=progress)
    except OrchestratorUnreachable as exc:
        check_stop(stop)
        raise StartupError(f"waiting for the orchestrator: {exc}") from exc
    log.info("orchestrator reachable")


def check_runtime(runtime: SandboxRuntime, image: str, stop: threading.Event) -> None:
    """The sandbox runtime must run ``image``."""
    check_stop(stop)
    log.info("checking sandbox runtime %s with image %s", runtime.name, image)
    try:
        runtime.check(image)
    except Exception as exc:
        raise StartupError(f"sandbox runtime {runtime.name!r} cannot run {image}: {exc}") from exc


def check_workspace_root(root: Path) -> None:
    """The workspace root must exist (it is made if not) and take a file."""
    probe = root / f".write-check-{uuid.uuid4().hex}"
    try:
        root.mkdir(parents=True, exist_ok=True, mode=0o700)
        probe.write_bytes(b"ok")
        probe.unlink()
    except OSError as exc:
        raise StartupError(f"workspace root {root} is not writable: {exc}") from exc
    log.info("workspace root %s is writable", root)
