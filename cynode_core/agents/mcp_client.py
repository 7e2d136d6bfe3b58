"""The agent's :class:`~cynode_core.agents.pm_loop.ToolClient` on the official ``mcp`` SDK (agents_contract.md 6).

``mcp.Client`` over the SDK's streamable HTTP transport, pointed at the
control plane's ``POST /mcp``, with the turn's token as its bearer. The SDK
is async (anyio): :class:`McpToolClient` runs one event loop per turn in a
thread of its own (an anyio blocking portal), so the agent's synchronous
loop calls it step by step. ``structured_content`` is the result object;
``is_error`` makes a failed outcome with the gateway's detail.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping
from contextlib import AbstractContextManager, ExitStack
from types import TracebackType
from typing import Any

import anyio.from_thread
import httpx2
from mcp import Client
from mcp.client.streamable_http import streamable_http_client

from cynode_core.agents.pm_loop import ToolOutcome
from cynode_core.agents.step_schema import ToolInfo

log = logging.getLogger(__name__)

TIMEOUT_SECONDS = 60.0


class McpToolClient(AbstractContextManager["McpToolClient"]):
    """An MCP session with the gateway for one turn; use it as a context manager."""

    def __init__(self, url: str, token: str, *, timeout: float = TIMEOUT_SECONDS) -> None:
        self._url, self._token, self._timeout = url, token, timeout
        self._stack = ExitStack()
        self._client: Client | None = None
        self._portal: Any = None

    def __enter__(self) -> McpToolClient:
        try:
            self._portal = self._stack.enter_context(anyio.from_thread.start_blocking_portal())
            http = httpx2.AsyncClient(headers={"Authorization": f"Bearer {self._token}"}, timeout=self._timeout)
            self._stack.callback(self._portal.call, http.aclose)  # after the session ends (last in, first out)
            transport = streamable_http_client(self._url, http_client=http, terminate_on_close=False)
            client = Client(transport, mode="legacy", cache=None)
            self._client = self._stack.enter_context(self._portal.wrap_async_context_manager(client))
        except BaseException:
            self._stack.close()
            raise
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self._stack.close()

    def list_tools(self) -> list[ToolInfo]:
        """The tools the token's role may call, as the gateway lists them."""
        assert self._client is not None and self._portal is not None
        listed = self._portal.call(self._client.list_tools)
        return [
            ToolInfo(
                t.name,
                t.description or "",
                dict(t.input_schema or {}),
                read_only=bool(t.annotations and t.annotations.read_only_hint),
            )
            for t in listed.tools
        ]

    def call_tool(self, name: str, arguments: Mapping[str, Any]) -> ToolOutcome:
        """One tool call; a refusal or failure of the gateway is an outcome, a transport failure raises."""
        assert self._client is not None and self._portal is not None
        result = self._portal.call(self._client.call_tool, name, dict(arguments))
        structured = result.structured_content
        if result.is_error:
            detail = structured.get("detail") if isinstance(structured, Mapping) else None
            return ToolOutcome(False, error=str(detail or _text(result) or "the tool call failed"))
        if isinstance(structured, Mapping):
            return ToolOutcome(True, result=dict(structured))
        try:
            parsed = json.loads(_text(result))
        except ValueError:
            parsed = {"text": _text(result)}
        return ToolOutcome(True, result=parsed if isinstance(parsed, dict) else {"result": parsed})


def _text(result: Any) -> str:
    return "".join(getattr(block, "text", "") for block in result.content or [])
