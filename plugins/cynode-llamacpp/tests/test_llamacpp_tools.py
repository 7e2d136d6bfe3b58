"""Structured output (``format``) and tool calls (``tools``, our ``tool_choice``): real model, real HTTP on loopback.

Answers are greedy (temperature 0) and short, so they are the same every run;
what is checked is what the grammar guarantees (valid JSON, a known tool,
arguments valid under its schema), validated with ``jsonschema_rs``.
"""

from __future__ import annotations

import json
from typing import Any

import jsonschema_rs
import ollama
import pytest
from cynode_llamacpp.backend import LlamaCppBackend
from llamacpp_http import MODEL, Call, generate

GREEDY = {"temperature": 0, "seed": 7}
CITY = {
    "type": "object",
    "properties": {
        "city": {"type": "string"},
        "country": {"type": "string"},
        "population": {"type": "integer"},
        "capital": {"type": "boolean"},
    },
    "required": ["city", "country", "population", "capital"],
}
WEATHER_PARAMETERS = {
    "type": "object",
    "properties": {
        "city": {"type": "string", "description": "The city"},
        "unit": {"type": "string", "enum": ["celsius", "fahrenheit"]},
    },
    "required": ["city", "unit"],
}
WEATHER = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "Get the current weather in a city",
        "parameters": WEATHER_PARAMETERS,
    },
}
ADD_PARAMETERS = {
    "type": "object",
    "properties": {"a": {"type": "integer"}, "b": {"type": "integer"}},
    "required": ["a", "b"],
}
ADD = {"type": "function", "function": {"name": "add", "description": "Add two integers", "parameters": ADD_PARAMETERS}}
PARIS = [{"role": "user", "content": "What is the weather in Paris?"}]
FORCE_WEATHER = {"type": "function", "function": {"name": "get_weather"}}


def chat(call: Call, messages: list[dict[str, Any]], num_predict: int = 48, **fields: Any) -> dict[str, Any]:
    body = {"model": MODEL, "stream": False, "messages": messages, "options": {**GREEDY, "num_predict": num_predict}}
    reply = call("POST", "/api/chat", body | fields)
    assert reply.status == 200, reply.body
    result: dict[str, Any] = reply.json()
    return result


def assert_valid(instance: object, schema: dict[str, Any]) -> None:
    errors = [error.message for error in jsonschema_rs.validator_for(schema).iter_errors(instance)]
    assert not errors, (instance, errors)


def test_format_schema_gives_json_that_validates(call: Call) -> None:
    question = [{"role": "user", "content": "Describe Paris as JSON."}]
    answer = chat(call, question, num_predict=64, format=CITY)
    assert "tool_calls" not in answer["message"]
    assert_valid(json.loads(answer["message"]["content"]), CITY)
    completion = generate(call, "Paris in JSON:", format=CITY, options={**GREEDY, "num_predict": 64}).json()
    assert_valid(json.loads(completion["response"]), CITY)
    assert completion["done_reason"] == "stop"  # the grammar ended the answer, not num_predict


# An agent's step schema (agents_contract.md 3.2): one branch per action, constants, an enum, bounded strings.
STEP = {
    "oneOf": [
        {
            "type": "object",
            "properties": {
                "action": {"const": "call"},
                "tool": {"const": "write_file"},
                "arguments": {
                    "type": "object",
                    "properties": {"path": {"type": "string", "maxLength": 24}, "mode": {"enum": ["create", "append"]}},
                    "required": ["path", "mode"],
                    "additionalProperties": False,
                },
            },
            "required": ["action", "tool", "arguments"],
            "additionalProperties": False,
        },
        {
            "type": "object",
            "properties": {"action": {"const": "reply"}},
            "required": ["action"],
            "additionalProperties": False,
        },
    ]
}


def test_sampled_steps_always_validate_against_a_one_of_step_schema(call: Call) -> None:
    """Not greedy: several seeds at temperature 1, each answer a valid step."""
    question = [{"role": "user", "content": "Write notes.txt, or reply. Answer as JSON."}]
    for seed in (1, 2, 3):
        options = {"temperature": 1.0, "seed": seed, "num_predict": 96}
        answer = chat(call, question, format=STEP, options=options)
        assert_valid(json.loads(answer["message"]["content"]), STEP)


