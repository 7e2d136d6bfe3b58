"""The PM agent's answer to a transport failure of the MCP gateway (agents_contract.md 4.8).

A read-only tool is asked once more; any other tool never (a create may
already have happened); then the failure is an ``error`` observation and the
loop goes on. The client here is a FAKE that raises ``httpx2`` (the SDK's HTTP client) transport
errors on cue: a connection that drops in the middle of a live MCP session
cannot be produced on demand, and what is under test is the policy, not the
SDK (the SDK against the real gateway is tests/test_mcp_endpoint.py).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import httpx2

from cynode_core.agents.pm_loop import ToolOutcome
from cynode_core.orchestrator.chat.agent import _Guarded


class FlakyClient:
    """Fails the first ``failures`` calls with a transport error, then answers."""

    def __init__(self, failures: int) -> None:
        self.failures = failures
        self.calls: list[str] = []

    def call_tool(self, name: str, arguments: Mapping[str, Any]) -> ToolOutcome:
        self.calls.append(name)
        if len(self.calls) <= self.failures:
            raise httpx2.ReadError("connection reset by peer")
        return ToolOutcome(True, result={"tool": name})


def test_a_read_only_tool_is_asked_once_more_after_a_transport_failure() -> None:
    client = FlakyClient(failures=1)
    outcome = _Guarded(client, {"task.get"}).call_tool("task.get", {})  # type: ignore[arg-type]
    assert (outcome.ok, outcome.result, client.calls) == (True, {"tool": "task.get"}, ["task.get", "task.get"])


def test_a_tool_that_changes_state_is_never_sent_twice() -> None:
    client = FlakyClient(failures=1)
    outcome = _Guarded(client, {"task.get"}).call_tool("task.create", {})  # type: ignore[arg-type]
    assert (outcome.ok, outcome.error) == (False, "the tool gateway could not be reached")
    assert client.calls == ["task.create"]


def test_a_read_only_tool_that_fails_twice_is_an_error_observation() -> None:
    client = FlakyClient(failures=2)
    outcome = _Guarded(client, {"task.get"}).call_tool("task.get", {})  # type: ignore[arg-type]
    assert (outcome.ok, client.calls) == (False, ["task.get", "task.get"])
