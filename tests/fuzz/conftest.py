"""The fuzz suite's targets: the orchestrator (gateway and control plane) and a node's Worker API, on loopback.

The orchestrator is the test's own (``orchestrator`` and ``live_orchestrator``
of tests/conftest.py: waitress on loopback, real PostgreSQL) with its
throttles opened wide, since hundreds of generated requests from one
address would otherwise end in a (correct, but uninformative) 429.
"""

from __future__ import annotations

import dataclasses
import secrets
from typing import Any

import pytest
from harness.worker import WorkerNode

from cynode_core.orchestrator.services import accounts
from cynode_core.orchestrator.settings import OrchestratorSettings
from fuzz.clients import FUZZ_PASSWORD, FUZZ_USER, Tokens

# Loose enough for a fuzz run; a name this release's settings do not have is left out.
_WIDE_OPEN = {
    "login_rate_per_minute": 1_000_000,
    "login_handle_failures": 1_000_000,
    "login_source_failures": 1_000_000,
    "refresh_rate_per_minute": 1_000_000,
    "register_rate_per_minute": 1_000_000,
    "max_queued_per_user": 1_000_000,
    "mcp_calls_per_minute": 1_000_000,
}


@pytest.fixture
def settings_overrides() -> dict[str, Any]:
    known = {f.name for f in dataclasses.fields(OrchestratorSettings)}
    return {name: value for name, value in _WIDE_OPEN.items() if name in known}


@pytest.fixture
def tokens(live_orchestrator: str, orchestrator: Any) -> Tokens:
    with orchestrator.db.session() as session:
        accounts.create_user(session, FUZZ_USER, FUZZ_PASSWORD)
    return Tokens(live_orchestrator, orchestrator.secrets.psk, orchestrator.secrets.admin_password)


@pytest.fixture
def worker_token(worker: WorkerNode) -> str:
    token = secrets.token_urlsafe(16)
    worker.set_token(token)
    return token
