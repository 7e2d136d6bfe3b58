"""One chat turn run against its model, from the prepared context to the stored answer (chat contract 4.2).

``prepare`` built the context; :meth:`Turn.events` runs the
model and yields :class:`Event` s: text deltas (redacted, held back, think
text split off), thinking, tool calls, heartbeats while the model is quiet,
an amendment when redaction changed sent text, and one end or failure. When
the events end (or the caller closes them, because the client left) the
assistant turn is stored, redacted, and the audit row is written.
"""

from __future__ import annotations

import json
import logging
import queue
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any, Protocol

from cynode_core.agents.pm_loop import AgentEvent
from cynode_core.orchestrator.chat.agent import PmSteps
from cynode_core.orchestrator.chat.errors import ChatError
from cynode_core.orchestrator.chat.inference import ModelRouter, Piece, Target
from cynode_core.orchestrator.chat.prepare import Prepared
from cynode_core.orchestrator.chat.streaming import HoldBack, ThinkSplit
from cynode_core.orchestrator.chat.wire import ToolCall, Usage, new_call_id
from cynode_core.orchestrator.db import Database
from cynode_core.orchestrator.services import chat_threads
from cynode_core.orchestrator.services.redaction import redact
from cynode_core.orchestrator.settings import OrchestratorSettings

log = logging.getLogger(__name__)

HEARTBEAT_SECONDS = 5.0
MAX_THINKING_CHARS = 16 * 1024
MAX_PART_ARGUMENTS, MAX_PART_PREVIEW = 2048, 1024
PREVIEW_CHARS = 200

# What the reader thread hands the turn: a model piece, an agent step, a failure, or None at the end.
Item = Piece | AgentEvent | ChatError | None


class TurnMetrics(Protocol):
    """Where a finished turn is counted (``metrics.ChatMetrics``)."""

    def observe(
        self,
        *,
        model: str,
        node: str,
        route: str,
        outcome: str,
        first_token: float | None,
        tokens: int,
        generating: float,
    ) -> None: ...


@dataclass(frozen=True)
class Event:
    """What a turn tells its client.

    ``kind``: delta, thinking, tool_calls (the model's function calls for the client), heartbeat, amendment,
    end or error; and the agent's steps (iteration, agent_call, tool_progress with ``status`` calling/result).
    """

    kind: str
    text: str = ""
    tool_calls: tuple[ToolCall, ...] = ()
    finish_reason: str = ""
    usage: Usage | None = None
    error: ChatError | None = None
    kinds: tuple[str, ...] = ()
    elapsed: float = 0.0
    iteration: int = 0
    name: str = ""
    status: str = ""


