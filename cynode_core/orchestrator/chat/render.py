"""A turn's events as an HTTP answer: a whole OpenAI object, or server-sent events (chat contract 4.4, 5).

The chat completion stream is OpenAI chunks only, plus the named
``cynodeai.*`` events for clients that asked for them (``named``); a quiet
wait is a ``cynodeai.heartbeat`` event for those, an SSE comment for the
others. The Responses stream uses OpenAI's named ``response.*`` events.
Both end with ``data: [DONE]``; an error after the start is one error line
(or ``response.failed``) and then ``[DONE]``.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any

from cynode_core.orchestrator.chat.errors import error_object
from cynode_core.orchestrator.chat.responses_wire import response_object
from cynode_core.orchestrator.chat.turn import Event
from cynode_core.orchestrator.chat.wire import ToolCall, Usage, chunk, new_completion_id, usage_chunk

DONE = "data: [DONE]\n\n"
HEARTBEAT_COMMENT = ": heartbeat\n\n"


def sse(data: Any, event: str | None = None) -> str:
    head = f"event: {event}\n" if event else ""
    return f"{head}data: {json.dumps(data, separators=(',', ':'))}\n\n"


@dataclass
class Whole:
    """A turn read to its end: the visible text, the tool calls, how it ended."""

    text: str = ""
    tool_calls: list[ToolCall] = field(default_factory=list)
    finish_reason: str = "stop"
    usage: Usage | None = None


def collect(events: Iterable[Event]) -> Whole:
    """Read a turn to its end; its error is raised."""
    whole = Whole()
    for event in events:
        if event.kind == "delta":
            whole.text += event.text
        elif event.kind == "tool_calls":
            whole.tool_calls.extend(event.tool_calls)
        elif event.kind == "amendment":
            whole.text = event.text
        elif event.kind == "error":
            assert event.error is not None
            raise event.error
        elif event.kind == "end":
            whole.finish_reason, whole.usage = event.finish_reason, event.usage
    return whole


def _named_extra(event: Event) -> str:
    """The ``cynodeai.*`` event of an iteration, agent step, thinking delta, heartbeat or amendment (opted in)."""
    if event.kind == "iteration":
        return sse({"iteration": event.iteration}, "cynodeai.iteration_start")
    if event.kind == "agent_call":
        return sse({"name": event.name, "arguments": event.text}, "cynodeai.tool_call")
    if event.kind == "tool_progress":
        progress = {"state": event.status, "tool": event.name}
        if event.status == "result":
            progress["preview"] = event.text
        return sse(progress, "cynodeai.tool_progress")
    if event.kind == "thinking":
        return sse({"content": event.text}, "cynodeai.thinking_delta")
    if event.kind == "heartbeat":
        return sse({"elapsed_s": int(event.elapsed), "status": "processing"}, "cynodeai.heartbeat")
    if event.kind == "amendment":
        amendment = {
            "type": "secret_redaction",
            "content": event.text,
            "redacted": event.text,
            "redaction_kinds": list(event.kinds),
            "scope": "turn",
            "reason": "secret_redaction",
        }
        return sse(amendment, "cynodeai.amendment")
    return ""


def completion_stream(events: Iterable[Event], model: str, *, named: bool, include_usage: bool) -> Iterator[str]:
    """The ``chat.completion.chunk`` stream of a turn."""
    cid, created = new_completion_id(), int(time.time())
    yield sse(chunk(cid, model, {"role": "assistant", "content": ""}, created=created))
    index = 0
    for event in events:
        if event.kind == "delta":
            yield sse(chunk(cid, model, {"content": event.text}, created=created))
        elif event.kind == "tool_calls":
            calls = [c.to_openai(index + n) for n, c in enumerate(event.tool_calls)]
            index += len(calls)
            yield sse(chunk(cid, model, {"tool_calls": calls}, created=created))
        elif event.kind == "error":
            assert event.error is not None
            yield sse(error_object(event.error, with_param=False))
            break
        elif event.kind == "end":
            yield sse(chunk(cid, model, {}, event.finish_reason, created=created))
            if include_usage and event.usage is not None:
                yield sse(usage_chunk(cid, model, event.usage, created=created))
        elif named:
            yield _named_extra(event)
        elif event.kind == "heartbeat":
            yield HEARTBEAT_COMMENT
    yield DONE


def responses_stream(
    events: Iterable[Event], model: str, response_id: str, message_id: str, previous: str | None, *, named: bool
) -> Iterator[str]:
    """The Responses event stream of a turn."""
    created = int(time.time())

    def state(status: str, **more: Any) -> dict[str, Any]:
        return response_object(response_id, model, status=status, previous=previous, created_at=created, **more)

    started = state("in_progress")
    yield sse({"type": "response.created", "response": started}, "response.created")
    text = ""
    for event in events:
        if event.kind == "delta":
            text += event.text
            delta = {
                "type": "response.output_text.delta",
                "item_id": message_id,
                "output_index": 0,
                "content_index": 0,
                "delta": event.text,
            }
            yield sse(delta, "response.output_text.delta")
        elif event.kind == "amendment":
            text = event.text
            if named:
                yield _named_extra(event)
        elif event.kind == "error":
            assert event.error is not None
            failed = state("failed")
            failed["error"] = {"code": event.error.code, "message": event.error.detail}
            yield sse({"type": "response.failed", "response": failed}, "response.failed")
            break
        elif event.kind == "end":
            done = state("completed", text=text, message_id=message_id, usage=event.usage)
            yield sse({"type": "response.completed", "response": done}, "response.completed")
        elif named:
            yield _named_extra(event)
        elif event.kind == "heartbeat":
            yield HEARTBEAT_COMMENT
    yield DONE
