"""The orchestrator a test opened (runtime, app, secrets) and a loopback server for it.

Shared by the fixtures in conftest.py and by steps that open an orchestrator
of their own.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from flask import Flask

from cynode_core.orchestrator.process import Runtime
from cynode_core.orchestrator.settings import OrchestratorSettings


@dataclass
class OrchestratorUnderTest:
    runtime: Runtime
    app: Flask
    secrets: Any

    @property
    def settings(self) -> OrchestratorSettings:
        return self.runtime.settings

    @property
    def db(self):  # type: ignore[no-untyped-def]
        return self.runtime.db


class LiveServer:
    """The app on a loopback port, served by waitress in a thread."""

    def __init__(self, app: Flask):
        from node_agent.http_server import BackgroundServer

        # BackgroundServer stops its event loop at once; a bare server.close()
        # left waitress's loop running until the join timed out (5 s a test).
        self.server = BackgroundServer(app, host="127.0.0.1", port=0, threads=8, name="orchestrator-under-test")
        self.server.start()
        self.url = f"http://127.0.0.1:{self.server.port}"

    def stop(self) -> None:
        self.server.stop(drain_timeout=1.0)