class Turn:
    """A prepared turn run against its model; iterate :meth:`events` once."""

    def __init__(
        self,
        db: Database,
        settings: OrchestratorSettings,
        router: ModelRouter,
        prepared: Prepared,
        metrics: TurnMetrics | None = None,
    ):
        self.db, self.settings, self.router, self.p, self.metrics = db, settings, router, prepared, metrics
        self.started = time.monotonic()
        self.deadline = self.started + settings.chat_timeout_seconds
        self.visible = HoldBack(settings.chat_stream_holdback_chars)
        self.thinking = HoldBack(settings.chat_stream_holdback_chars)
        self.split = ThinkSplit()
        self.tool_calls: list[ToolCall] = []
        self.usage = Usage()
        self.finish_reason = "stop"
        self.target: Target | None = None
        self.first_token_at: float | None = None
        self.outcome = "error"
        self.error_code: str | None = None
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._response: Any = None
        self._ended = False  # the end or error event was given
        self.agent_parts: list[dict[str, Any]] = []  # the agent's tool_call and tool_result parts
        self.agent = (
            PmSteps(db, settings, router, prepared, deadline=self.deadline, stop=self._stop, on_target=self._on_target)
            if prepared.request.is_pm
            else None
        )

    # -- the model, read in a thread of its own so heartbeats and disconnects are seen --------

    def _read(self, out: queue.Queue[Item]) -> None:
        body = self.p.body
        if self.agent is not None:
            try:
                for step in self.agent.events():
                    out.put(step)
                    if self._stop.is_set():
                        return
            except ChatError as exc:
                out.put(exc)
                return
            except Exception:  # noqa: BLE001 - an agent fault ends the turn with an internal error, logged
                log.exception("chat turn: the PM agent failed")
                out.put(ChatError(500, "internal_error", "Internal error"))
                return
            body = self.agent.reply_body
        pieces = self.router.stream(
            body, user_id=str(self.p.user_id), deadline=self.deadline, on_target=self._on_target
        )
        try:
            for piece in pieces:
                if self._stop.is_set():
                    break
                out.put(piece)
            out.put(None)
        except ChatError as exc:
            out.put(exc)
        except Exception:  # noqa: BLE001 - a reader fault ends the turn with an internal error, logged
            log.exception("chat turn reader failed")
            out.put(ChatError(500, "internal_error", "Internal error"))
        finally:
            close = getattr(pieces, "close", None)
            if close is not None:
                close()

    def _on_target(self, target: Target, response: Any) -> None:
        with self._lock:
            self.target = target
            self._response = response
            if self._stop.is_set():
                response.close()

    def _close_call(self) -> None:
        """Close the model call in flight: the node stops its backend at the next token."""
        with self._lock:
            if self._response is not None:
                self._response.close()

    def events(self) -> Iterator[Event]:
        """The turn's events; closing this iterator early (the client left) cancels the turn."""
        out: queue.Queue[Item] = queue.Queue(maxsize=64)
        reader = threading.Thread(target=self._read, args=(out,), name="chat-turn", daemon=True)
        reader.start()
        try:
            if self.agent is None:
                yield Event("iteration", iteration=1)
            while True:
                remaining = self.deadline - time.monotonic()
                if remaining <= 0:
                    self.outcome, self.error_code = "timeout", "cynodeai_completion_timeout"
                    self._ended = True
                    yield Event("error", error=_timeout())
                    return
                try:
                    item = out.get(timeout=min(HEARTBEAT_SECONDS, remaining))
                except queue.Empty:
                    yield Event("heartbeat", elapsed=time.monotonic() - self.started)
                    continue
                if item is None:
                    yield from self._finish()
                    return
                if isinstance(item, ChatError):
                    self.error_code, self._ended = item.code, True
                    yield Event("error", error=item)
                    return
                if isinstance(item, AgentEvent):
                    yield from self._step(item)
                    continue
                yield from self._take(item)
        except GeneratorExit:
            if not self._ended:  # closed before its end or error was given: the client left
                self.outcome, self.error_code = "canceled", "request_canceled"
            raise
        finally:
            self._stop.set()
            self._close_call()
            self._store()

    def _take(self, piece: Piece) -> Iterator[Event]:
        if self.first_token_at is None and (piece.content or piece.thinking or piece.tool_calls):
            self.first_token_at = time.monotonic()
        visible, thought = self.split.feed(piece.content)
        thought = piece.thinking + thought
        if thought:
            released = self.thinking.feed(thought)
            if released:
                yield Event("thinking", text=released)
        if visible:
            released = self.visible.feed(visible)
            if released:
                yield Event("delta", text=released)
        for raw in piece.tool_calls:
            found = raw.get("function")
            function: dict[str, Any] = found if isinstance(found, dict) else {}
            arguments = function.get("arguments", {})
            text = arguments if isinstance(arguments, str) else json.dumps(arguments)
            call = ToolCall(new_call_id(), str(function.get("name", "")), redact(text).text)
            self.tool_calls.append(call)
            yield Event("tool_calls", tool_calls=(call,))
        if piece.done:
            self.usage = Usage(piece.prompt_tokens, piece.completion_tokens)
            self.finish_reason = "length" if piece.done_reason == "length" else "stop"

    def _step(self, step: AgentEvent) -> Iterator[Event]:
        """An agent event as the client's event, and the parts kept with the answer (redacted, bounded)."""
        if step.kind == "iteration":
            yield Event("iteration", iteration=step.iteration)
        elif step.kind == "tool_call":
            arguments = redact(step.arguments).text[:MAX_PART_ARGUMENTS]
            self.agent_parts.append(
                {"type": "tool_call", "name": step.tool, "arguments": arguments, "call_id": step.call_id}
            )
            yield Event("agent_call", name=step.tool, text=arguments)
        elif step.kind == "tool_progress":
            yield Event("tool_progress", name=step.tool, status="calling")
        elif step.kind == "tool_result":
            preview = redact(step.preview).text
            self.agent_parts.append(
                {
                    "type": "tool_result",
                    "name": step.tool,
                    "call_id": step.call_id,
                    "status": step.status,
                    "preview": preview[:MAX_PART_PREVIEW],
                }
            )
            yield Event("tool_progress", name=step.tool, status="result", text=preview[:PREVIEW_CHARS])

    def _finish(self) -> Iterator[Event]:
        visible, thought = self.split.finish()
        if thought:
            self.thinking.feed(thought)
        rest_thinking = self.thinking.finish()
        if rest_thinking:
            yield Event("thinking", text=rest_thinking)
        if visible:
            self.visible.feed(visible)
        rest = self.visible.finish()
        if rest:
            yield Event("delta", text=rest)
        kinds = tuple(sorted(self.visible.kinds | self.thinking.kinds))
        if kinds or self.visible.amended:
            yield Event("amendment", text=self.visible.redacted, kinds=kinds)
        if self.tool_calls:
            self.finish_reason = "tool_calls"
        self.outcome, self._ended = "success", True
        yield Event("end", finish_reason=self.finish_reason, usage=self.usage)

    # -- what is kept -------------------------------------------------------------------------

    def _store(self) -> None:
        """The assistant turn (redacted; marked interrupted unless it ended well) and the audit row."""
        text = self.visible.redacted if self.outcome == "success" else self.visible.sent
        thinking = self.thinking.redacted
        metadata: dict[str, Any] = {"model_id": self.p.request.model, "route": self.p.route, "turn_kind": "assistant"}
        metadata.update(self.p.extra_metadata)
        metadata["context_chars"] = self.p.context_chars
        metadata["context_tokens_est"] = self.p.context_chars // 4
        parts: list[dict[str, Any]] = list(self.agent_parts)
        if thinking:
            parts.append({"type": "thinking", "text": thinking[:MAX_THINKING_CHARS]})
            if len(thinking) > MAX_THINKING_CHARS:
                metadata["reasoning_redacted"] = True
        for call in self.tool_calls:
            parts.append(
                {"type": "tool_call", "name": call.name, "arguments": call.arguments[:2048], "call_id": call.id}
            )
        if parts:
            parts.append({"type": "text", "text": text})
            metadata["parts"] = parts
        if self.outcome != "success":
            metadata["interrupted"] = True
        kinds = sorted(set(self.p.input_kinds) | self.visible.kinds | self.thinking.kinds)
        try:
            with self.db.session() as session:
                thread = chat_threads.own_thread(session, self.p.user_id, self.p.thread_id)
                if thread is not None and (text or parts or self.outcome == "success"):
                    chat_threads.append_message(session, thread, "assistant", text, metadata)
                chat_threads.audit(
                    session,
                    user_id=self.p.user_id,
                    project_id=self.p.project_id,
                    outcome=self.outcome,
                    error_code=None if self.outcome == "success" else self.error_code,
                    redaction_applied=bool(kinds),
                    redaction_kinds=kinds or None,
                    duration_ms=int((time.monotonic() - self.started) * 1000),
                    request_id=self.p.request_id,
                    thread_id=self.p.thread_id,
                    model=self.p.request.model,
                    route=self.p.route,
                    endpoint=self.p.endpoint,
                    stream=self.p.request.stream,
                    node_slug=self.target.node_slug if self.target else None,
                    prompt_tokens=self.usage.prompt_tokens or None,
                    completion_tokens=self.usage.completion_tokens or None,
                )
        except Exception:  # noqa: BLE001 - the answer went out; a failed write is logged, not raised into it
            log.exception("chat turn: storing the answer failed")
        ended = time.monotonic()
        if self.metrics is not None:
            first = None if self.first_token_at is None else self.first_token_at - self.started
            self.metrics.observe(
                model=self.p.request.model,
                node=self.target.node_slug if self.target else "",
                route=self.p.route,
                outcome=self.outcome,
                first_token=first,
                tokens=self.usage.completion_tokens,
                generating=ended - (self.first_token_at or ended),
            )
        log.info(
            "chat turn %s: route %s, model %s, node %s, %s in %.2f s",
            self.p.thread_id,
            self.p.route,
            self.p.request.model,
            self.target.node_slug if self.target else "-",
            self.outcome,
            time.monotonic() - self.started,
        )


def _timeout() -> ChatError:
    return ChatError(504, "cynodeai_completion_timeout", "Completion did not finish before the maximum wait duration")
