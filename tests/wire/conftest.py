"""Fixtures of the wire-contract tests (the orchestrator ones come from tests/conftest.py)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from harness.loopback import PeerHandler, serving

from wire import targets

WORKER_TOKEN = "wire-worker-token-0123456789abcdef"


class _FakeNodeHandler(PeerHandler):
    """A node's Worker API as far as the orchestrator calls it while the scenarios run:
    ``GET /readyz`` (its readiness probe) and ``POST ...:cancel``. Never recorded."""

    def do_GET(self) -> None:  # noqa: N802
        if self.path == "/readyz":
            self.answer(200, b"ready", "text/plain; charset=utf-8")
        else:
            self.answer(404, b"", "text/plain")

    def do_POST(self) -> None:  # noqa: N802
        self.rfile.read(int(self.headers.get("Content-Length") or 0))
        self.answer(200, b'{"version": 1, "canceled": true}\n', "application/json")


@pytest.fixture
def fake_node_url() -> Iterator[str]:
    with serving(_FakeNodeHandler) as url:
        yield url


@pytest.fixture(scope="session")
def sandbox_runtime(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    with targets.podman_runtime(tmp_path_factory.mktemp("wire-podman")) as runtime:
        yield runtime


@pytest.fixture
def worker(sandbox_runtime: Any, tmp_path: Path) -> Iterator[targets.Worker]:
    """A Worker API with ONE job slot (so a second job meets 503), not yet marked ready."""
    with targets.worker_api(sandbox_runtime, tmp_path / "node-home", WORKER_TOKEN, job_slots=1) as w:
        yield w
