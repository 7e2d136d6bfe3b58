"""The JSON bodies of Ollama's ``/api/generate`` and ``/api/chat``: requests read and checked, answers built.

Checks run in Ollama's order and fail with Ollama's words (:class:`ApiError`
carries the status). An answer is a run of ``chunk`` objects (``done:
false``) and one ``final`` object with the counts and durations; a
non-streamed answer is the ``final`` object alone, holding the whole text.

``format`` (both endpoints) becomes a grammar here, ``tools`` and our
``tool_choice`` extension (``/api/chat``) a :class:`ToolSet` and its grammar,
so a bad schema is a 400 before the model is taken. A chat answer with tools
reads the model's calls (:class:`CallReader`) into ``message.tool_calls``:
in the final object, or streamed in a chunk of their own before it.
"""

from __future__ import annotations

import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

from cynode_llamacpp.engine import GenerationResult
from cynode_llamacpp.grammars import GrammarError, format_grammar, read_format
from cynode_llamacpp.prompts import ChatMessage, PromptError, parse_messages
from cynode_llamacpp.sampling import OptionError, Sampling
from cynode_llamacpp.served_model import ServedModel, now_rfc3339
from cynode_llamacpp.tools import CallReader, ToolCall, ToolError, ToolSet


class ApiError(Exception):
    """An error answered as Ollama answers it: ``{"error": message}`` with ``status``."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


@dataclass(frozen=True)
class GenerateRequest:
    """A checked ``/api/generate`` body."""

    model: str
    stream: bool
    sampling: Sampling
    prompt: str | None
    system: str | None
    raw: bool
    context: list[int] | None
    grammar: str | None = None

    @classmethod
    def from_json(cls, data: dict[str, Any], served: ServedModel, default_num_predict: int) -> GenerateRequest:
        model, stream, sampling = _read_common(data, served, default_num_predict)
        try:
            grammar = _grammar(data, None)
        except GrammarError as exc:
            raise ApiError(400, str(exc)) from None
        prompt, system = _optional_str(data, "prompt"), _optional_str(data, "system")
        raw = data.get("raw") is True
        context = data.get("context")
        if context is not None and not (isinstance(context, list) and all(type(t) is int for t in context)):
            raise ApiError(400, "context must be a list of integers")
        if data.get("suffix"):
            raise ApiError(400, f'"{model}" does not support insert')
        if data.get("template"):
            raise ApiError(400, "a request template is not supported by the llamacpp backend")
        if raw and (system or context):
            raise ApiError(400, "raw mode does not support template, system, or context")
        return cls(model, stream, sampling, prompt, system, raw, context, grammar)

    def load_answer(self) -> dict[str, Any]:
        """What Ollama answers a request with no prompt: it loads the model (ours always is)."""
        return {"model": self.model, "created_at": now_rfc3339(), "response": "", "done": True, "done_reason": "load"}


@dataclass(frozen=True)
class ChatRequest:
    """A checked ``/api/chat`` body."""

    model: str
    stream: bool
    sampling: Sampling
    messages: list[ChatMessage]
    tools: ToolSet | None = None
    grammar: str | None = None

    @classmethod
    def from_json(cls, data: dict[str, Any], served: ServedModel, default_num_predict: int) -> ChatRequest:
        model, stream, sampling = _read_common(data, served, default_num_predict)
        try:
            messages = parse_messages(data.get("messages"))
            tools = ToolSet.from_request(data.get("tools"), data.get("tool_choice"))
            grammar = _grammar(data, tools)
        except (PromptError, ToolError, GrammarError) as exc:
            raise ApiError(400, str(exc)) from None
        return cls(model, stream, sampling, messages, tools, grammar)

    def call_reader(self) -> CallReader | None:
        """What reads the model's tool calls from its answer, when it was given tools."""
        return CallReader(forced=self.tools.forced) if self.tools is not None else None

    def load_answer(self) -> dict[str, Any]:
        """What Ollama answers a request with no messages: it loads the model (ours always is)."""
        return {
            "model": self.model,
            "created_at": now_rfc3339(),
            "message": {"role": "assistant", "content": ""},
            "done_reason": "load",
            "done": True,
        }


