"""OpenAI chat requests in, OpenAI objects out (chat contract 4.1, 4.4, 5.2).

:func:`read_chat_request` checks a ``POST /v1/chat/completions`` body and
turns it into a :class:`ChatRequest`; the builders write the answer, the
stream chunks and the model list as OpenAI clients parse them. Unknown
request fields are ignored, as OpenAI clients expect.
"""

from __future__ import annotations

import json
import secrets
import time
from dataclasses import dataclass, field
from typing import Any

from cynode_core.orchestrator.chat.errors import ChatError, invalid

PM_MODEL = "cynodeai.pm"
ROLES = ("system", "developer", "user", "assistant", "tool")
# Sampling keys of an OpenAI request and the Ollama option each becomes (direct path only).
_OPTIONS = {"temperature": "temperature", "top_p": "top_p", "seed": "seed", "max_tokens": "num_predict"}
MAX_TOOLS = 128


@dataclass(frozen=True)
class ToolCall:
    """A function call the model made: ``arguments`` is JSON text, as OpenAI sends it."""

    id: str
    name: str
    arguments: str

    def to_openai(self, index: int | None = None) -> dict[str, Any]:
        function = {"name": self.name, "arguments": self.arguments}
        out: dict[str, Any] = {"id": self.id, "type": "function", "function": function}
        if index is not None:
            out["index"] = index
        return out


@dataclass(frozen=True)
class InMessage:
    """One message of a request: its role and its text (parts joined), plus tool-call links."""

    role: str
    text: str | None
    tool_calls: tuple[ToolCall, ...] = ()
    tool_call_id: str | None = None
    name: str | None = None


@dataclass(frozen=True)
class ChatRequest:
    model: str
    messages: tuple[InMessage, ...]
    stream: bool = False
    options: dict[str, Any] = field(default_factory=dict)
    tools: tuple[dict[str, Any], ...] = ()
    tool_choice: Any = None
    include_usage: bool = False

    @property
    def is_pm(self) -> bool:
        return self.model == PM_MODEL

    @property
    def continues_tool_calls(self) -> bool:
        """The request carries a tool round trip (an assistant's calls or their results)."""
        return any(m.role == "tool" or m.tool_calls for m in self.messages)


def effective_model(value: Any) -> str:
    if value is None:
        return PM_MODEL
    if not isinstance(value, str):
        raise invalid("model must be a string", "model")
    return value.strip() or PM_MODEL


def message_text(content: Any, *, limit: int) -> str | None:
    """A message's ``content`` as text: a string, text parts joined with a newline, or None."""
    if content is None:
        return None
    if isinstance(content, str):
        text = content
    elif isinstance(content, list):
        texts = []
        for part in content:
            kind = part.get("type") if isinstance(part, dict) else None
            if kind not in ("text", "input_text", "output_text") or not isinstance(part.get("text"), str):
                unsupported = f"Unsupported content part type: {str(kind)[:40]}; only text parts are accepted"
                raise invalid(unsupported, "messages")
            texts.append(part["text"])
        text = "\n".join(texts)
    else:
        raise invalid("message content must be a string, an array of text parts or null", "messages")
    if "\x00" in text:
        raise invalid("message text must not contain NUL characters", "messages")
    if len(text.encode("utf-8", "surrogatepass")) > limit:
        raise ChatError(413, "request_too_large", f"A message is longer than {limit} bytes", param="messages")
    return text


def _tool_calls(value: Any) -> tuple[ToolCall, ...]:
    if value is None:
        return ()
    if not isinstance(value, list) or len(value) > MAX_TOOLS:
        raise invalid("tool_calls must be an array", "messages")
    calls = []
    for item in value:
        function = item.get("function") if isinstance(item, dict) else None
        if not isinstance(function, dict) or not isinstance(function.get("name"), str):
            raise invalid("each tool call needs a function with a name", "messages")
        arguments = function.get("arguments", "{}")
        if not isinstance(arguments, str):
            arguments = json.dumps(arguments)
        call_id = item.get("id") if isinstance(item.get("id"), str) else new_call_id()
        calls.append(ToolCall(call_id, function["name"], arguments))
    return tuple(calls)


def _message(raw: Any, limit: int) -> InMessage:
    if not isinstance(raw, dict):
        raise invalid("each message must be an object with a role", "messages")
    role = raw.get("role")
    if role not in ROLES:
        raise invalid(f"Unsupported message role: {str(role)[:40]}", "messages")
    text = message_text(raw.get("content"), limit=limit)
    tool_call_id = raw.get("tool_call_id")
    name = raw.get("name")
    return InMessage(
        role,
        text,
        _tool_calls(raw.get("tool_calls")) if role == "assistant" else (),
        tool_call_id if isinstance(tool_call_id, str) else None,
        name if isinstance(name, str) else None,
    )


def _number(body: dict[str, Any], key: str, *, integer: bool = False) -> Any:
    value = body.get(key)
    if value is None:
        return None
    kinds = (int,) if integer else (int, float)
    if isinstance(value, bool) or not isinstance(value, kinds):
        raise invalid(f"{key} must be a number", key)
    return value


