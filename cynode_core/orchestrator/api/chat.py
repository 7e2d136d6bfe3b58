"""The OpenAI-compatible endpoints: ``GET /v1/models``, ``POST /v1/chat/completions``, ``POST /v1/responses``.

Every error here is an OpenAI error object (``{"error": {...}}``), for every
status including 401 and 413, not problem+json (chat contract 0). A request
is checked, its user turn stored and its context built before the answer
starts; after that, failures of a stream are in-stream errors
(``chat.render``). Every authenticated request leaves one
``chat_audit_log`` row, also when it is refused before the model runs.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable, Iterator
from typing import Any

from flask import Response, current_app, request
from flask.views import MethodView
from werkzeug.exceptions import HTTPException

from cynode_core.contract.errors import CynodeError
from cynode_core.http_limits import decode_json_body
from cynode_core.logs import current_request_id
from cynode_core.orchestrator.api import Blueprint
from cynode_core.orchestrator.api.chat_docs import CHAT_DOC, MODELS_DOC, RESPONSES_DOC
from cynode_core.orchestrator.api.http import app_extension
from cynode_core.orchestrator.api.tokens import current_user, require_user
from cynode_core.orchestrator.chat.errors import ChatError, as_chat_error, error_object, invalid
from cynode_core.orchestrator.chat.gate import ChatSurface, TurnGate
from cynode_core.orchestrator.chat.inference import ModelRouter
from cynode_core.orchestrator.chat.prepare import THREAD_HEADER, Prepared, prepare
from cynode_core.orchestrator.chat.render import collect, completion_stream, responses_stream
from cynode_core.orchestrator.chat.responses_wire import (
    new_message_id,
    new_response_id,
    read_responses_request,
    response_object,
)
from cynode_core.orchestrator.chat.turn import Turn
from cynode_core.orchestrator.chat.wire import (
    PM_MODEL,
    ChatRequest,
    completion,
    model_list,
    new_completion_id,
    read_chat_request,
)
from cynode_core.orchestrator.services import chat_threads

log = logging.getLogger(__name__)

blp = Blueprint(
    "chat",
    __name__,
    url_prefix="/v1",
    description="The OpenAI-compatible chat surface: errors are OpenAI error objects, not problem details.",
)

EVENTS_HEADER = "X-CyNodeAI-Events"


def surface() -> ChatSurface:
    """This app's chat surface, made on first use."""

    def make(state: Any) -> ChatSurface:
        select = state.pm.hook.cynode_select_inference_node
        router = ModelRouter(state.db, state.settings, select, state.cipher)
        return ChatSurface(router, TurnGate(state.settings.chat_max_concurrent_per_user))

    return app_extension("cynode_chat", make)  # type: ignore[no-any-return]


def openai_error(error: ChatError) -> Response:
    response = Response(json.dumps(error_object(error)), status=error.status, mimetype="application/json")
    retry_after = error.extra.get("retry_after")
    if retry_after:
        response.headers["Retry-After"] = str(retry_after)
    return response


def _from_http(exc: HTTPException) -> ChatError:
    code = exc.code or 500
    named = {413: "request_too_large", 415: "unsupported_media_type", 405: "method_not_allowed"}
    if code in named:
        return ChatError(code, named[code], exc.description or named[code].replace("_", " "))
    return ChatError(code, "invalid_request" if code < 500 else "internal_error", exc.description or "")


@blp.errorhandler(CynodeError)
def _chat_error(exc: CynodeError) -> Response:
    return openai_error(as_chat_error(exc))


@blp.errorhandler(HTTPException)
def _http_error(exc: HTTPException) -> Response:
    return openai_error(_from_http(exc))


def read_body() -> Any:
    """The request's JSON body, checked as every route's is (415 when it is not JSON)."""
    if request.mimetype and request.mimetype != "application/json" and not request.mimetype.endswith("+json"):
        raise ChatError(415, "unsupported_media_type", "Request body must be JSON")
    data = request.get_data(cache=False)
    if not data.strip():
        raise invalid("Invalid request body")
    try:
        return decode_json_body(data)
    except ValueError as exc:  # json.JSONDecodeError: not JSON, or a value or shape refused
        raise invalid("Invalid request body") from exc


@blp.route("/models")
class Models(MethodView):
    @blp.doc(**MODELS_DOC)
    @require_user
    def get(self) -> Response:
        """List the models the caller may chat with: `cynodeai.pm` first, then every model a ready node serves."""
        models = [PM_MODEL, *surface().router.served_models()]
        return Response(json.dumps(model_list(models)), mimetype="application/json")


def _audit_refusal(endpoint: str, error: ChatError, started: float, body: Any) -> None:
    """The audit row of a request refused before its turn ran (the turn writes its own otherwise)."""
    model = body.get("model") if isinstance(body, dict) and isinstance(body.get("model"), str) else None
    stream = isinstance(body, dict) and body.get("stream") is True
    try:
        with current_app.extensions["cynode"].db.session() as session:
            chat_threads.audit(
                session,
                user_id=current_user().id,
                outcome="error",
                error_code=error.code,
                duration_ms=int((time.monotonic() - started) * 1000),
                request_id=current_request_id(),
                model=(model or PM_MODEL)[:200],
                endpoint=endpoint,
                stream=stream,
            )
    except Exception:  # noqa: BLE001 - the refusal is answered either way
        log.exception("chat audit of a refused request failed")


