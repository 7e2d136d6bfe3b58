"""The embedded backend's answers, field by field, against the shapes Ollama publishes.

The expected shapes below are written from Ollama's own documentation:

- ``docs/api.md`` in github.com/ollama/ollama, sections "Generate a
  completion" (streaming, no streaming, raw mode, load a model), "Generate a
  chat completion" (streaming, no streaming, load a model), "List Local
  Models" and "List Running Models" (the ``details`` object), "Conventions"
  (durations are nanoseconds);
- docs.ollama.com/api/tags and docs.ollama.com/api-reference/get-version
  (the OpenAPI pages: ``ListResponse`` with ``model`` next to ``name``, and
  ``VersionResponse``);
- docs/api.md "Chat request (with tools)": the answer's ``message`` has
  ``tool_calls``, each ``{"function": {"name", "arguments"}}`` with the
  arguments as an object (``api.ToolCall`` in ``api/types.go``);
- Ollama's server code for what the examples leave implicit: errors are
  ``{"error": "..."}`` (``gin.H{"error": ...}`` in ``server/routes.go``), the
  final chat object still carries ``message`` (``api.ChatResponse.Message``
  has no ``omitempty``; the official Python client requires the field).

Each shape maps a field to ``(type, required)``. A response must have every
required field, no field outside the shape, and the documented types.
"""

from __future__ import annotations

import datetime as dt
import re
from typing import Any

from llamacpp_http import MODEL, Call, generate

Shape = dict[str, tuple[Any, bool]]


def required(**kinds: type) -> Shape:
    """Fields a response must carry, each of the given type."""
    return {name: (kind, True) for name, kind in kinds.items()}


def optional(**kinds: type) -> Shape:
    """Fields a response may leave out; when present they have the given type."""
    return {name: (kind, False) for name, kind in kinds.items()}


# docs/api.md, "Generate request (Streaming)": each streamed object.
GENERATE_CHUNK = required(model=str, created_at=str, response=str, done=bool)
# docs/api.md: "The final response in the stream also includes additional data about the generation"
# (total_duration ... eval_duration, context); done_reason as in the "with suffix" example.
METRICS = required(
    total_duration=int,
    load_duration=int,
    prompt_eval_count=int,
    prompt_eval_duration=int,
    eval_count=int,
    eval_duration=int,
)
GENERATE_FINAL = GENERATE_CHUNK | required(done_reason=str, context=list) | METRICS
# docs/api.md, "Request (Raw Mode)": "raw mode will not return a context".
GENERATE_FINAL_RAW = {k: v for k, v in GENERATE_FINAL.items() if k != "context"}
# docs/api.md, "Load a model" (generate): a single object, empty response, done.
GENERATE_LOAD = GENERATE_CHUNK | optional(done_reason=str)

# docs/api.md, "Chat Request (Streaming)": message {role, content} ("images" only for images).
MESSAGE = required(role=str, content=str) | optional(images=list, tool_calls=list)
# docs/api.md, "Chat request (with tools)".
TOOL_CALL = required(function=dict)
TOOL_FUNCTION = required(name=str, arguments=dict)
CHAT_CHUNK = required(model=str, created_at=str, message=dict, done=bool)
# docs/api.md, chat "Final response" / "Chat request (No streaming)"; done_reason as in the
# "Structured outputs" example.
CHAT_FINAL = CHAT_CHUNK | required(done_reason=str) | METRICS
CHAT_LOAD = CHAT_CHUNK | required(done_reason=str)

# docs/api.md "List Local Models" and docs.ollama.com/api/tags.
TAGS = required(models=list)
TAG = required(name=str, model=str, modified_at=str, size=int, digest=str, details=dict)
# docs/api.md "List Running Models" shows the full details object (parent_model included).
DETAILS = optional(parent_model=str) | required(
    format=str, family=str, families=list, parameter_size=str, quantization_level=str
)
# docs.ollama.com/api-reference/get-version: VersionResponse.
VERSION = required(version=str)
ERROR = required(error=str)


