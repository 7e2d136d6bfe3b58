"""``POST /v1/responses`` in and out (chat contract 6, 5.8): OpenAI's Responses shapes on the chat path.

:func:`read_responses_request` takes ``input`` (a string, or message items
of which the last user one is the new turn) and turns it into the same
:class:`~cynode_core.orchestrator.chat.wire.ChatRequest` chat completions
use; :func:`response_object` writes the ``response`` object the OpenAI SDKs
read (``output[].content[]``).
"""

from __future__ import annotations

import secrets
import time
from dataclasses import dataclass
from typing import Any

from cynode_core.orchestrator.chat.errors import invalid
from cynode_core.orchestrator.chat.wire import (
    ChatRequest,
    InMessage,
    Usage,
    effective_model,
    message_text,
    sampling_options,
)

INPUT_REQUIRED = "input is required (plain string or message array with at least one user message)"
RESPONSE_ID_CHARS = 32


@dataclass(frozen=True)
class ResponsesRequest:
    chat: ChatRequest
    previous_response_id: str | None
    instructions: str | None


def new_response_id() -> str:
    return "resp_" + secrets.token_hex(RESPONSE_ID_CHARS // 2)


def new_message_id() -> str:
    return "msg_" + secrets.token_hex(8)


def _user_text(value: Any, limit: int) -> str | None:
    if isinstance(value, str):
        return message_text(value, limit=limit)
    if not isinstance(value, list):
        raise invalid(INPUT_REQUIRED, "input")
    last = None
    for item in value:
        if not isinstance(item, dict):
            raise invalid("each input item must be an object", "input")
        if item.get("type", "message") != "message" or item.get("role") != "user":
            continue
        last = item
    if last is None:
        return None
    return message_text(last.get("content"), limit=limit)


def read_responses_request(body: Any, *, max_message_bytes: int) -> ResponsesRequest:
    if not isinstance(body, dict):
        raise invalid("Invalid request body")
    if "input" not in body:
        raise invalid(INPUT_REQUIRED, "input")
    text = _user_text(body["input"], max_message_bytes)
    if not text or not text.strip():
        raise invalid(INPUT_REQUIRED, "input")
    previous = body.get("previous_response_id")
    well_formed = isinstance(previous, str) and previous.startswith("resp_") and len(previous) <= 64
    if previous is not None and not well_formed:
        raise invalid("previous_response_id not found or not owned by you", "previous_response_id")
    instructions = body.get("instructions")
    if instructions is not None and not isinstance(instructions, str):
        raise invalid("instructions must be a string", "instructions")
    stream = body.get("stream") or False
    if not isinstance(stream, bool):
        raise invalid("stream must be a boolean", "stream")
    options = sampling_options({k: body.get(k) for k in ("temperature", "top_p", "seed")})
    most = body.get("max_output_tokens")
    if most is not None:
        if isinstance(most, bool) or not isinstance(most, int) or most < 1:
            raise invalid("max_output_tokens must be a positive integer", "max_output_tokens")
        options["num_predict"] = most
    chat = ChatRequest(effective_model(body.get("model")), (InMessage("user", text),), stream, options)
    return ResponsesRequest(chat, previous, instructions)


def response_object(
    response_id: str,
    model: str,
    *,
    status: str,
    text: str = "",
    message_id: str = "",
    previous: str | None = None,
    usage: Usage | None = None,
    created_at: int | None = None,
) -> dict[str, Any]:
    """A ``response`` object; ``output`` holds the assistant message once there is one."""
    body: dict[str, Any] = {
        "id": response_id,
        "object": "response",
        "created_at": created_at if created_at is not None else int(time.time()),
        "status": status,
        "model": model,
        "previous_response_id": previous,
        "output": [],
    }
    if message_id:
        body["output"] = [
            {
                "type": "message",
                "id": message_id,
                "role": "assistant",
                "status": "completed" if status == "completed" else "incomplete",
                "content": [{"type": "output_text", "text": text, "annotations": []}],
            }
        ]
    if usage is not None:
        body["usage"] = {
            "input_tokens": usage.prompt_tokens,
            "output_tokens": usage.completion_tokens,
            "total_tokens": usage.prompt_tokens + usage.completion_tokens,
        }
    return body
