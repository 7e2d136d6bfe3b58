"""The gateway's enforcement pipeline (mcp_contract.md 4), shared by ``POST /v1/mcp/tools/call`` and ``POST /mcp``.

Step 1 (the request's shape) is the HTTP layer's. Then, in the contract's
order, the first failing step answers:

2. a bearer token that is a valid agent token (:meth:`Gateway.authenticate`);
3. no legacy ``db.`` name; 4. the role allowlist (``allowlist``); 5. not
   disabled; 6. at most ``CYNODE_MCP_CALLS_PER_MINUTE`` calls per token and
   minute (counters in ``rate_limit_counters``, committed at once, so a call
   counts whatever follows);
7. a shipped tool; 8. arguments valid (``arguments``); 9. generic scoping: a
   ``user_id`` argument must be the token's user, a token bound to a task or
   job takes only that ``task_id`` / ``job_id`` (the tool scopes the rest and
   raises :class:`ToolDenied`);
10. the handler, in a SAVEPOINT of the transaction its audit row is written
    in: a failure rolls the savepoint back, then the row is written and the
    transaction committed; 11. success.

Every call that passed step 2 leaves one audit row (``audit``); step 2's
refusals leave none, so an unauthenticated caller cannot write to the
audit table (they are logged). If the audit row cannot be written nothing
of the call is committed and it answers 500 ``internal_error``.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy.exc import DataError, InterfaceError, OperationalError
from sqlalchemy.orm import Session

from cynode_core.orchestrator.mcp.allowlist import is_disabled, may_call
from cynode_core.orchestrator.mcp.arguments import InvalidArguments, checked
from cynode_core.orchestrator.mcp.audit import CallAudit, Decision, uuid_or_none
from cynode_core.orchestrator.mcp.catalog import Catalog, catalog_of
from cynode_core.orchestrator.mcp.registry import McpTool, ToolCall, ToolDenied, ToolError
from cynode_core.orchestrator.services import agent_tokens, throttle
from cynode_core.orchestrator.services.agent_tokens import Principal

log = logging.getLogger(__name__)

RATE_WINDOW = 60.0
LEGACY_PREFIX = "db."


@dataclass(frozen=True)
class Refusal:
    """A call that ends without a result: HTTP status, ``error_type`` (mcp_contract.md 8) and detail."""

    status: int
    error_type: str
    detail: str
    retry_after: int | None = None
    errors: Mapping[str, str] | None = field(default=None, compare=False)


MISSING_BEARER = Refusal(401, "missing_bearer", "authentication required")
INVALID_TOKEN = Refusal(401, "invalid_agent_token", "invalid or unrecognized agent token")
LEGACY_NAME = Refusal(
    404,
    "legacy_tool_name_removed",
    "legacy db.* tool names are not supported; use catalog names (e.g. preference.get, task.get)",
)
NOT_ALLOWED = Refusal(403, "agent_allowlist_denied", "tool not allowed for this agent role")
DISABLED = Refusal(403, "tool_disabled", "tool is disabled")
NOT_IMPLEMENTED = Refusal(501, "not_implemented", "tool routing not implemented")
INTERNAL = Refusal(500, "internal_error", "internal error")
UNSTORABLE = Refusal(400, "invalid_arguments", "an argument holds a value that cannot be stored")
# A tool's refusal of another user's object reads as a missing one.
NOT_FOUND = Refusal(404, "not_found", "not found")


def rate_limited(retry_after: int) -> Refusal:
    return Refusal(429, "rate_limited", "too many tool calls; retry later", retry_after=retry_after)


@dataclass(frozen=True)
class Outcome:
    """How a call ended: the tool's result object (and its JSON text), or a refusal."""

    result: dict[str, Any] | None = None
    text: str = ""
    refusal: Refusal | None = None


def scope_refusal(principal: Principal, arguments: Mapping[str, Any]) -> Refusal | None:
    """Step 9's generic part: identity and bindings come from the token, never from arguments."""
    if "user_id" in arguments and uuid_or_none(arguments["user_id"]) != principal.user_id:
        return Refusal(403, "scope_mismatch", "user_id does not match the agent's user")
    for name, bound, what in (("task_id", principal.task_id, "task"), ("job_id", principal.job_id, "job")):
        if bound is not None and name in arguments and uuid_or_none(arguments[name]) != bound:
            return Refusal(403, "scope_mismatch", f"{name} does not match the agent's {what}")
    return None


def _run_after_commit(name: str, call: ToolCall) -> None:
    for callback in call.after_commit:
        try:
            callback()
        except Exception:  # noqa: BLE001 - the call is done and audited; what follows must not undo its answer
            log.exception("MCP tool %s: a step after its commit failed", name)


def _answer_of(exc: ToolError) -> Refusal:
    if not isinstance(exc.status, int) or not 400 <= exc.status <= 599:
        log.error("MCP tool raised %s with status %r", type(exc).__name__, exc.status)
        return INTERNAL
    if isinstance(exc, ToolDenied) and exc.status == 404:
        return NOT_FOUND
    return Refusal(exc.status, exc.error_type, exc.detail, retry_after=exc.retry_after)