def test_format_json_gives_an_object(call: Call) -> None:
    reply = generate(call, "The capital of France is", format="json", options={**GREEDY, "num_predict": 40})
    assert reply.status == 200
    assert isinstance(json.loads(reply.json()["response"]), dict)
    unconstrained = generate(call, "The capital of France is", options={**GREEDY, "num_predict": 40}).json()
    assert not unconstrained["response"].lstrip().startswith("{")  # the grammar made the difference


def test_the_grammar_holds_where_the_model_would_never_go(call: Call) -> None:
    reply = generate(
        call, "The capital of France is", format={"enum": ["zqxjv"]}, options={**GREEDY, "num_predict": 16}
    )
    assert (
        reply.json()["response"].strip() == '"zqxjv"'
    )  # none of the likeliest tokens fit: the whole vocabulary is asked


def test_forced_tool_call_has_the_tool_name_and_valid_arguments(call: Call) -> None:
    answer = chat(call, PARIS, tools=[WEATHER, ADD], tool_choice=FORCE_WEATHER)
    message = answer["message"]
    assert message["role"] == "assistant" and message["content"] == ""
    [tool_call] = message["tool_calls"]
    assert set(tool_call) == {"function"} and set(tool_call["function"]) == {"name", "arguments"}
    assert tool_call["function"]["name"] == "get_weather"
    assert_valid(tool_call["function"]["arguments"], WEATHER_PARAMETERS)
    assert "Paris" in tool_call["function"]["arguments"]["city"]  # read from the question
    assert answer["done"] is True and answer["done_reason"] == "stop"


def test_required_tool_choice_calls_one_of_the_tools(call: Call) -> None:
    question = [{"role": "user", "content": "What is 2 plus 3?"}]
    answer = chat(call, question, tools=[WEATHER, ADD], tool_choice="required")
    calls = answer["message"]["tool_calls"]
    assert calls and answer["message"]["content"] == ""
    schemas = {"get_weather": WEATHER_PARAMETERS, "add": ADD_PARAMETERS}
    for tool_call in calls:
        assert_valid(tool_call["function"]["arguments"], schemas[tool_call["function"]["name"]])


def test_stream_mode_yields_the_tool_call_in_a_chunk(call: Call) -> None:
    body = {
        "model": MODEL,
        "messages": PARIS,
        "tools": [WEATHER, ADD],
        "tool_choice": FORCE_WEATHER,
        "options": {**GREEDY, "num_predict": 48},
    }
    lines = call("POST", "/api/chat", body).lines()
    with_calls = [line for line in lines if "tool_calls" in line["message"]]
    assert len(with_calls) == 1 and with_calls[0]["done"] is False
    assert "".join(line["message"]["content"] for line in lines) == ""  # no call text leaks as content
    final = lines[-1]
    assert final["done"] is True and final["message"] == {"role": "assistant", "content": ""}
    whole = chat(call, PARIS, tools=[WEATHER, ADD], tool_choice=FORCE_WEATHER)
    assert with_calls[0]["message"]["tool_calls"] == whole["message"]["tool_calls"]  # greedy: same call both ways


def test_auto_tool_choice_answers_text_or_valid_calls_and_streams_text(call: Call) -> None:
    question = [{"role": "user", "content": "Say hello to Anna."}]
    answer = chat(call, question, num_predict=24, tools=[WEATHER, ADD])
    message = answer["message"]
    for tool_call in message.get("tool_calls", []):
        assert tool_call["function"]["name"] in ("get_weather", "add")
    assert message["content"] or message.get("tool_calls")
    body = {"model": MODEL, "messages": question, "tools": [WEATHER, ADD], "options": {**GREEDY, "num_predict": 24}}
    lines = call("POST", "/api/chat", body).lines()
    assert "".join(line["message"]["content"] for line in lines) == message["content"]


def test_a_tool_history_round_trip_is_accepted_and_read(call: Call) -> None:
    asked = [
        *PARIS,
        {
            "role": "assistant",
            "content": "",
            "tool_calls": [{"function": {"name": "get_weather", "arguments": {"city": "Paris", "unit": "celsius"}}}],
        },
        {"role": "tool", "tool_name": "get_weather", "content": '{"temperature": 18, "sky": "sunny"}'},
    ]
    answer = chat(call, asked, num_predict=24, tools=[WEATHER, ADD])
    assert answer["done"] is True and (answer["message"]["content"] or answer["message"].get("tool_calls"))
    before = chat(call, PARIS, num_predict=1, tools=[WEATHER, ADD])
    assert answer["prompt_eval_count"] > before["prompt_eval_count"] + 20  # the call and the result were rendered


