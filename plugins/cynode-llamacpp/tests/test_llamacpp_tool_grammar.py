"""Grammars, tool definitions, tool-call reading and history rendering, without the model (pure functions)."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator

import pytest
from cynode_llamacpp.grammars import GrammarError, format_grammar, read_format
from cynode_llamacpp.prompts import ChatMessage, PromptError, parse_messages, with_tools
from cynode_llamacpp.tools import CallReader, ToolCall, ToolError, ToolSet

WEATHER = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "Get the current weather in a city",
        "parameters": {
            "type": "object",
            "properties": {"city": {"type": "string"}, "unit": {"type": "string", "enum": ["celsius", "fahrenheit"]}},
            "required": ["city"],
        },
    },
}
ADD = {"type": "function", "function": {"name": "add", "parameters": {"type": "object", "properties": {}}}}


def read(reader: CallReader, *pieces: str) -> list[str]:
    def source() -> Iterator[str]:
        yield from pieces

    return list(reader.read(source()))


def test_format_values_are_read_as_ollama_reads_them() -> None:
    assert read_format(None) is None and read_format("") is None  # "missing", as Ollama's `null` and `""`
    assert read_format("json") == {"type": "object"}
    assert read_format({"type": "array"}) == {"type": "array"}
    with pytest.raises(GrammarError) as caught:
        read_format("X")
    assert str(caught.value) == 'invalid format: "\\"X\\""; expected "json" or a valid JSON Schema object'
    for bad in (5, [1], True, "\ud800"):
        with pytest.raises(GrammarError):
            read_format(bad)


def test_a_schema_becomes_a_grammar_whose_strings_hold_no_raw_control_characters() -> None:
    grammar = format_grammar({"type": "object", "properties": {"name": {"type": "string"}}, "required": ["name"]})
    assert grammar.startswith("root ::= cy-format\n")
    assert '"\\"name\\""' in grammar
    [char] = [line for line in grammar.splitlines() if line.startswith("char ::= ")]
    assert char.startswith(r'char ::= [^"\\\x7F\x00-\x1F] |')  # json.loads refuses a raw newline in a string


@pytest.mark.parametrize(
    "schema",
    [
        {"type": "foo"},
        {"properties": 5},
        {"enum": 3},
        {"$ref": "https://example.com/schema.json"},  # never fetched
        {"$ref": "#/$defs/missing"},
        {"type": "string", "pattern": "no anchors"},
        {"type": "array", "items": {}, "maxItems": 10**9},  # would be spelled out into a huge grammar
        {"type": "string", "pattern": "^a{100000}$"},
        {"type": "string", "minLength": float("inf")},
    ],
)
def test_unsupported_schemas_are_grammar_errors(schema: dict[str, object]) -> None:
    started = time.monotonic()
    with pytest.raises(GrammarError) as caught:
        format_grammar(schema)
    assert str(caught.value).startswith("invalid JSON schema in format")
    assert time.monotonic() - started < 1


def test_tools_and_tool_choice_are_read() -> None:
    tools = ToolSet.from_request([WEATHER, ADD], None)
    assert tools is not None and [t.name for t in tools.tools] == ["get_weather", "add"] and not tools.forced
    assert ToolSet.from_request([WEATHER], "none") is None  # as if no tools were given
    assert ToolSet.from_request(None, "auto") is None and ToolSet.from_request([], None) is None
    required = ToolSet.from_request([WEATHER, ADD], "required")
    assert required is not None and required.forced and len(required.callable) == 2
    named = ToolSet.from_request([WEATHER, ADD], {"type": "function", "function": {"name": "add"}})
    assert named is not None and named.forced and [t.name for t in named.callable] == ["add"]
    star = ToolSet.from_request([{"function": {"name": "*"}}, ADD], {"function": {"name": "*"}})
    assert star is not None and [t.name for t in star.callable] == ["*"]  # a name, not a wildcard


@pytest.mark.parametrize(
    ("tools", "choice"),
    [
        ("get_weather", None),
        ([{"type": "function"}], None),
        ([{"type": "retrieval", "function": {"name": "x"}}], None),
        ([{"function": {"name": ""}}], None),
        ([{"function": {"name": "a\nb"}}], None),
        ([{"function": {"name": "x" * 300}}], None),
        ([{"function": {"name": "x", "parameters": "object"}}], None),
        ([{"function": {"name": "x", "description": 5}}], None),
        ([WEATHER, WEATHER], None),
        ([WEATHER], "always"),
        ([WEATHER], {"type": "function", "function": {"name": "nope"}}),
        ([WEATHER], {"type": "function", "function": {}}),
        (None, "required"),
    ],
)
def test_bad_tools_or_tool_choice_are_tool_errors(tools: object, choice: object) -> None:
    with pytest.raises(ToolError):
        ToolSet.from_request(tools, choice)


def test_the_tool_grammar_allows_calls_of_the_callable_tools_only() -> None:
    auto = ToolSet.from_request([WEATHER, ADD], None)
    named = ToolSet.from_request([WEATHER, ADD], {"type": "function", "function": {"name": "add"}})
    assert auto is not None and named is not None
    auto_grammar, named_grammar = auto.grammar(None), named.grammar(None)
    assert auto_grammar.startswith("root ::= cy-calls | cy-text\n")
    assert '"{\\"name\\": \\"get_weather\\", \\"arguments\\": " cy-tool0-args "}"' in auto_grammar
    assert named_grammar.startswith("root ::= cy-calls\n")
    assert "get_weather" not in named_grammar and '\\"add\\"' in named_grammar
    with_format = auto.grammar({"type": "object", "properties": {"a": {"type": "integer"}}})
    assert with_format.startswith("root ::= cy-calls | cy-format\n") and "cy-text" not in with_format
    bad = ToolSet.from_request([{"function": {"name": "x", "parameters": {"type": "foo"}}}], None)
    assert bad is not None
    with pytest.raises(GrammarError, match='parameters of tool "x"'):
        bad.grammar(None)


def test_the_call_reader_passes_text_on_and_reads_calls() -> None:
    assert read(CallReader(forced=False), "Hello", " there") == ["Hello", " there"]
    assert read(CallReader(forced=False), "<", "b>bold</b>") == ["<b>bold</b>"]  # held only while it may be a call
    reader = CallReader(forced=False)
    blocks = (
        '<tool_call>\n{"name": "add", "arguments": {"a": 1}}\n</tool_call>\n'
        '<tool_call>\n{"name": "x", "arguments": {}}\n</tool_call>'
    )
    assert read(reader, " <tool", blocks[5:40], blocks[40:]) == []
    assert reader.take() == [ToolCall("add", {"a": 1}), ToolCall("x", {})] and reader.take() == []
    cut = CallReader(forced=True)
    assert read(cut, '<tool_call>\n{"name": "ad') == ['<tool_call>\n{"name": "ad']  # cut short: shown as text
    assert cut.take() == []


def test_the_call_reader_stops_its_source_when_closed() -> None:
    closed = []

    def source() -> Iterator[str]:
        try:
            yield "Hello"
            yield " world"
        finally:
            closed.append(True)

    stream = CallReader(forced=False).read(source())
    assert next(stream) == "Hello"
    stream.close()
    assert closed == [True]


def test_history_with_calls_and_results_is_parsed_and_written_out() -> None:
    messages = parse_messages(
        [
            {"role": "system", "content": "Be brief."},
            {"role": "user", "content": "Weather in Paris and Rome?"},
            {
                "role": "assistant",
                "content": "",
                "tool_calls": [
                    {"function": {"name": "get_weather", "arguments": {"city": "Paris"}}},
                    {
                        "id": "call_1",
                        "type": "function",
                        "function": {"name": "get_weather", "arguments": {"city": "Rome"}},
                    },
                ],
            },
            {"role": "tool", "content": "18 C", "tool_name": "get_weather"},
            {"role": "tool", "content": "21 C"},
        ]
    )
    tools = ToolSet.from_request([WEATHER], None)
    transcript = with_tools(messages, tools, template=False)
    assert [m.role for m in transcript] == ["system", "user", "assistant", "tool", "tool"]
    assert transcript[0].content.startswith("Be brief.\n\nYou can call these tools.")
    assert transcript[2].content == (
        '<tool_call>\n{"name": "get_weather", "arguments": {"city": "Paris"}}\n</tool_call>'
        '<tool_call>\n{"name": "get_weather", "arguments": {"city": "Rome"}}\n</tool_call>'
    )
    assert transcript[3].content == '<tool_response name="get_weather">\n18 C\n</tool_response>'
    templated = with_tools(messages, None, template=True)
    assert [m.role for m in templated] == ["system", "user", "assistant", "user"]  # results: one user turn
    assert templated[3].content == (
        '<tool_response name="get_weather">\n18 C\n</tool_response>\n<tool_response>\n21 C\n</tool_response>'
    )
    plain = [ChatMessage("user", "Hi")]
    assert with_tools(plain, None, template=False) == plain  # no tools: the messages as they were
    added = with_tools(plain, tools, template=True)
    assert added[0].role == "system" and "get_weather" in added[0].content and added[1:] == plain


@pytest.mark.parametrize(
    "message",
    [
        {"role": "assistant", "tool_calls": {"function": {"name": "x"}}},
        {"role": "assistant", "tool_calls": [{"name": "x"}]},
        {"role": "assistant", "tool_calls": [{"function": {"name": 5}}]},
        {"role": "assistant", "tool_calls": [{"function": {"name": "x", "arguments": '{"a": 1}'}}]},
        {"role": "tool", "content": "x", "tool_name": ["x"]},
    ],
)
def test_malformed_tool_fields_in_messages_are_prompt_errors(message: dict[str, object]) -> None:
    with pytest.raises(PromptError):
        parse_messages([message])


def test_tool_instructions_say_what_the_choice_demands() -> None:
    auto, required = ToolSet.from_request([WEATHER], None), ToolSet.from_request([WEATHER], "required")
    named = ToolSet.from_request([WEATHER], {"type": "function", "function": {"name": "get_weather"}})
    assert auto is not None and required is not None and named is not None
    shown = auto.instructions().splitlines()
    assert json.loads(shown[1])["name"] == "get_weather"
    assert shown[-1] == "If no tool is needed, answer in plain text."
    assert required.instructions().endswith("You must call a tool now.")
    assert named.instructions().endswith("You must call the tool get_weather now.")