def _result_text(result: Any) -> str:
    """The result object as JSON text; ``TypeError`` for anything else (a tool's bug)."""
    if not isinstance(result, dict):
        raise TypeError(f"a tool returned {type(result).__name__}, not an object")
    return json.dumps(result, allow_nan=False)


class Gateway:
    """The pipeline over one orchestrator's state (database, settings, plugins)."""

    def __init__(self, state: Any) -> None:
        self.state = state
        self.catalog: Catalog = catalog_of(state.pm)

    def authenticate(self, bearer: str | None) -> Principal | Refusal:
        """Step 2: the principal of ``bearer``, or its 401 (logged, not audited)."""
        if not bearer:
            log.info("MCP call refused: no bearer token")
            return MISSING_BEARER
        with self.state.db.session() as session:
            principal = agent_tokens.resolve(session, bearer)
        if principal is None:
            log.info("MCP call refused: not a valid agent token")
            return INVALID_TOKEN
        return principal

    def tools_for(self, principal: Principal) -> list[McpTool]:
        """The shipped, enabled tools the principal's role may call, in catalog order."""
        return self.catalog.callable_by(principal.role, self.state.settings.mcp_disabled_tools)

    def call(
        self, principal: Principal, tool_name: str, arguments: Mapping[str, Any], request_id: str | None = None
    ) -> Outcome:
        """Steps 3 to 11 for one call of an authenticated principal."""
        audit = CallAudit(principal, tool_name, arguments, request_id)
        with self.state.db.session() as session:
            tool = self.catalog.get(tool_name)
            refusal = self._admission(session, principal, tool_name, tool)
            if refusal is None:
                session.commit()  # the call is counted, whatever follows
                prepared = self._prepared(principal, tool, arguments)
                if not isinstance(prepared, Refusal):
                    assert tool is not None
                    return self._execute(session, tool, prepared, audit)
                refusal = prepared
            audit.record(session, "deny", "error", refusal.error_type)
        return Outcome(refusal=refusal)

    def _admission(self, session: Session, principal: Principal, name: str, tool: McpTool | None) -> Refusal | None:
        """Steps 3 to 6."""
        if name.startswith(LEGACY_PREFIX):
            return LEGACY_NAME
        if not may_call(principal.role, name, tool):
            return NOT_ALLOWED
        if is_disabled(name, self.state.settings.mcp_disabled_tools):
            return DISABLED
        key = f"mcp-calls:{principal.token_id}"
        if throttle.take(session, key, limit=self.state.settings.mcp_calls_per_minute, window=RATE_WINDOW) is None:
            return rate_limited(throttle.retry_after(session, key, window=RATE_WINDOW))
        return None

    def _prepared(
        self, principal: Principal, tool: McpTool | None, arguments: Mapping[str, Any]
    ) -> dict[str, Any] | Refusal:
        """Steps 7 to 9: the arguments the handler gets, or the refusal."""
        if tool is None:
            return NOT_IMPLEMENTED
        try:
            kept = checked(tool.input_schema, self.catalog.validator(tool.name), arguments)
        except InvalidArguments as exc:
            return Refusal(400, "invalid_arguments", exc.detail, errors=exc.errors)
        return scope_refusal(principal, kept) or kept

    def _execute(self, session: Session, tool: McpTool, arguments: dict[str, Any], audit: CallAudit) -> Outcome:
        """Steps 10 and 11: the handler and its audit row in one transaction."""
        call = ToolCall(audit.principal, session, self.state, request_id=audit.request_id)
        savepoint = session.begin_nested()
        decision: Decision = "allow"
        error_type: str | None = None
        try:
            result = tool.handler(call, arguments)
            outcome = Outcome(result=result, text=_result_text(result))
            savepoint.commit()
        except ToolError as exc:
            savepoint.rollback()
            decision = "deny" if isinstance(exc, ToolDenied) else "allow"
            refusal = _answer_of(exc)
            # The audit keeps the tool's own error_type (a 404 denial stays scope_mismatch there).
            outcome, error_type = (
                Outcome(refusal=refusal),
                INTERNAL.error_type if refusal is INTERNAL else exc.error_type,
            )
        except DataError:
            # A value PostgreSQL refused (the tool took it unchecked): the caller's input.
            savepoint.rollback()
            outcome, error_type = Outcome(refusal=UNSTORABLE), UNSTORABLE.error_type
        except (OperationalError, InterfaceError):
            raise  # the database is away: answered 503 by the HTTP layer, nothing to audit into
        except Exception:  # noqa: BLE001 - a tool's bug must not leave the call unaudited
            log.exception("MCP tool %s failed", tool.name)
            savepoint.rollback()
            outcome, error_type = Outcome(refusal=INTERNAL), INTERNAL.error_type
        try:
            audit.record(session, decision, "error" if outcome.refusal else "success", error_type, call)
            session.commit()
        except (OperationalError, InterfaceError):
            raise
        except Exception:  # noqa: BLE001 - no audit row, no effect
            log.exception("MCP audit row of %s could not be written; the call is rolled back", tool.name)
            session.rollback()
            return Outcome(refusal=INTERNAL)
        if outcome.refusal is None:
            _run_after_commit(tool.name, call)
        return outcome
