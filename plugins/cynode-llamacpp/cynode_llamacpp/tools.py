"""Tool calling on ``/api/chat``: the request's tools, what the model is told, its grammar, and reading its calls.

The model writes a tool call as a ``<tool_call>`` block holding one JSON
object (the Hermes / Qwen 2.5 convention, which tool-tuned models know)::

    <tool_call>
    {"name": "get_weather", "arguments": {"city": "Paris"}}
    </tool_call>

one block per call, back to back (with a newline allowed between blocks, a
base model that wants a new line after its call was made to write call after
call until ``num_predict``; without, it ends). The grammar
(:meth:`ToolSet.grammar`) lets the answer be either such blocks, each with a
tool's name and arguments valid under that tool's ``parameters`` schema, or
an answer that does not start with ``<`` (plain text, or the ``format``
schema's JSON when the request has one). ``tool_choice`` (our extension,
OpenAI's values) narrows that: ``"required"`` allows only calls, a named
function only calls of it, ``"none"`` drops the tools. Tool results are shown
to the model in ``<tool_response>`` blocks. :class:`CallReader` turns the
generated text back into Ollama's ``tool_calls``.
"""

from __future__ import annotations

import json
import re
import unicodedata
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from cynode_llamacpp.grammars import GrammarBuilder, literal

CALL_OPEN, CALL_CLOSE = "<tool_call>", "</tool_call>"
MAX_NAME = 256
_CALL_BLOCK = re.compile(r"\s*<tool_call>\s*(.*?)\s*</tool_call>", re.DOTALL)


class ToolError(ValueError):
    """The request's ``tools``, ``tool_choice`` or a message's tool fields are malformed (HTTP 400)."""


@dataclass(frozen=True)
class Tool:
    """One function the model may call; ``parameters`` is the JSON schema of its arguments object."""

    name: str
    description: str
    parameters: dict[str, Any]

    def shown(self) -> str:
        """The tool as the model reads it: one line of JSON."""
        return json.dumps(
            {"name": self.name, "description": self.description, "parameters": self.parameters}, ensure_ascii=False
        )


@dataclass(frozen=True)
class ToolCall:
    """One call the model made, or one an assistant message of the history carries."""

    name: str
    arguments: dict[str, Any]

    def to_json(self) -> dict[str, Any]:
        """Ollama's shape: ``{"function": {"name", "arguments"}}``, arguments as an object."""
        return {"function": {"name": self.name, "arguments": self.arguments}}

    def block(self) -> str:
        """The call as the model writes it."""
        call = json.dumps({"name": self.name, "arguments": self.arguments}, ensure_ascii=False)
        return f"{CALL_OPEN}\n{call}\n{CALL_CLOSE}"


def calls_text(calls: Sequence[ToolCall]) -> str:
    """An assistant turn's calls as the model writes them."""
    return "".join(call.block() for call in calls)


def result_text(content: str, tool_name: str | None) -> str:
    """A tool's result as the model reads it."""
    opening = f"<tool_response name={json.dumps(tool_name, ensure_ascii=False)}>" if tool_name else "<tool_response>"
    return f"{opening}\n{content}\n</tool_response>"


@dataclass(frozen=True)
class ToolSet:
    """A chat request's tools and how it lets the model use them: freely, ``required``, or only the ``named`` one."""

    tools: tuple[Tool, ...]
    required: bool = False
    named: str | None = None

    @classmethod
    def from_request(cls, tools: object, tool_choice: object) -> ToolSet | None:
        """Read ``tools`` (Ollama's shape) and our ``tool_choice``; ``None`` when the model gets no tools."""
        parsed = _parse_tools(tools)
        required, named = False, None
        if tool_choice == "none":
            return None
        if tool_choice == "required":
            required = True
        elif isinstance(tool_choice, Mapping) and isinstance(tool_choice.get("function"), Mapping):
            named = tool_choice["function"].get("name")
            if tool_choice.get("type", "function") != "function" or not isinstance(named, str):
                raise ToolError('tool_choice must be "auto", "none", "required" or {"type": "function", ...}')
            if named not in {tool.name for tool in parsed}:
                raise ToolError(f"tool_choice names {json.dumps(named)}, which is not one of the tools")
        elif tool_choice is not None and tool_choice != "auto":
            raise ToolError('tool_choice must be "auto", "none", "required" or {"type": "function", ...}')
        if not parsed:
            if required:
                raise ToolError("tool_choice asks for a tool call but the request has no tools")
            return None
        return cls(tuple(parsed), required, named)

    @property
    def forced(self) -> bool:
        """The answer must be tool calls."""
        return self.required or self.named is not None

    @property
    def callable(self) -> tuple[Tool, ...]:
        """The tools the model may call now."""
        return tuple(tool for tool in self.tools if self.named in (None, tool.name))

    def instructions(self) -> str:
        """What the model is told, as (the end of) the system message."""
        lines = [
            "You can call these tools. Each is described as JSON; its parameters are a JSON schema:",
            *(tool.shown() for tool in self.tools),
            "To call a tool, answer with one block per call, and nothing else:",
            CALL_OPEN,
            '{"name": "<tool name>", "arguments": {<the arguments>}}',
            CALL_CLOSE,
            "Tool results come back in <tool_response> blocks.",
        ]
        if self.named is not None:
            lines.append(f"You must call the tool {self.named} now.")
        elif self.required:
            lines.append("You must call a tool now.")
        else:
            lines.append("If no tool is needed, answer in plain text.")
        return "\n".join(lines)

    def grammar(self, answer_schema: Mapping[str, Any] | None) -> str:
        """The grammar of an answer: tool calls, or (unless forced) text or ``answer_schema``'s JSON."""
        builder = GrammarBuilder()
        calls = []
        for index, tool in enumerate(self.callable):
            where = f"invalid JSON schema in the parameters of tool {json.dumps(tool.name)}"
            arguments = builder.schema(tool.parameters, f"cy-tool{index}-args", error=where)
            prefix = literal('{"name": ' + json.dumps(tool.name, ensure_ascii=False) + ', "arguments": ')
            calls.append(builder.rule(f"cy-tool{index}", f'{prefix} {arguments} "}}"'))
        builder.rule("cy-call", f"{literal(CALL_OPEN + chr(10))} ({' | '.join(calls)}) {literal(chr(10) + CALL_CLOSE)}")
        builder.rule("cy-calls", '" "? cy-call+')
        if self.forced:
            return builder.build("cy-calls")
        if answer_schema is not None:
            answer = builder.schema(answer_schema, "cy-format", error="invalid JSON schema in format")
        else:
            answer = builder.rule("cy-text", "[ \\t\\n]* [^< \\t\\n] [^\\x00]*")
        return builder.build(f"cy-calls | {answer}")