def problems(obj: object, shape: Shape, where: str = "") -> list[str]:
    """Every way ``obj`` differs from ``shape``, as readable lines."""
    if not isinstance(obj, dict):
        return [f"{where or 'object'} is {type(obj).__name__}, not an object"]
    found = []
    for key, (kind, required) in shape.items():
        if key not in obj:
            if required:
                found.append(f"{where}{key}: missing")
            continue
        value = obj[key]
        if kind is int and (isinstance(value, bool) or not isinstance(value, int)):
            found.append(f"{where}{key}: {value!r} is not an integer")
        elif kind is not int and not isinstance(value, kind):
            found.append(f"{where}{key}: {value!r} is not {kind.__name__}")
    found += [f"{where}{key}: not in Ollama's API" for key in obj if key not in shape]
    return found


def assert_shape(obj: object, shape: Shape) -> None:
    found = problems(obj, shape)
    assert not found, "\n".join(found)


def assert_time(text: str) -> None:
    """RFC 3339 with a zone, as Go's time.Time marshals (``2023-08-04T19:22:45.499127Z``)."""
    parsed = dt.datetime.fromisoformat(text)
    assert parsed.tzinfo is not None, text


def assert_metrics(final: dict[str, Any]) -> None:
    """Durations are nanoseconds (docs/api.md, "Conventions"), counts are token counts."""
    for key in ("total_duration", "load_duration", "prompt_eval_duration", "eval_duration"):
        assert final[key] > 0, key
    assert final["total_duration"] >= final["prompt_eval_duration"] + final["eval_duration"]
    assert final["total_duration"] < 60 * 10**9  # nanoseconds, not microseconds or seconds
    assert final["prompt_eval_count"] > 0 and final["eval_count"] > 0
    tokens_per_second = final["eval_count"] / final["eval_duration"] * 10**9  # the docs' own formula
    assert 1 < tokens_per_second < 10_000


def test_version_shape(call: Call) -> None:
    assert_shape(call("GET", "/api/version").json(), VERSION)


def test_tags_shape(call: Call) -> None:
    tags = call("GET", "/api/tags").json()
    assert_shape(tags, TAGS)
    for tag in tags["models"]:
        assert_shape(tag, TAG)
        assert_shape(tag["details"], DETAILS)
        assert_time(tag["modified_at"])
        assert re.fullmatch(r"[0-9a-f]{64}", tag["digest"])  # docs/api.md shows bare sha256 hex
        assert tag["details"]["format"] == "gguf"
        assert re.fullmatch(r"\d+(\.\d+)?[KMB]", tag["details"]["parameter_size"])  # "13B", "4.3B", "268.10M"


def test_generate_streaming_shapes(call: Call) -> None:
    lines = call(
        "POST", "/api/generate", {"model": MODEL, "prompt": "Why is the sky blue?", "options": {"num_predict": 8}}
    ).lines()
    for chunk in lines[:-1]:
        assert_shape(chunk, GENERATE_CHUNK)
        assert chunk["done"] is False and chunk["model"] == MODEL
        assert_time(chunk["created_at"])
    final = lines[-1]
    assert_shape(final, GENERATE_FINAL)
    assert final["done"] is True and final["response"] == ""  # "empty if the response was streamed"
    assert all(type(token) is int for token in final["context"])
    assert_metrics(final)


def test_generate_non_streaming_shape(call: Call) -> None:
    final = generate(call, "Why is the sky blue?", options={"num_predict": 8}).json()
    assert_shape(final, GENERATE_FINAL)
    assert final["done"] is True and final["response"]  # "if not streamed, this will contain the full response"
    assert final["done_reason"] in ("stop", "length")
    assert_metrics(final)


def test_generate_raw_and_load_shapes(call: Call) -> None:
    raw = generate(call, "Why is the sky blue?", raw=True, options={"num_predict": 4}).json()
    assert_shape(raw, GENERATE_FINAL_RAW)
    load = call("POST", "/api/generate", {"model": MODEL}).json()
    assert_shape(load, GENERATE_LOAD)
    assert load["done"] is True and load["response"] == ""


