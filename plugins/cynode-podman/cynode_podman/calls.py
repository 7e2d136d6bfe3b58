"""Small pieces of a job's run shared by cold and warm starts: outcomes, errors, kills and removals."""

from __future__ import annotations

import datetime as dt
import logging
import time

from podman.domain.containers import Container
from podman.errors import APIError, NotFound

from cynode_core.contract import SandboxOutcome, SandboxSpec

_log = logging.getLogger("cynode_podman.runtime")

EXIT_RUNTIME_ERROR = 125  # what `podman run` exits with when Podman itself fails


def tell_exit(spec: SandboxSpec, outcome: SandboxOutcome) -> None:
    """Hand the outcome to ``spec.on_exit`` before the removal; its failure is the node's, not the job's."""
    if spec.on_exit is None:
        return
    try:
        spec.on_exit(outcome)
    except Exception:  # noqa: BLE001 - the node's callback failing must not fail the job
        _log.exception("job %s: on_exit failed", spec.job_id)


def log_path(container: Container) -> str | None:
    """Where conmon writes the container's k8s-file log (from the inspect data of its creation)."""
    config = (container.attrs.get("HostConfig") or {}).get("LogConfig") or {}
    path = config.get("Path")
    return str(path) if path else None


def kill(container: Container) -> None:
    """SIGKILL the container; it may already have exited, which is fine."""
    try:
        container.kill(signal="SIGKILL")
    except APIError:
        pass


def runtime_failure(code: int, message: str, started_at: dt.datetime) -> SandboxOutcome:
    """A failed outcome in the ``runtime exit <code>: <error>`` form (docs/wire_contract.md#worker-run-job-response)."""
    return SandboxOutcome(
        status="failed",
        exit_code=code,
        stderr=f"runtime exit {code}: {message}\n".encode(),
        started_at=started_at,
        ended_at=now(),
    )


def explain(exc: APIError) -> str:
    """Podman's own message for an API error."""
    return str(getattr(exc, "explanation", None) or exc)


def now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def remove(container: Container) -> None:
    """Force-remove a job's container; a failure is worth a retry, never an exception."""
    for _ in range(3):
        try:
            container.remove(force=True)
            return
        except NotFound:
            return
        except APIError:
            time.sleep(0.2)
