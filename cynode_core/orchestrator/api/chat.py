"""The OpenAI-compatible endpoints: ``GET /v1/models`` and ``POST /v1/chat/completions`` (chat contract 3 to 5).

Every error here is an OpenAI error object (``{"error": {...}}``), for every
status including 401 and 413, not problem+json (chat contract 0). A request
is checked, its user turn stored and its context built before the answer
starts; after that, failures of a stream are in-stream errors. A stream is a
pure OpenAI chunk stream unless the client opts in to the named
``cynodeai.*`` events with ``X-CyNodeAI-Events: true``; heartbeats are then
``cynodeai.heartbeat`` events, else SSE comments.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Iterator
from typing import Any

from flask import Response, current_app, request
from flask.views import MethodView
from werkzeug.exceptions import HTTPException

from cynode_core.contract.errors import CynodeError
from cynode_core.http_limits import decode_json_body
from cynode_core.logs import current_request_id
from cynode_core.orchestrator.api import Blueprint
from cynode_core.orchestrator.api.tokens import current_user, require_user
from cynode_core.orchestrator.chat.errors import ChatError, as_chat_error, error_object, invalid
from cynode_core.orchestrator.chat.gate import ChatSurface, TurnGate
from cynode_core.orchestrator.chat.inference import ModelRouter
from cynode_core.orchestrator.chat.turn import Prepared, Turn, prepare
from cynode_core.orchestrator.chat.wire import (
    PM_MODEL,
    ToolCall,
    chunk,
    completion,
    model_list,
    new_completion_id,
    read_chat_request,
    usage_chunk,
)

log = logging.getLogger(__name__)

blp = Blueprint(
    "chat",
    __name__,
    url_prefix="/v1",
    description="The OpenAI-compatible chat surface: errors are OpenAI error objects, not problem details.",
)

EVENTS_HEADER = "X-CyNodeAI-Events"
_SURFACE_LOCK = threading.Lock()


def surface() -> ChatSurface:
    """This app's chat surface, made on first use."""
    extensions = current_app.extensions
    with _SURFACE_LOCK:
        found = extensions.get("cynode_chat")
        if found is None:
            state = extensions["cynode"]
            router = ModelRouter(state.db, state.settings, state.pm.hook.cynode_select_inference_node, state.cipher)
            found = extensions["cynode_chat"] = ChatSurface(
                router, TurnGate(state.settings.chat_max_concurrent_per_user)
            )
    return found


def openai_error(error: ChatError) -> Response:
    response = Response(json.dumps(error_object(error)), status=error.status, mimetype="application/json")
    retry_after = error.extra.get("retry_after")
    if retry_after:
        response.headers["Retry-After"] = str(retry_after)
    return response


@blp.errorhandler(CynodeError)
def _chat_error(exc: CynodeError) -> Response:
    return openai_error(as_chat_error(exc))


@blp.errorhandler(HTTPException)
def _http_error(exc: HTTPException) -> Response:
    code = exc.code or 500
    if code == 413:
        return openai_error(ChatError(413, "request_too_large", "Request body too large"))
    if code == 415:
        return openai_error(ChatError(415, "unsupported_media_type", "Request body must be JSON"))
    if code == 405:
        return openai_error(ChatError(405, "method_not_allowed", "Method not allowed"))
    return openai_error(ChatError(code, "invalid_request" if code < 500 else "internal_error", exc.description or ""))


def read_body() -> Any:
    """The request's JSON body, checked as every route's is (415 when it is not JSON)."""
    if request.mimetype and request.mimetype != "application/json" and not request.mimetype.endswith("+json"):
        raise ChatError(415, "unsupported_media_type", "Request body must be JSON")
    try:
        return decode_json_body(request.get_data(cache=False))
    except CynodeError as exc:
        raise invalid("Invalid request body") from exc


@blp.route("/models")
class Models(MethodView):
    @require_user
    def get(self) -> Response:
        """List the models the caller may chat with: `cynodeai.pm` first, then every model a ready node serves."""
        models = [PM_MODEL, *surface().router.served_models()]
        return Response(json.dumps(model_list(models)), mimetype="application/json")


