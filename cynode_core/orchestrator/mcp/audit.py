"""The ``mcp_tool_call_audit_log`` row of a call (mcp_contract.md 8).

One row per authenticated call, allowed or denied, never with its arguments
or result. Identity comes from the token: ``user_id`` is its user,
``subject_id`` the token's id, ``role_names`` its role. ``task_id`` and
``job_id`` are the token's binding, else the argument of that name when it
is a UUID, else what the tool recorded on its :class:`ToolCall`;
``project_id`` is the token's, else the tool's.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

from sqlalchemy.orm import Session

from cynode_core.orchestrator.mcp.registry import ToolCall
from cynode_core.orchestrator.models import McpToolCallAudit
from cynode_core.orchestrator.services.agent_tokens import Principal

TOOL_NAME_CHARS = 200

Decision = Literal["allow", "deny"]
Status = Literal["success", "error"]


def uuid_or_none(value: Any) -> uuid.UUID | None:
    """``value`` as a UUID when it is a string in UUID form."""
    if isinstance(value, uuid.UUID):
        return value
    if not isinstance(value, str) or len(value) > 64:
        return None
    try:
        return uuid.UUID(value)
    except ValueError:
        return None


@dataclass
class CallAudit:
    """What the audit row of one call needs from its start: who, which tool, the arguments as sent, when."""

    principal: Principal
    tool_name: str
    arguments: Mapping[str, Any]
    request_id: str | None = None
    started: float = field(default_factory=time.monotonic)

    def record(
        self,
        session: Session,
        decision: Decision,
        status: Status,
        error_type: str | None = None,
        call: ToolCall | None = None,
    ) -> None:
        """Add the row to ``session`` (flushed: a failure to store it raises here)."""
        token = self.principal
        done = call or ToolCall(token, session, None)
        session.add(
            McpToolCallAudit(
                task_id=token.task_id or uuid_or_none(self.arguments.get("task_id")) or done.task_id,
                job_id=token.job_id or uuid_or_none(self.arguments.get("job_id")) or done.job_id,
                project_id=token.project_id or done.project_id,
                subject_type="agent",
                subject_id=token.token_id,
                user_id=token.user_id,
                role_names=[token.role],
                tool_name=self.tool_name[:TOOL_NAME_CHARS],
                decision=decision,
                status=status,
                duration_ms=int((time.monotonic() - self.started) * 1000),
                error_type=error_type,
                invocation_class=token.invocation_class,
                thread_id=token.thread_id,
                request_id=self.request_id,
            )
        )
        session.flush()
