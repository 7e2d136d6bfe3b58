"""The services under test, and the few things the scenarios do that are not HTTP.

THE ONLY FILE of tests/wire that imports cynode_core or node_agent: when the
modules move, re-point the imports below and nothing else. (The orchestrator
itself comes from the ``orchestrator`` fixture of tests/conftest.py.)
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cynode_core.contract.job import RunJobResponse
from cynode_core.orchestrator.dispatch.store import store_result
from cynode_core.orchestrator.services.accounts import create_user
from cynode_core.plugin_manager import get_plugin_manager
from cynode_core.settings import load_settings
from node_agent.executor import JobExecutor
from node_agent.http_server import BackgroundServer
from node_agent.readiness import Readiness, runtime_probe
from node_agent.registry import sandbox_runtime_factories
from node_agent.settings import NodeSettings
from node_agent.worker_api import create_worker_app

CONTAINERS_CONF = "/etc/cynode/containers.conf"


# -- the orchestrator (gateway and control plane) -----------------------------------


class Orchestrator:
    """What the scenarios do to an orchestrator besides HTTP: users, and the dispatcher's two SQL writes."""

    def __init__(self, under_test: Any) -> None:  # tests/harness/orchestrator.OrchestratorUnderTest
        self._ut = under_test
        self.psk: str = under_test.secrets.psk
        self.admin_password: str = under_test.secrets.admin_password
        self.jwt_secret: str = under_test.secrets.jwt_secret

    def add_user(self, handle: str, password: str) -> None:
        with self._ut.db.session() as session:
            create_user(session, handle, password)

    def claim_job(self) -> Any:
        """Claim the oldest queued job as a dispatcher does (job and task become ``running``)."""
        from cynode_core.orchestrator.dispatch.dispatcher import Dispatcher

        dispatcher = Dispatcher(state=self._ut.app.extensions["cynode"])
        # A dispatcher of one thread: a claim for idle threads would keep the others' jobs in this throw-away one.
        dispatcher.settings = dataclasses.replace(dispatcher.settings, dispatch_workers=1)
        try:
            job = dispatcher.claim()
        finally:
            dispatcher.queue.close()  # this thread's claim connection
        assert job is not None, "no job could be claimed (no dispatchable node?)"
        return job

    def store_result(self, job: Any, result: dict[str, Any]) -> None:
        """Store a node's RunJobResponse for a claimed job, with the dispatcher's own SQL."""
        with self._ut.db.session() as session:
            assert store_result(session, job, RunJobResponse.from_json(result))


def job_ids(job: Any) -> tuple[str, str]:
    """``(task_id, job_id)`` of a claimed job, as the dispatcher sends them to the node."""
    return job.request.task_id, job.request.job_id


# -- the node's Worker API ----------------------------------------------------------------


@contextlib.contextmanager
def podman_runtime(state_dir: Path) -> Iterator[Any]:
    """The real ``podman`` sandbox runtime (plugin via entry points), as tests/node_agent uses it."""
    if not os.environ.get("CONTAINERS_CONF") and os.path.exists(CONTAINERS_CONF):
        os.environ["CONTAINERS_CONF"] = CONTAINERS_CONF
    runtime = sandbox_runtime_factories(get_plugin_manager())["podman"](
        {"socket_url": None, "state_dir": str(state_dir)}
    )
    try:
        yield runtime
    finally:
        runtime.close()


@dataclass
class Worker:
    url: str
    token: str
    executor: Any
    readiness: Any
    workspace_root: Path  # a job's /workspace is <workspace_root>/<job_id>

    def mark_ready(self) -> None:
        self.readiness.mark_ready()

    @property
    def running_jobs(self) -> int:
        return int(self.executor.running_jobs)


@contextlib.contextmanager
def worker_api(runtime: Any, home: Path, token: str, **overrides: Any) -> Iterator[Worker]:
    """A Worker API on 127.0.0.1 (free port) over ``runtime``, NOT yet marked ready.

    Built as tests/node_agent/conftest.py ``start_worker`` builds it.
    """
    values: dict[str, Any] = {
        "home": str(home),
        "node_psk": "wire-psk",
        "inference_backend": "none",
        "worker_listen_host": "127.0.0.1",
        "worker_listen_port": 12090,
    }
    values.update(overrides)
    settings = load_settings(NodeSettings, environ={}, overrides=values)
    runtime.check(settings.sandbox_image)  # fails loudly when the image is missing
    executor = JobExecutor(runtime, settings)
    readiness = Readiness(cache_seconds=0)
    readiness.add_probe(runtime.name, runtime_probe(runtime, settings.sandbox_image))
    app = create_worker_app(executor, bearer_token=token, readiness=readiness)
    server = BackgroundServer(app, host="127.0.0.1", port=0, threads=settings.job_slots * 2 + 4)
    server.start()
    try:
        yield Worker(f"http://127.0.0.1:{server.port}", token, executor, readiness, settings.resolved_workspace_root)
    finally:
        server.stop(drain_timeout=1.0)
