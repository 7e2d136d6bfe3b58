"""MCP tools as the gateway knows them, the hook that offers them, and the outcomes a tool call can have.

A tool is a name, a one-line description, an input JSON Schema (the subset
of agents_contract.md 3.2, ``additionalProperties: false``), a scope
(``pm``, ``sandbox`` or ``both``: which callers it is meant for, on top of
the role allowlists of ``allowlist``) and a handler. Plugins offer tools
with the ``cynode_register_mcp_tools`` hook; the built-in catalog
(mcp_contract.md 7) is registered through the same hook, so a team adds a
tool without forking.

A handler runs inside the gateway's transaction (``ToolCall.session``): the
audit row of the call is written in the same one, so an effect is never
committed without its audit row. It answers the tool's result object (a
JSON object) or raises :class:`ToolDenied` (a scoping refusal: audited as a
denial) or :class:`ToolFailed` (the call was allowed and failed).
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

from sqlalchemy.orm import Session

from cynode_core import hookspec
from cynode_core.orchestrator.services.agent_tokens import Principal

ToolScope = Literal["pm", "sandbox", "both"]


@dataclass
class ToolCall:
    """One call being executed: its caller, the gateway's transaction, the orchestrator's state.

    A handler may set ``project_id`` (and ``task_id``, ``job_id``) to the
    object it acted on: the audit row records them when the token has no
    such binding. ``after_commit`` callbacks run once the call and its audit
    row are committed, never after a refusal or a rollback.
    """

    principal: Principal
    session: Session
    state: Any
    request_id: str | None = None
    project_id: uuid.UUID | None = None
    task_id: uuid.UUID | None = None
    job_id: uuid.UUID | None = None
    # What must happen only once the call and its audit row committed (telling nodes of a cancel).
    after_commit: list[Callable[[], None]] = field(default_factory=list)


Handler = Callable[[ToolCall, dict[str, Any]], dict[str, Any]]


@dataclass(frozen=True)
class McpTool:
    """A tool of the gateway's catalog."""

    name: str
    description: str
    input_schema: Mapping[str, Any]
    handler: Handler = field(compare=False, repr=False)
    scope: ToolScope = "pm"
    # A read-only tool may be retried by a client after a transport failure (agents_contract.md 4.8).
    read_only: bool = True


RegisterTool = Callable[[McpTool], None]


class ToolError(Exception):
    """A call that ends without a result: an HTTP status, the audit's ``error_type`` and a detail for the caller."""

    def __init__(self, status: int, error_type: str, detail: str, *, retry_after: int | None = None) -> None:
        super().__init__(detail)
        self.status = status
        self.error_type = error_type
        self.detail = detail
        # Seconds to wait before trying again (a 429 or 503 of the service behind the tool).
        self.retry_after = retry_after


class ToolDenied(ToolError):
    """Refused by scoping (pipeline step 9), audited ``deny``: 403 ``scope_mismatch``, or 404 for another's object."""


class ToolFailed(ToolError):
    """Allowed, and failed while executing (step 10), audited ``allow``/``error``: 404 ``not_found``, 409 conflict."""


@hookspec
def cynode_register_mcp_tools(register: RegisterTool) -> None:
    """Offer tools to the MCP gateway.

    :param register: call it with one :class:`McpTool` per tool. A name
        registered twice keeps the first registration (built-ins come first).
    Called by: the orchestrator when its app is built. Every call of a tool
    still passes the gateway's checks: the caller's role allowlist, the
    disabled list, the rate limit, argument validation against
    ``input_schema`` and the tool's ``scope``; and is audited.
    """