def sampling_options(body: dict[str, Any]) -> dict[str, Any]:
    """The request's sampling keys as Ollama ``options``."""
    options: dict[str, Any] = {}
    for key, option in _OPTIONS.items():
        value = _number(body, key, integer=key in ("seed", "max_tokens"))
        if value is not None:
            options[option] = value
    most = _number(body, "max_completion_tokens", integer=True)
    if most is not None:
        options["num_predict"] = most
    stop = body.get("stop")
    if isinstance(stop, str):
        options["stop"] = [stop]
    elif isinstance(stop, list) and all(isinstance(s, str) for s in stop) and len(stop) <= 16:
        options["stop"] = stop
    elif stop is not None:
        raise invalid("stop must be a string or an array of strings", "stop")
    return options


def read_tools(body: dict[str, Any]) -> tuple[tuple[dict[str, Any], ...], Any]:
    """``tools`` (function tools only) and ``tool_choice``, checked."""
    tools = body.get("tools")
    if tools is None:
        tools = []
    if not isinstance(tools, list) or len(tools) > MAX_TOOLS:
        raise invalid(f"tools must be an array of at most {MAX_TOOLS} function tools", "tools")
    checked: list[dict[str, Any]] = []
    for tool in tools:
        function = tool.get("function") if isinstance(tool, dict) and tool.get("type") == "function" else None
        if not isinstance(function, dict) or not isinstance(function.get("name"), str) or not function["name"]:
            raise invalid('each tool must be {"type": "function", "function": {"name": ...}}', "tools")
        parameters = function.get("parameters", {"type": "object", "properties": {}})
        if not isinstance(parameters, dict):
            raise invalid("a tool's parameters must be a JSON schema object", "tools")
        entry: dict[str, Any] = {"name": function["name"], "parameters": parameters}
        if isinstance(function.get("description"), str):
            entry["description"] = function["description"]
        checked.append({"type": "function", "function": entry})
    choice = body.get("tool_choice")
    names = {t["function"]["name"] for t in checked}
    if choice is None or choice in ("none", "auto", "required"):
        pass
    elif isinstance(choice, dict) and isinstance(choice.get("function"), dict):
        if choice["function"].get("name") not in names:
            raise invalid("tool_choice names a function that is not in tools", "tool_choice")
    else:
        raise invalid("tool_choice must be none, auto, required or a named function", "tool_choice")
    if choice in ("required",) and not checked:
        raise invalid("tool_choice required needs tools", "tool_choice")
    return tuple(checked), choice


def read_chat_request(body: Any, *, max_messages: int, max_message_bytes: int) -> ChatRequest:
    """A checked chat completion request, or a 400/413 :class:`ChatError` naming what is wrong."""
    if not isinstance(body, dict):
        raise invalid("Invalid request body")
    model = effective_model(body.get("model"))
    raw = body.get("messages")
    if not isinstance(raw, list) or not raw:
        raise invalid("messages is required and must be non-empty", "messages")
    if len(raw) > max_messages:
        raise invalid(f"messages has more than {max_messages} items", "messages")
    messages = tuple(_message(item, max_message_bytes) for item in raw)
    stream = body.get("stream", False)
    if stream is None:
        stream = False
    if not isinstance(stream, bool):
        raise invalid("stream must be a boolean", "stream")
    stream_options = body.get("stream_options")
    include_usage = isinstance(stream_options, dict) and stream_options.get("include_usage") is True
    tools, choice = read_tools(body)
    return ChatRequest(model, messages, stream, sampling_options(body), tools, choice, include_usage)


def new_completion_id() -> str:
    return "chatcmpl-" + secrets.token_hex(8)


def new_call_id() -> str:
    return "call_" + secrets.token_hex(12)


@dataclass(frozen=True)
class Usage:
    prompt_tokens: int = 0
    completion_tokens: int = 0

    def to_openai(self) -> dict[str, int]:
        total = self.prompt_tokens + self.completion_tokens
        return {"prompt_tokens": self.prompt_tokens, "completion_tokens": self.completion_tokens, "total_tokens": total}


def completion(
    completion_id: str,
    model: str,
    text: str,
    finish_reason: str,
    usage: Usage | None,
    tool_calls: tuple[ToolCall, ...] = (),
) -> dict[str, Any]:
    """A ``chat.completion`` object."""
    message: dict[str, Any] = {"role": "assistant", "content": text if text or not tool_calls else None}
    if tool_calls:
        message["tool_calls"] = [call.to_openai() for call in tool_calls]
    body: dict[str, Any] = {
        "id": completion_id,
        "object": "chat.completion",
        "created": int(time.time()),
        "model": model,
        "choices": [{"index": 0, "message": message, "finish_reason": finish_reason}],
    }
    if usage is not None:
        body["usage"] = usage.to_openai()
    return body


def chunk(
    completion_id: str,
    model: str,
    delta: dict[str, Any],
    finish_reason: str | None = None,
    *,
    created: int,
) -> dict[str, Any]:
    """One ``chat.completion.chunk``."""
    return {
        "id": completion_id,
        "object": "chat.completion.chunk",
        "created": created,
        "model": model,
        "choices": [{"index": 0, "delta": delta, "finish_reason": finish_reason}],
    }


def usage_chunk(completion_id: str, model: str, usage: Usage, *, created: int) -> dict[str, Any]:
    """The last chunk of a stream asked for with ``stream_options.include_usage``: empty choices, the usage."""
    return {
        "id": completion_id,
        "object": "chat.completion.chunk",
        "created": created,
        "model": model,
        "choices": [],
        "usage": usage.to_openai(),
    }


def model_list(models: list[str]) -> dict[str, Any]:
    return {
        "object": "list",
        "data": [{"id": m, "object": "model", "created": 0, "owned_by": "cynodeai"} for m in models],
    }
