"""A ``cynodeai.pm`` turn's agent steps: the turn token, the MCP session, the decide calls (agents_contract.md 4).

:class:`PmSteps` runs the project-manager agent (:mod:`cynode_core.agents`)
for one prepared turn, in the turn's reader thread: it mints the turn's
agent token (role ``pm``, the caller, the effective project and thread,
class ``user_gateway_session``, alive until the turn's deadline plus 60 s),
opens an MCP session with the control plane's ``/mcp`` under that token
(the agent has no database access: whatever it reads or changes goes through
the gateway, checked and audited), lists the tools, narrows them to
``CYNODE_PMA_TOOLS``, and yields the agent's events. Each decide call is an
Ollama chat with ``format`` = the step schema through the same node
pass-through as any chat. Afterwards :attr:`PmSteps.reply_body` is the
reply call's body, which the turn streams as usual. The token is revoked
when the steps end, whatever the outcome; it never enters a prompt, a log,
an event or the thread.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Collection, Iterator, Mapping
from contextlib import ExitStack
from typing import Any

from cynode_core.agents.instructions import PROJECT_MANAGER, load_bundle
from cynode_core.agents.mcp_client import McpToolClient
from cynode_core.agents.pm_loop import AgentEvent, PmAgent, ToolOutcome, catalog_text
from cynode_core.agents.step_schema import ToolInfo
from cynode_core.orchestrator.chat.inference import ModelRouter, Target
from cynode_core.orchestrator.chat.prepare import Prepared
from cynode_core.orchestrator.db import Database
from cynode_core.orchestrator.services import agent_tokens
from cynode_core.orchestrator.settings import OrchestratorSettings

log = logging.getLogger(__name__)

DECIDE_PREDICT, REPLY_PREDICT = 512, 1024
TOKEN_GRACE_SECONDS = 60.0
UNREACHABLE = "The tools are not reachable now, so you could not act: say so."


class PmSteps:
    """The agent part of one PM turn; iterate :meth:`events` once, then read :attr:`reply_body`."""

    def __init__(
        self,
        db: Database,
        settings: OrchestratorSettings,
        router: ModelRouter,
        prepared: Prepared,
        *,
        deadline: float,
        stop: threading.Event,
        on_target: Callable[[Target, Any], None],
    ) -> None:
        self.db, self.settings, self.router, self.p = db, settings, router, prepared
        self.deadline, self.stop, self.on_target = deadline, stop, on_target
        self.agent: PmAgent | None = None

    def events(self) -> Iterator[AgentEvent]:
        """The agent's events up to its reply; the turn token lives exactly as long as this iterator."""
        token_id, token = self._mint()
        try:
            with ExitStack() as stack:
                try:
                    client = stack.enter_context(McpToolClient(self.mcp_url, token))
                    tools = self._tools(client)
                except Exception as exc:  # noqa: BLE001 - no gateway: the turn still answers, and says so
                    log.warning("PM turn: the MCP gateway at %s is not reachable (%s)", self.mcp_url, exc)
                    self.agent = self._agent([], None)
                    self.agent.stopped_because = UNREACHABLE
                    yield AgentEvent("iteration", iteration=1)
                    return
                self.agent = self._agent(tools, client)
                for event in self.agent.steps():
                    yield event
                    if self.stop.is_set():
                        return
        finally:
            self._revoke(token_id)

    @property
    def mcp_url(self) -> str:
        return self.settings.control_public_url.rstrip("/") + "/mcp"

    def _agent(self, tools: list[ToolInfo], client: McpToolClient | None) -> PmAgent:
        return PmAgent(
            system=self._system(tools, client),
            conversation=_conversation(self.p.body),
            tools=tools,
            client=_Guarded(client, {tool.name for tool in tools if tool.read_only}),
            decide=self._decide,
            max_steps=self.settings.pma_max_steps,
            prompt_chars=self.settings.agent_prompt_chars,
        )

    @property
    def reply_body(self) -> dict[str, Any]:
        """The reply call: the agent's prompt and observations, answered freely (no ``format``), streamed."""
        assert self.agent is not None
        return {
            "model": self.p.model,
            "messages": self.agent.reply_messages,
            "options": {"temperature": 0.2, "num_predict": REPLY_PREDICT},
        }

    # -- the turn token ------------------------------------------------------------------------

    def _mint(self) -> tuple[Any, str]:
        lifetime = max(self.deadline - time.monotonic(), 1.0) + TOKEN_GRACE_SECONDS
        binding = agent_tokens.Binding(
            project_id=self.p.project_id, thread_id=self.p.thread_id, invocation_class="user_gateway_session"
        )
        with self.db.session() as session:
            minted = agent_tokens.mint(
                session, role="pm", user_id=self.p.user_id, lifetime_seconds=lifetime, issued_by="chat", binding=binding
            )
            return minted.row.id, minted.token

    def _revoke(self, token_id: Any) -> None:
        try:
            with self.db.session() as session:
                agent_tokens.revoke(session, token_id, "turn ended")
        except Exception:  # noqa: BLE001 - it expires anyway; the turn's answer must not fail on it
            log.exception("PM turn: revoking the turn token failed")

    # -- what the model is told ------------------------------------------------------------------

    def _tools(self, client: McpToolClient) -> list[ToolInfo]:
        listed = client.list_tools()
        wanted = set(self.settings.pma_tools)
        return [tool for tool in listed if not wanted or tool.name in wanted]

    def _system(self, tools: list[ToolInfo], client: McpToolClient | None) -> str:
        bundle = load_bundle(PROJECT_MANAGER, self.settings.agent_instructions_dir)
        parts = [bundle, catalog_text(tools) or "(none now)"]
        if client is None or "project.get" not in {tool.name for tool in tools}:
            return "\n\n".join(parts)
        project = _Guarded(client, {"project.get"}).call_tool("project.get", {"project_id": str(self.p.project_id)})
        if project.ok and project.result:
            slug, name = project.result.get("slug", ""), project.result.get("display_name", "")
            parts.append(f"# The conversation's project\n\n{name} ({slug}), id {self.p.project_id}")
        return "\n\n".join(parts)

    # -- one decide call -----------------------------------------------------------------------

    def _decide(self, messages: list[dict[str, str]], schema: Mapping[str, Any]) -> str:
        body = {
            "model": self.p.model,
            "messages": messages,
            "format": dict(schema),
            "options": {"temperature": 0, "seed": self.settings.agent_seed, "num_predict": DECIDE_PREDICT},
        }
        deadline = min(self.deadline, time.monotonic() + self.settings.pma_decide_timeout_seconds)
        pieces = self.router.stream(body, user_id=str(self.p.user_id), deadline=deadline, on_target=self.on_target)
        text = []
        for piece in pieces:
            if self.stop.is_set():
                break
            text.append(piece.content)
        return "".join(text)


class _Guarded:
    """A tool client whose transport failures become error outcomes (the loop goes on); a read-only tool is
    asked once more first, others never (a create may already have happened; agents_contract.md 4.8)."""

    def __init__(self, client: McpToolClient | None, read_only: Collection[str] = ()) -> None:
        self._client = client
        self._read_only = read_only

    def call_tool(self, name: str, arguments: Mapping[str, Any]) -> ToolOutcome:
        if self._client is None:
            return ToolOutcome(False, error=UNREACHABLE)
        for attempt in (1, 2):
            try:
                return self._client.call_tool(name, arguments)
            except Exception as exc:  # noqa: BLE001 - a transport failure is an observation, not the turn's end
                log.warning("PM turn: MCP call %s failed (attempt %d): %s", name, attempt, type(exc).__name__)
                if name not in self._read_only:
                    break
        return ToolOutcome(False, error="the tool gateway could not be reached")


def _conversation(body: Mapping[str, Any]) -> list[dict[str, str]]:
    """The turn's user and assistant messages (the prepared system prompt is replaced by the agent's)."""
    return [
        {"role": str(m["role"]), "content": str(m.get("content") or "")}
        for m in body.get("messages", [])
        if m.get("role") in ("user", "assistant")
    ]