def _serve(
    endpoint: str,
    read: Callable[[Any], tuple[ChatRequest, dict[str, Any]]],
    answer: Callable[[Turn, Prepared, dict[str, Any]], Response],
) -> Response:
    """Check, gate, prepare and answer one turn; refusals are audited and answered as OpenAI errors."""
    state = current_app.extensions["cynode"]
    chat, user, started, body = surface(), current_user(), time.monotonic(), None
    try:
        body = read_body()
        chat_request, extra = read(body)
        chat.gate.enter(user.id)
    except (CynodeError, HTTPException) as exc:
        error = _from_http(exc) if isinstance(exc, HTTPException) else as_chat_error(exc)
        _audit_refusal(endpoint, error, started, body)
        raise error from exc
    turn = None
    try:
        prepared = prepare(
            state.db,
            state.settings,
            chat.router,
            chat_request,
            user_id=user.id,
            project_header=request.headers.get("OpenAI-Project"),
            endpoint=endpoint,
            request_id=current_request_id(),
            previous_response_id=extra.get("previous_response_id"),
            thread_header=request.headers.get(THREAD_HEADER),
            system=extra.get("instructions"),
        )
        prepared.extra_metadata.update(extra.get("metadata", {}))
        turn = Turn(state.db, state.settings, chat.router, prepared, state.metrics.chat)
        response = answer(turn, prepared, extra)
    except CynodeError as exc:
        chat.gate.leave(user.id)
        error = as_chat_error(exc)
        if turn is None:  # refused before its turn ran (a turn audits itself)
            _audit_refusal(endpoint, error, started, body)
        raise error from exc
    except BaseException:
        chat.gate.leave(user.id)
        raise
    if chat_request.stream:
        response.call_on_close(lambda: chat.gate.leave(user.id))
    else:
        chat.gate.leave(user.id)
    return response


def _named() -> bool:
    return request.headers.get(EVENTS_HEADER, "").strip().lower() == "true"


def _event_stream(body: Iterator[str]) -> Response:
    def run() -> Iterator[bytes]:
        try:
            for text in body:
                yield text.encode()
        finally:
            close = getattr(body, "close", None)
            if close is not None:
                close()

    response = Response(run(), mimetype="text/event-stream")
    response.headers["Cache-Control"] = "no-cache"
    response.headers["X-Accel-Buffering"] = "no"
    return response


@blp.route("/chat/completions")
class ChatCompletions(MethodView):
    @blp.doc(**CHAT_DOC)
    @require_user
    def post(self) -> Response:
        """Answer a chat, whole or streamed (`stream: true`), as OpenAI's `chat.completion` (or its chunks).

        `model` `cynodeai.pm` (or none) is the project-manager surface; any other model must be one that
        `GET /v1/models` lists. The conversation is kept in the caller's active thread.
        """
        settings = current_app.extensions["cynode"].settings

        def read(body: Any) -> tuple[ChatRequest, dict[str, Any]]:
            limits = {"max_messages": settings.chat_max_messages, "max_message_bytes": settings.chat_max_message_bytes}
            return read_chat_request(body, **limits), {}

        def answer(turn: Turn, prepared: Prepared, _extra: dict[str, Any]) -> Response:
            model = prepared.request.model
            if prepared.request.stream:
                named, usage = _named(), prepared.request.include_usage
                return _event_stream(completion_stream(turn.events(), model, named=named, include_usage=usage))
            whole = collect(turn.events())
            body = completion(
                new_completion_id(),
                model,
                whole.text,
                whole.finish_reason,
                whole.usage,
                tuple(whole.tool_calls),
            )
            return Response(json.dumps(body), mimetype="application/json")

        return _serve("chat.completions", read, answer)


@blp.route("/responses")
class Responses(MethodView):
    @blp.doc(**RESPONSES_DOC)
    @require_user
    def post(self) -> Response:
        """Answer an OpenAI Responses request (`input` a string or message items); `previous_response_id` continues.

        The answer is OpenAI's `response` object, or its named events with `stream: true`.
        """
        settings = current_app.extensions["cynode"].settings

        def read(body: Any) -> tuple[ChatRequest, dict[str, Any]]:
            asked = read_responses_request(body, max_message_bytes=settings.chat_max_message_bytes)
            response_id = new_response_id()
            extra = {
                "previous_response_id": asked.previous_response_id,
                "instructions": asked.instructions,
                "response_id": response_id,
                "metadata": {"response_id": response_id},
            }
            return asked.chat, extra

        def answer(turn: Turn, prepared: Prepared, extra: dict[str, Any]) -> Response:
            model, message_id = prepared.request.model, new_message_id()
            previous, response_id = extra["previous_response_id"], extra["response_id"]
            if prepared.request.stream:
                events = responses_stream(turn.events(), model, response_id, message_id, previous, named=_named())
                return _event_stream(events)
            whole = collect(turn.events())
            body = response_object(
                response_id,
                model,
                status="completed",
                text=whole.text,
                message_id=message_id,
                previous=previous,
                usage=whole.usage,
            )
            return Response(json.dumps(body), mimetype="application/json")

        return _serve("responses", read, answer)