def test_the_official_client_reads_tool_calls_and_sends_history(backend: LlamaCppBackend) -> None:
    client = ollama.Client(host=backend.base_url)
    try:
        check_with_client(client)
    finally:
        client.close()


def check_with_client(client: ollama.Client) -> None:
    options = {**GREEDY, "num_predict": 48}
    structured = client.chat(MODEL, messages=PARIS, format=CITY, options=options)
    assert_valid(json.loads(structured.message.content or ""), CITY)
    history = [
        *PARIS,
        ollama.Message(
            role="assistant",
            content="",
            tool_calls=[
                ollama.Message.ToolCall(
                    function=ollama.Message.ToolCall.Function(name="get_weather", arguments={"city": "Paris"})
                )
            ],
        ),
        ollama.Message(role="tool", content="18 C and sunny", tool_name="get_weather"),
    ]
    answer = client.chat(MODEL, messages=history, tools=[WEATHER, ADD], options={**options, "num_predict": 16})
    assert answer.done and answer.message.role == "assistant"


def test_without_format_or_tools_the_answer_is_unchanged(call: Call) -> None:
    plain = chat(call, PARIS, num_predict=24)
    assert "tool_calls" not in plain["message"] and plain["message"]["content"]
    for extra in ({"format": None}, {"format": ""}, {"tools": []}, {"tools": [WEATHER], "tool_choice": "none"}):
        same = chat(call, PARIS, num_predict=24, **extra)
        assert same["message"] == plain["message"], extra
        assert same["prompt_eval_count"] == plain["prompt_eval_count"], extra
    with_tools = chat(call, PARIS, num_predict=24, tools=[WEATHER])
    assert with_tools["prompt_eval_count"] > plain["prompt_eval_count"]  # the tools were described


# Converts, but to "a ::= a-0 | null", "a-0 ::= a": llama.cpp refuses left recursion.
LEFT_RECURSIVE = {
    "type": "object",
    "properties": {"x": {"$ref": "#/$defs/a"}},
    "$defs": {"a": {"anyOf": [{"$ref": "#/$defs/a"}, {"type": "null"}]}},
}


@pytest.mark.parametrize(
    ("path", "fields", "message"),
    [
        ("/api/chat", {"format": {"type": "foo"}}, "invalid JSON schema in format"),
        ("/api/chat", {"format": "X"}, 'invalid format: "\\"X\\""; expected "json" or a valid JSON Schema object'),
        ("/api/generate", {"format": ["json"]}, "invalid format"),
        ("/api/generate", {"format": {"type": "string", "pattern": "x"}}, "invalid JSON schema in format"),
        ("/api/generate", {"format": LEFT_RECURSIVE}, "grammar llama.cpp cannot use"),
        ("/api/chat", {"tools": [{"type": "function"}]}, "tools[0].function must be an object"),
        ("/api/chat", {"tools": "get_weather"}, "tools must be a list"),
        ("/api/chat", {"tools": [{"function": {"name": "x", "parameters": {"type": "foo"}}}]}, 'tool "x"'),
        ("/api/chat", {"tools": [WEATHER], "tool_choice": {"function": {"name": "nope"}}}, "not one of the tools"),
        ("/api/chat", {"tool_choice": "required"}, "has no tools"),
        ("/api/chat", {"tools": [WEATHER], "tool_choice": 3}, "tool_choice must be"),
    ],
)
def test_bad_schemas_and_tools_are_400(call: Call, path: str, fields: dict[str, Any], message: str) -> None:
    body = {"model": MODEL, "stream": False, "options": {"num_predict": 2}} | fields
    body |= {"prompt": "Hi"} if path == "/api/generate" else {"messages": PARIS}
    reply = call("POST", path, body)
    assert reply.status == 400, reply.body
    assert reply.content_type.startswith("application/json")
    error = reply.json()
    assert set(error) == {"error"} and message in error["error"], error


def test_bad_tool_history_is_400(call: Call) -> None:
    for message in (
        {"role": "assistant", "content": "", "tool_calls": [{"function": {"name": "x", "arguments": "{}"}}]},
        {"role": "assistant", "content": "", "tool_calls": "get_weather"},
        {"role": "tool", "content": "18 C", "tool_name": 5},
    ):
        reply = call("POST", "/api/chat", {"model": MODEL, "stream": False, "messages": [*PARIS, message]})
        assert reply.status == 400 and set(reply.json()) == {"error"}, reply.body
