"""The project-manager agent's loop: decide, call a tool, observe, and at the end the messages to reply from.

agents_contract.md 4.4: each iteration is one decide call (sampled under
the step schema, :mod:`cynode_core.agents.step_schema`) and the tool call
it chose, or the final reply. The agent knows no database and no HTTP: it
is given a ``decide`` function (one model call under a JSON schema, its
text answer) and a :class:`ToolClient` (the MCP gateway, with the turn's
token). :meth:`PmAgent.steps` yields :class:`AgentEvent` s as they happen;
once it is exhausted, :attr:`PmAgent.reply_messages` is what the reply call
gets (system block, conversation, observations, closing instruction).

Observations go back as ``user`` messages (``Tool result for task.create
(success): {...}``, at most 1,500 characters), since transcript renderers
of base models know only user and assistant turns; the whole prompt is
kept under ``prompt_chars`` by dropping the oldest observations first.
"""

from __future__ import annotations

import json
import logging
import uuid
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from cynode_core.agents.step_schema import ID_ARGUMENTS, Decision, ToolInfo, check, step_schema

log = logging.getLogger(__name__)

OBSERVATION_CHARS = 1500
PREVIEW_CHARS = 200

# One model call under a JSON schema: (messages, schema) -> the answer's text.
Decide = Callable[[list[dict[str, str]], Mapping[str, Any]], str]


@dataclass(frozen=True)
class ToolOutcome:
    """What a tool call answered: its result object, or the error the gateway gave."""

    ok: bool
    result: Mapping[str, Any] | None = None
    error: str = ""


class ToolClient(Protocol):
    """The MCP gateway as the agent sees it (the tools it may call are given to :class:`PmAgent`)."""

    def call_tool(self, name: str, arguments: Mapping[str, Any]) -> ToolOutcome: ...


@dataclass(frozen=True)
class AgentEvent:
    """``iteration`` (n), ``tool_call`` (call_id, tool, arguments JSON text) or ``tool_result`` (+ status, preview)."""

    kind: str
    iteration: int = 0
    call_id: str = ""
    tool: str = ""
    arguments: str = ""
    status: str = ""
    preview: str = ""


@dataclass
class PmAgent:
    """One turn of the agent: ``system`` block, the conversation, the tools it may use and its limits."""

    system: str
    conversation: list[dict[str, str]]
    tools: Sequence[ToolInfo]
    client: ToolClient
    decide: Decide
    max_steps: int = 4
    prompt_chars: int = 12000
    observations: list[str] = field(default_factory=list)
    seen: dict[str, set[str]] = field(default_factory=dict)
    stopped_because: str = ""
    _calls: int = 0

    def steps(self) -> Iterator[AgentEvent]:
        """The turn's events up to the reply (whose messages are then :attr:`reply_messages`)."""
        iteration = 1
        while True:
            yield AgentEvent("iteration", iteration=iteration)
            if self._calls >= self.max_steps:
                self.stopped_because = f"You stopped after {self._calls} tool calls (the limit of a turn)."
                return
            decision = self._decide()
            if decision is None:
                self.stopped_because = "Planning failed: no valid tool call could be made."
                return
            if decision.action == "reply":
                return
            self._calls += 1
            yield from self._call(decision)
            iteration += 1

    @property
    def reply_messages(self) -> list[dict[str, str]]:
        """The reply call's messages: the decide prompt, then the closing instruction."""
        closing = "Now answer the user. Use only the tool results above; never invent a result."
        if self.stopped_because:
            closing = f"{self.stopped_because} {closing}"
        return [*self._prompt(), {"role": "user", "content": closing}]

    # -- one decide call, checked, retried once ------------------------------------------------

    def _decide(self) -> Decision | None:
        schema = step_schema(self.tools, self.seen)
        messages = self._prompt()
        for attempt in (1, 2):
            text = self.decide(messages, schema)
            checked = check(text, schema)
            if isinstance(checked, Decision):
                return checked
            log.info("PM agent: decide answer %d not valid: %s", attempt, checked)
            messages = [
                *messages,
                {"role": "assistant", "content": text[:OBSERVATION_CHARS]},
                {"role": "user", "content": f"That was not a valid step: {checked}. Answer with one valid step."},
            ]
        return None

    # -- one tool call ---------------------------------------------------------------------------

    def _call(self, decision: Decision) -> Iterator[AgentEvent]:
        call_id = f"c{uuid.uuid4().hex[:12]}"
        arguments = dict(decision.arguments or {})
        text = json.dumps(arguments, ensure_ascii=False)
        yield AgentEvent("tool_call", call_id=call_id, tool=decision.tool, arguments=text)
        yield AgentEvent("tool_progress", call_id=call_id, tool=decision.tool, status="calling")
        outcome = self.client.call_tool(decision.tool, arguments)
        if outcome.ok:
            body = json.dumps(outcome.result or {}, ensure_ascii=False, separators=(",", ":"))
            self._remember_ids(outcome.result or {})
        else:
            body = outcome.error
        status = "success" if outcome.ok else "error"
        self.observations.append(f"Tool result for {decision.tool} ({status}): {body}"[:OBSERVATION_CHARS])
        yield AgentEvent(
            "tool_result", call_id=call_id, tool=decision.tool, status=status, preview=body[:PREVIEW_CHARS]
        )

    def _remember_ids(self, value: Any) -> None:
        """Ids the results showed become the candidates of later steps' id arguments."""
        if isinstance(value, Mapping):
            for key, item in value.items():
                if isinstance(item, str) and _is_uuid(item):
                    name = "task_id" if key in ("id", "task_id") and "task_id" in value else key
                    if name in ID_ARGUMENTS:
                        self.seen.setdefault(name, set()).add(item)
                else:
                    self._remember_ids(item)
        elif isinstance(value, list):
            for item in value:
                self._remember_ids(item)

    # -- the prompt ------------------------------------------------------------------------------

    def _prompt(self) -> list[dict[str, str]]:
        """System block, conversation, observations; the oldest observations dropped to fit ``prompt_chars``."""
        fixed = [{"role": "system", "content": self.system}, *self.conversation]
        room = self.prompt_chars - sum(len(m["content"]) for m in fixed)
        kept: list[str] = []
        for observation in reversed(self.observations):
            if len(observation) > room:
                break
            kept.insert(0, observation)
            room -= len(observation)
        dropped = len(self.observations) - len(kept)
        notes = [f"({dropped} earlier results omitted)"] if dropped else []
        return [*fixed, *({"role": "user", "content": text} for text in notes + kept)]


def catalog_text(tools: Sequence[ToolInfo]) -> str:
    """The tool catalog of the system block: names and one-line descriptions only (schemas go into ``format``)."""
    return "\n".join(f"- {tool.name}: {tool.description.splitlines()[0] if tool.description else ''}" for tool in tools)


def _is_uuid(text: str) -> bool:
    try:
        uuid.UUID(text)
    except ValueError:
        return False
    return len(text) == 36