@blp.route("/chat/completions")
class ChatCompletions(MethodView):
    @require_user
    def post(self) -> Response:
        """Answer a chat, whole or streamed (`stream: true`), as OpenAI's `chat.completion` (or its chunks).

        `model` `cynodeai.pm` (or none) is the project-manager surface; any other model must be one that
        `GET /v1/models` lists. The conversation is kept in the caller's active thread.
        """
        state = current_app.extensions["cynode"]
        settings = state.settings
        chat = surface()
        user = current_user()
        body = read_body()
        chat_request = read_chat_request(
            body, max_messages=settings.chat_max_messages, max_message_bytes=settings.chat_max_message_bytes
        )
        chat.gate.enter(user.id)
        try:
            prepared = prepare(
                state.db,
                settings,
                chat.router,
                chat_request,
                user_id=user.id,
                project_header=request.headers.get("OpenAI-Project"),
                endpoint="chat.completions",
                request_id=current_request_id(),
            )
        except BaseException:
            chat.gate.leave(user.id)
            raise
        turn = Turn(state.db, settings, chat.router, prepared)
        if not chat_request.stream:
            try:
                return _whole(turn, prepared)
            finally:
                chat.gate.leave(user.id)
        named = request.headers.get(EVENTS_HEADER, "").strip().lower() == "true"
        return _event_stream(_chunks(turn, prepared, named=named), lambda: chat.gate.leave(user.id))


def _whole(turn: Turn, prepared: Prepared) -> Response:
    text, end = "", None
    calls: list[ToolCall] = []
    for event in turn.events():
        if event.kind == "delta":
            text += event.text
        elif event.kind == "tool_calls":
            calls.extend(event.tool_calls)
        elif event.kind == "amendment":
            text = event.text
        elif event.kind == "error":
            assert event.error is not None
            raise event.error
        elif event.kind == "end":
            end = event
    assert end is not None
    body = completion(new_completion_id(), prepared.request.model, text, end.finish_reason, end.usage, tuple(calls))
    return Response(json.dumps(body), mimetype="application/json")


def _sse(data: Any, event: str | None = None) -> str:
    head = f"event: {event}\n" if event else ""
    return f"{head}data: {json.dumps(data, separators=(',', ':'))}\n\n"


def _chunks(turn: Turn, prepared: Prepared, *, named: bool) -> Iterator[str]:
    """The OpenAI chunk stream of a turn (named events only for clients that asked for them)."""
    cid, model, created = new_completion_id(), prepared.request.model, int(time.time())
    yield _sse(chunk(cid, model, {"role": "assistant", "content": ""}, created=created))
    if named:
        yield _sse({"iteration": 1}, "cynodeai.iteration_start")
    index = 0
    for event in turn.events():
        if event.kind == "delta":
            yield _sse(chunk(cid, model, {"content": event.text}, created=created))
        elif event.kind == "thinking" and named:
            yield _sse({"content": event.text}, "cynodeai.thinking_delta")
        elif event.kind == "tool_calls":
            calls = [c.to_openai(index + n) for n, c in enumerate(event.tool_calls)]
            index += len(calls)
            yield _sse(chunk(cid, model, {"tool_calls": calls}, created=created))
        elif event.kind == "heartbeat":
            if named:
                yield _sse({"elapsed_s": int(event.elapsed), "status": "processing"}, "cynodeai.heartbeat")
            else:
                yield ": heartbeat\n\n"
        elif event.kind == "amendment" and named:
            amendment = {
                "type": "secret_redaction",
                "content": event.text,
                "redacted": event.text,
                "redaction_kinds": list(event.kinds),
                "scope": "turn",
                "reason": "secret_redaction",
            }
            yield _sse(amendment, "cynodeai.amendment")
        elif event.kind == "error":
            assert event.error is not None
            yield _sse(error_object(event.error, with_param=False))
            yield "data: [DONE]\n\n"
            return
        elif event.kind == "end":
            yield _sse(chunk(cid, model, {}, event.finish_reason, created=created))
            if prepared.request.include_usage and event.usage is not None:
                yield _sse(usage_chunk(cid, model, event.usage, created=created))
    yield "data: [DONE]\n\n"


def _event_stream(body: Iterator[str], on_close: Any) -> Response:
    def run() -> Iterator[bytes]:
        try:
            for text in body:
                yield text.encode()
        finally:
            close = getattr(body, "close", None)
            if close is not None:
                close()
            on_close()

    response = Response(run(), mimetype="text/event-stream")
    response.headers["Cache-Control"] = "no-cache"
    response.headers["X-Accel-Buffering"] = "no"
    return response