def parse_message_calls(value: object, where: str) -> tuple[ToolCall, ...]:
    """An assistant message's ``tool_calls`` (Ollama's shape; ``id``, ``type``, ``index`` are ignored)."""
    if value is None:
        return ()
    if not isinstance(value, list):
        raise ToolError(f"{where} must be a list")
    calls = []
    for index, item in enumerate(value):
        function = item.get("function") if isinstance(item, Mapping) else None
        if not isinstance(function, Mapping):
            raise ToolError(f"{where}[{index}].function must be an object")
        name, arguments = function.get("name"), function.get("arguments", {})
        if not isinstance(name, str) or not name:
            raise ToolError(f"{where}[{index}].function.name must be a non-empty string")
        if not isinstance(arguments, dict):
            raise ToolError(f"{where}[{index}].function.arguments must be an object")
        calls.append(ToolCall(name, arguments))
    return tuple(calls)


@dataclass
class CallReader:
    """Passes plain text on as it comes and holds back tool-call blocks, read into :attr:`calls` at the end."""

    forced: bool
    calls: list[ToolCall] = field(default_factory=list)

    def read(self, pieces: Iterator[str]) -> Iterator[str]:
        """The text to send as content; tool calls are collected instead (see :meth:`take`)."""
        held = ""
        deciding, calling = not self.forced, self.forced
        try:
            for text in pieces:
                if not deciding and not calling:
                    yield text
                    continue
                held += text
                if deciding:
                    start = held.lstrip()
                    if start.startswith(CALL_OPEN):
                        deciding, calling = False, True
                    elif not CALL_OPEN.startswith(start):
                        deciding = False
                        yield held
                        held = ""
        finally:
            pieces.close()  # type: ignore[attr-defined]
        if held:
            self.calls = _read_blocks(held)
            if not self.calls:  # cut short (num_predict, a stop string): the text as it came
                yield held

    def take(self) -> list[ToolCall]:
        """The calls read, once."""
        calls, self.calls = self.calls, []
        return calls


def _read_blocks(text: str) -> list[ToolCall]:
    """The complete, well-formed call blocks in ``text``, in order; a cut-off or malformed block ends the list."""
    calls = []
    for match in _CALL_BLOCK.finditer(text):
        try:
            call = json.loads(match.group(1))
        except json.JSONDecodeError:
            break
        if not isinstance(call, dict):
            break
        name, arguments = call.get("name"), call.get("arguments")
        if not (isinstance(name, str) and isinstance(arguments, dict)):
            break
        calls.append(ToolCall(name, arguments))
    return calls


def _parse_tools(value: object) -> list[Tool]:
    if value is None:
        return []
    if not isinstance(value, list):
        raise ToolError("tools must be a list")
    tools: dict[str, Tool] = {}
    for index, item in enumerate(value):
        where = f"tools[{index}]"
        if not isinstance(item, Mapping):
            raise ToolError(f"{where} must be an object")
        if item.get("type", "function") != "function":
            raise ToolError(f'{where}.type must be "function"')
        function = item.get("function")
        if not isinstance(function, Mapping):
            raise ToolError(f"{where}.function must be an object")
        name, description = function.get("name"), function.get("description") or ""
        parameters = function.get("parameters") or {"type": "object", "properties": {}}
        if not isinstance(name, str) or not _good_name(name):
            raise ToolError(f"{where}.function.name must be a printable string of 1 to {MAX_NAME} characters")
        if not isinstance(description, str):
            raise ToolError(f"{where}.function.description must be a string")
        if not isinstance(parameters, dict):
            raise ToolError(f"{where}.function.parameters must be a JSON schema object")
        if name in tools:
            raise ToolError(f"{where}.function.name {json.dumps(name)} is given twice")
        tools[name] = Tool(name, description, parameters)
    return list(tools.values())


def _good_name(name: str) -> bool:
    return (
        0 < len(name) <= MAX_NAME
        and all(unicodedata.category(c)[0] not in "CZ" or c == " " for c in name)
        and name.strip() == name
    )
