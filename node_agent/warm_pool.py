"""Warm sandboxes: containers of the default image started before their jobs arrive (cynode_core.contract.warm).

A node whose runtime offers ``WarmingRuntime`` keeps up to
``settings.warm_pool_size`` (one per job slot by default, never more)
containers started ahead, each in a fresh workspace of its own made like
any job's (``workspace.Workspaces``, under a new UUID, quota included) and
each waiting for exactly one job. A job that fits (the default image, no
proxy, no agent directory, a command of its own) takes one: its inputs are
written into that workspace and the runtime hands it the command; the
container and the workspace go when the job ends, as a cold job's do. A
background thread refills the pool after every take; a failure to start
one is logged and retried with a growing pause (the node runs jobs cold
meanwhile).

Warm containers carry the node's owner mark, so a restarted node's sweep
removes what a crash left, and their workspaces are discarded by recovery
(they are no job's).
"""

from __future__ import annotations

import collections
import dataclasses
import logging
import threading
import uuid
from pathlib import Path

from cynode_core.contract import WarmingRuntime, WarmSandbox, warm_key
from cynode_core.contract.job import RunJobRequest
from node_agent.metrics import NodeMetrics
from node_agent.sandbox_spec import warm_template
from node_agent.settings import NodeSettings
from node_agent.workspace import Workspaces

log = logging.getLogger(__name__)

RETRY_FIRST_SECONDS = 1.0
RETRY_MAX_SECONDS = 60.0


@dataclasses.dataclass(frozen=True)
class WarmEntry:
    """A warm container and the workspace it mounts."""

    sandbox: WarmSandbox
    workspace: Path


class WarmPool:
    """Up to ``size`` warm containers of the node's default image, refilled in the background."""

    def __init__(
        self,
        runtime: WarmingRuntime,
        workspaces: Workspaces,
        settings: NodeSettings,
        metrics: NodeMetrics,
    ) -> None:
        self._runtime = runtime
        self._workspaces = workspaces
        self._settings = settings
        self._metrics = metrics
        self.size = settings.warm_pool_size
        self.image = settings.resolve_image(None)
        self._ready: collections.deque[WarmEntry] = collections.deque()
        self._changed = threading.Condition()
        self._closed = False
        self._thread: threading.Thread | None = None
        self._last_failed = False  # the last start failed: said once, until one starts again
        metrics.watch_warm(lambda: len(self._ready))

    @property
    def ready(self) -> int:
        """Warm containers waiting now."""
        with self._changed:
            return len(self._ready)

    def start(self) -> None:
        """Start filling the pool in the background (nothing when its size is 0)."""
        if self.size <= 0 or self._thread is not None:
            return
        self._thread = threading.Thread(target=self._fill, name="warm-pool", daemon=True)
        self._thread.start()

    def take(self, request: RunJobRequest) -> WarmEntry | None:
        """A warm container for ``request``, or None (it does not fit, or none is ready): the job runs cold."""
        if not self._fits(request):
            return None
        with self._changed:
            entry = self._ready.popleft() if self._ready else None
            self._changed.notify_all()
        return entry

    def close(self, timeout: float = 10.0) -> None:
        """Stop refilling and remove every waiting container and its workspace."""
        with self._changed:
            self._closed = True
            self._changed.notify_all()
        if self._thread is not None:
            self._thread.join(timeout)
        with self._changed:
            left, self._ready = list(self._ready), collections.deque()
        for entry in left:
            self._drop(entry)

    def _fits(self, request: RunJobRequest) -> bool:
        sandbox = request.sandbox
        return bool(
            self.size > 0
            and sandbox.command
            and not sandbox.use_inference
            and not sandbox.job_spec_json
            and request.mcp is None
            and self._settings.resolve_image(sandbox.image) == self.image
        )

    def _fill(self) -> None:
        pause = RETRY_FIRST_SECONDS
        while self._room():
            entry = self._make()
            if entry is None:
                with self._changed:
                    self._changed.wait_for(lambda: self._closed, pause)
                pause = min(pause * 2, RETRY_MAX_SECONDS)
                continue
            pause = RETRY_FIRST_SECONDS
            with self._changed:
                kept = not self._closed
                if kept:
                    self._ready.append(entry)
            if not kept:
                self._drop(entry)

    def _room(self) -> bool:
        """Wait until the pool has room for one more; False once it is closed."""
        with self._changed:
            self._changed.wait_for(lambda: self._closed or len(self._ready) < self.size)
            return not self._closed

    def _make(self) -> WarmEntry | None:
        """One warm container in a new workspace; None (logged) when it cannot be started."""
        key = str(uuid.uuid4())
        try:
            workspace = self._workspaces.create(key)
        except OSError as exc:
            self._failed(f"cannot make a workspace for a warm container: {exc}")
            return None
        template = warm_template(self._settings, workspace, key)
        try:
            sandbox = self._runtime.prestart(template)
        except Exception as exc:  # noqa: BLE001 - the node runs jobs cold; said once per failure streak
            self._workspaces.discard(key)
            self._failed(f"cannot start a warm container of {self.image}: {exc}")
            return None
        if sandbox.key != warm_key(dataclasses.replace(template, command=("true",))):
            log.error("the runtime's warm container %s has another key than its template; not used", sandbox.ref)
            self._drop(WarmEntry(sandbox, workspace))
            return None
        if self._last_failed:
            log.info("warm containers start again")
        self._last_failed = False
        return WarmEntry(sandbox, workspace)

    def _failed(self, message: str) -> None:
        if not self._last_failed:
            log.warning("%s (jobs start cold; retrying)", message)
        self._last_failed = True

    def _drop(self, entry: WarmEntry) -> None:
        self._runtime.discard(entry.sandbox)
        self._workspaces.discard(entry.workspace.name)