def test_chat_streaming_shapes(call: Call) -> None:
    lines = call(
        "POST",
        "/api/chat",
        {
            "model": MODEL,
            "options": {"num_predict": 8},
            "messages": [{"role": "user", "content": "why is the sky blue?"}],
        },
    ).lines()
    for chunk in lines[:-1]:
        assert_shape(chunk, CHAT_CHUNK)
        assert_shape(chunk["message"], MESSAGE)
        assert chunk["message"]["role"] == "assistant" and chunk["done"] is False
    final = lines[-1]
    assert_shape(final, CHAT_FINAL)
    assert_shape(final["message"], MESSAGE)
    assert final["done"] is True
    assert_metrics(final)


def test_chat_non_streaming_and_load_shapes(call: Call) -> None:
    final = call(
        "POST",
        "/api/chat",
        {
            "model": MODEL,
            "stream": False,
            "options": {"num_predict": 8},
            "messages": [{"role": "user", "content": "why is the sky blue?"}],
        },
    ).json()
    assert_shape(final, CHAT_FINAL)
    assert_shape(final["message"], MESSAGE)
    assert final["message"]["role"] == "assistant" and final["message"]["content"]
    assert_metrics(final)
    load = call("POST", "/api/chat", {"model": MODEL, "messages": []}).json()
    assert_shape(load, CHAT_LOAD)
    assert load["done_reason"] == "load"  # docs/api.md, chat "Load a model"


def test_chat_tool_call_shapes(call: Call) -> None:
    weather = {
        "type": "function",
        "function": {
            "name": "get_weather",
            "description": "Get the current weather for a city",
            "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
        },
    }
    body = {
        "model": MODEL,
        "messages": [{"role": "user", "content": "What is the weather in Toronto?"}],
        "tools": [weather],
        "tool_choice": "required",  # our extension: the example's answer is a call, so force one
        "options": {"temperature": 0, "num_predict": 48},
    }
    whole = call("POST", "/api/chat", {**body, "stream": False}).json()
    streamed = call("POST", "/api/chat", body).lines()
    assert_shape(whole, CHAT_FINAL)
    for message in (whole["message"], *(line["message"] for line in streamed)):
        assert_shape(message, MESSAGE)
    [with_calls] = [line for line in streamed if "tool_calls" in line["message"]]
    assert_shape(with_calls, CHAT_CHUNK)
    for calls in (whole["message"]["tool_calls"], with_calls["message"]["tool_calls"]):
        assert calls
        for tool_call in calls:
            assert_shape(tool_call, TOOL_CALL)
            assert_shape(tool_call["function"], TOOL_FUNCTION)
    assert whole["message"]["content"] == "" and streamed[-1]["done"] is True


def test_error_shapes_and_status_codes(call: Call) -> None:
    for reply, status in (
        (call("POST", "/api/generate", {"model": "missing:1b", "prompt": "x"}), 404),
        (call("POST", "/api/chat", {"model": "missing:1b", "messages": []}), 404),
        (call("POST", "/api/generate", b"{oops"), 400),
        (call("POST", "/api/chat", b""), 400),
    ):
        assert reply.status == status
        assert reply.content_type.startswith("application/json")
        assert_shape(reply.json(), ERROR)


def test_the_shape_checker_catches_differences() -> None:
    assert problems({"model": "m", "created_at": "t", "response": "r"}, GENERATE_CHUNK) == ["done: missing"]
    assert problems({**dict.fromkeys(GENERATE_CHUNK, ""), "done": False, "extra": 1}, GENERATE_CHUNK) == [
        "extra: not in Ollama's API"
    ]
    assert problems({"version": 1}, VERSION) == ["version: 1 is not str"]
    assert problems({"size": True}, {"size": (int, True)}) == ["size: True is not an integer"]
