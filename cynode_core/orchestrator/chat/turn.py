"""One chat turn, from a checked request to the stored answer (chat contract 4.2).

:func:`prepare` does everything that may still be answered with an HTTP
error: the model check, the project, redaction, the thread, the stored user
message, the model context and the title. :meth:`Turn.events` then runs the
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
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from cynode_core.orchestrator.chat.errors import ChatError, invalid
from cynode_core.orchestrator.chat.inference import ModelRouter, Piece, Target
from cynode_core.orchestrator.chat.streaming import HoldBack, ThinkSplit
from cynode_core.orchestrator.chat.wire import ChatRequest, InMessage, ToolCall, Usage, new_call_id
from cynode_core.orchestrator.db import Database
from cynode_core.orchestrator.services import chat_threads
from cynode_core.orchestrator.services.redaction import redact
from cynode_core.orchestrator.services.tasks import default_project
from cynode_core.orchestrator.settings import OrchestratorSettings

log = logging.getLogger(__name__)

HEARTBEAT_SECONDS = 5.0
PM_SYSTEM_PROMPT = (
    "You are the project manager of a self-hosted CyNodeAI cluster. You help the user plan and follow "
    "their work: answer clearly and briefly, and say so when you do not know."
)
MAX_THINKING_CHARS = 16 * 1024


@dataclass(frozen=True)
class Event:
    """What a turn tells its client: ``kind`` is delta, thinking, tool_calls, heartbeat, amendment, end or error."""

    kind: str
    text: str = ""
    tool_calls: tuple[ToolCall, ...] = ()
    finish_reason: str = ""
    usage: Usage | None = None
    error: ChatError | None = None
    kinds: tuple[str, ...] = ()
    elapsed: float = 0.0


@dataclass
class Prepared:
    """A turn ready to run: who, where, and the Ollama body for the model."""

    user_id: uuid.UUID
    project_id: uuid.UUID
    thread_id: uuid.UUID
    request: ChatRequest
    model: str  # the model the node runs (the PM's model for cynodeai.pm)
    body: dict[str, Any]
    endpoint: str
    request_id: str | None
    input_kinds: tuple[str, ...]
    context_chars: int
    extra_metadata: dict[str, Any] = field(default_factory=dict)

    @property
    def route(self) -> str:
        return "pm" if self.request.is_pm else "direct"


def effective_project(session: Any, user_id: uuid.UUID, header: str | None) -> uuid.UUID:
    """The ``OpenAI-Project`` header's project, which must be the caller's own; absent: the default."""
    own = default_project(session, user_id)
    if header is None:
        return own
    try:
        wanted = uuid.UUID(header.strip())
    except ValueError:
        wanted = None
    if wanted != own:
        raise invalid("OpenAI-Project is not a project you may use", "OpenAI-Project")
    return own


def _ollama_message(message: InMessage, text: str) -> dict[str, Any]:
    role = "system" if message.role == "developer" else message.role
    out: dict[str, Any] = {"role": role, "content": text}
    if message.tool_calls:
        out["tool_calls"] = [
            {"function": {"name": c.name, "arguments": _arguments(c.arguments)}} for c in message.tool_calls
        ]
    if message.role == "tool" and message.name:
        out["tool_name"] = message.name
    return out


def _arguments(text: str) -> Any:
    try:
        value = json.loads(text)
    except ValueError:
        return {}
    return value if isinstance(value, dict) else {}


def prepare(
    db: Database,
    settings: OrchestratorSettings,
    router: ModelRouter,
    request: ChatRequest,
    *,
    user_id: uuid.UUID,
    project_header: str | None,
    endpoint: str,
    request_id: str | None,
    previous_response_id: str | None = None,
    system: str | None = None,
) -> Prepared:
    """Check, store the user turn and build the model's context; ``ChatError`` for what the client must fix."""
    if request.is_pm:
        model = settings.pma_model or settings.inference_model
        if not settings.pma_enabled or not router.serves(model):
            raise ChatError(503, "model_unavailable", "PM agent is not available")
    else:
        model = request.model
        if not router.serves(model):
            raise ChatError(404, "model_not_found", f"The model {model[:100]!r} does not exist", param="model")
    redacted = [(m, redact(m.text or "")) for m in request.messages]
    kinds = tuple(sorted({k for _, r in redacted for k in r.kinds}))
    users = [r.text for m, r in redacted if m.role == "user" and r.text.strip()]
    if not users:
        raise invalid("At least one user message is required", "messages")
    with db.session() as session:
        project_id = effective_project(session, user_id, project_header)
        thread_id = None
        if previous_response_id is not None:
            continued = chat_threads.thread_of_response(session, user_id, previous_response_id)
            thread_id = continued.id if continued is not None else uuid.uuid4()  # unknown: refused below
        if thread_id is None:
            thread = chat_threads.active_thread(session, user_id, project_id, settings.chat_thread_idle_seconds)
        else:
            found = chat_threads.own_thread(session, user_id, thread_id)
            if found is None or found.project_id != project_id:
                raise invalid("previous_response_id not found or not owned by you", "previous_response_id")
            thread = found
        continuing = request.continues_tool_calls and redacted[-1][0].role != "user"
        if not continuing:
            chat_threads.append_message(session, thread, "user", users[-1])
        chat_threads.set_title_if_none(session, thread, chat_threads.title_from(users[0]))
        past = chat_threads.history(
            session, thread.id, max_messages=settings.chat_history_messages, max_chars=settings.chat_history_chars
        )
        thread_key = thread.id
    if request.continues_tool_calls or not past:
        # A tool round trip lives in the request (the thread keeps user turns and answers only).
        messages = [_ollama_message(m, r.text) for m, r in redacted if m.role not in ("system", "developer")]
    else:
        messages = [{"role": h.role, "content": h.content} for h in past if h.role in ("user", "assistant")]
    if request.is_pm:
        messages.insert(0, {"role": "system", "content": PM_SYSTEM_PROMPT})
    else:
        systems = [r.text for m, r in redacted if m.role in ("system", "developer")]
        if system is not None:
            systems.append(redact(system).text)
        if systems:
            messages.insert(0, {"role": "system", "content": systems[-1]})
    body: dict[str, Any] = {"model": model, "messages": messages}
    if not request.is_pm:
        if request.options:
            body["options"] = dict(request.options)
        if request.tools and request.tool_choice != "none":
            body["tools"] = list(request.tools)
            if request.tool_choice not in (None, "auto"):
                body["tool_choice"] = request.tool_choice
    chars = sum(len(str(m.get("content") or "")) for m in messages)
    return Prepared(user_id, project_id, thread_key, request, model, body, endpoint, request_id, kinds, chars)


class Turn:
    """A prepared turn run against its model; iterate :meth:`events` once."""

    def __init__(self, db: Database, settings: OrchestratorSettings, router: ModelRouter, prepared: Prepared):
        self.db, self.settings, self.router, self.p = db, settings, router, prepared
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

    # -- the model, read in a thread of its own so heartbeats and disconnects are seen --------

    def _read(self, out: queue.Queue[Piece | ChatError | None]) -> None:
        pieces = self.router.stream(
            self.p.body, user_id=str(self.p.user_id), deadline=self.deadline, on_target=self._on_target
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
        out: queue.Queue[Piece | ChatError | None] = queue.Queue(maxsize=64)
        reader = threading.Thread(target=self._read, args=(out,), name="chat-turn", daemon=True)
        reader.start()
        try:
            while True:
                remaining = self.deadline - time.monotonic()
                if remaining <= 0:
                    self.outcome, self.error_code = "timeout", "cynodeai_completion_timeout"
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
                    self.error_code = item.code
                    yield Event("error", error=item)
                    return
                yield from self._take(item)
        except GeneratorExit:
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
        self.outcome = "success"
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
        parts: list[dict[str, Any]] = []
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