@dataclass(frozen=True)
class GenerateAnswer:
    """The objects of one ``/api/generate`` answer; ``result`` is complete when :meth:`final` is called."""

    model: str
    result: GenerationResult
    started_ns: int
    with_context: bool

    def read(self, pieces: Iterator[str]) -> Iterator[str]:
        """The generated pieces, all of them text."""
        return pieces

    def calls_chunk(self) -> dict[str, Any] | None:
        """No tool calls on ``/api/generate``."""
        return None

    def chunk(self, text: str) -> dict[str, Any]:
        return {"model": self.model, "created_at": now_rfc3339(), "response": text, "done": False}

    def final(self, text: str) -> dict[str, Any]:
        payload: dict[str, Any] = {
            "model": self.model,
            "created_at": now_rfc3339(),
            "response": text,
            "done": True,
            "done_reason": self.result.done_reason,
        }
        if self.with_context:
            payload["context"] = self.result.tokens
        return payload | counts(self.result, self.started_ns)


@dataclass(frozen=True)
class ChatAnswer:
    """The objects of one ``/api/chat`` answer; ``result`` is complete when :meth:`final` is called."""

    model: str
    result: GenerationResult
    started_ns: int
    reader: CallReader | None = None

    def read(self, pieces: Iterator[str]) -> Iterator[str]:
        """The content pieces; with tools, call blocks are held back for :meth:`calls_chunk` / :meth:`final`."""
        return self.reader.read(pieces) if self.reader is not None else pieces

    def calls_chunk(self) -> dict[str, Any] | None:
        """A streamed chunk with the tool calls read (taken: the final object then has none), if any."""
        calls = self.reader.take() if self.reader is not None else []
        return self.chunk("", calls) if calls else None

    def chunk(self, text: str, calls: Sequence[ToolCall] = ()) -> dict[str, Any]:
        return {"model": self.model, "created_at": now_rfc3339(), "message": _message(text, calls), "done": False}

    def final(self, text: str) -> dict[str, Any]:
        """The last object; it holds the tool calls read and not yet taken by :meth:`calls_chunk`."""
        calls = self.reader.take() if self.reader is not None else []
        return {
            "model": self.model,
            "created_at": now_rfc3339(),
            "message": _message(text, calls),
            "done_reason": self.result.done_reason,
            "done": True,
        } | counts(self.result, self.started_ns)


def _message(text: str, calls: Sequence[ToolCall]) -> dict[str, Any]:
    message: dict[str, Any] = {"role": "assistant", "content": text}
    if calls:
        message["tool_calls"] = [call.to_json() for call in calls]
    return message


def counts(result: GenerationResult, started_ns: int) -> dict[str, int]:
    """The counts and durations (nanoseconds) of a final object; the total runs from ``started_ns`` to now."""
    return {
        "total_duration": max(time.perf_counter_ns() - started_ns, 1),
        "load_duration": result.load_duration,
        "prompt_eval_count": result.prompt_eval_count,
        "prompt_eval_duration": result.prompt_eval_duration,
        "eval_count": result.eval_count,
        "eval_duration": result.eval_duration,
    }


def _read_common(data: dict[str, Any], served: ServedModel, default_num_predict: int) -> tuple[str, bool, Sampling]:
    """Model name, stream flag and sampling options, each checked as Ollama checks them."""
    model = data.get("model")
    if not isinstance(model, str) or not model.strip():
        raise ApiError(400, "model is required")
    if not served.matches(model):
        raise ApiError(404, f'model "{model}" not found, try pulling it first')
    stream = data.get("stream")
    if stream is not None and not isinstance(stream, bool):
        raise ApiError(400, "stream must be a boolean")
    if data.get("think"):
        raise ApiError(400, f'"{model}" does not support thinking')
    try:
        sampling = Sampling.from_request(data.get("options"), default_num_predict=default_num_predict)
    except OptionError as exc:
        raise ApiError(400, str(exc)) from None
    return model, stream is not False, sampling


def _grammar(data: dict[str, Any], tools: ToolSet | None) -> str | None:
    """The grammar ``format`` and ``tools`` ask for, if any (``GrammarError`` for a bad schema)."""
    answer_schema = read_format(data.get("format"))
    if tools is not None:
        return tools.grammar(answer_schema)
    return format_grammar(answer_schema) if answer_schema is not None else None


def _optional_str(data: dict[str, Any], key: str) -> str | None:
    value = data.get(key)
    if value is None or isinstance(value, str):
        return value
    raise ApiError(400, f"{key} must be a string")
