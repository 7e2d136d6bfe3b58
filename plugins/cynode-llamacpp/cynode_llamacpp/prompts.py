"""From an Ollama request to prompt tokens: the model's chat template when the GGUF has one, plain text otherwise.

Ollama renders ``/api/generate`` prompts through the model's template unless
``raw`` is set; a GGUF without a template gets Ollama's default template
``{{ .Prompt }}``, i.e. the prompt as it is. The bundled gemma-3-270m is a
base model whose GGUF carries no chat template (and the Gemma turn markers
make it echo the question rather than answer), so:

- ``/api/generate`` sends the prompt as plain completion text (a ``system``
  text, when given, comes first, followed by a blank line);
- ``/api/chat`` writes the conversation as a plain transcript
  (``User: ...`` / ``Assistant: ...``) ending in ``Assistant:``, and stops
  when the model starts the next ``User:`` line. A base model continues such
  a transcript with a real answer.

A GGUF that does carry ``tokenizer.chat_template`` is rendered with it
(Jinja, as llama-cpp-python renders it), for both endpoints.

Tool calling (:mod:`cynode_llamacpp.tools`) is written into plain messages
before either rendering: the tools' instructions end the system message (one
is added first when there is none), an assistant message's ``tool_calls``
follow its content as ``<tool_call>`` blocks, and a ``tool`` message's content
becomes a ``<tool_response>`` block. The transcript labels that ``Tool:``; for
a chat template it is a ``user`` message (consecutive results merged), since
most templates know no ``tool`` role.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from cynode_llamacpp.engine import Session
from cynode_llamacpp.model_loader import ModelInfo
from cynode_llamacpp.tools import ToolCall, ToolError, ToolSet, calls_text, parse_message_calls, result_text

TRANSCRIPT_STOPS = ("\nUser:", "\nSystem:", "\nTool:")
_TRANSCRIPT_LABELS = {"system": "System", "user": "User", "assistant": "Assistant", "tool": "Tool"}


class PromptError(ValueError):
    """The request's prompt fields are malformed (HTTP 400)."""


@dataclass(frozen=True)
class Prompt:
    """Tokens to evaluate, extra stop strings, and how to shape the reply."""

    tokens: list[int]
    stop: tuple[str, ...] = ()
    strip_leading_space: bool = False


@dataclass(frozen=True)
class ChatMessage:
    role: str
    content: str
    tool_calls: tuple[ToolCall, ...] = ()
    tool_name: str | None = None


def parse_messages(value: object) -> list[ChatMessage]:
    """The ``messages`` of a chat request; ``PromptError`` unless a list of ``{role, content}`` objects.

    An assistant message may carry ``tool_calls``, a ``tool`` message ``tool_name`` (Ollama's fields).
    """
    if value is None:
        return []
    if not isinstance(value, list):
        raise PromptError("messages must be a list")
    messages = []
    for index, item in enumerate(value):
        if not isinstance(item, Mapping):
            raise PromptError(f"messages[{index}] must be an object")
        role, content = item.get("role"), item.get("content")
        if not isinstance(role, str) or not role:
            raise PromptError(f"messages[{index}].role must be a non-empty string")
        if content is None:
            content = ""
        if not isinstance(content, str):
            raise PromptError(f"messages[{index}].content must be a string")
        tool_name = item.get("tool_name")
        if tool_name is not None and not isinstance(tool_name, str):
            raise PromptError(f"messages[{index}].tool_name must be a string")
        try:
            calls = parse_message_calls(item.get("tool_calls"), f"messages[{index}].tool_calls")
        except ToolError as exc:
            raise PromptError(str(exc)) from None
        messages.append(ChatMessage(role=role, content=content, tool_calls=calls, tool_name=tool_name or None))
    return messages


def generate_prompt(
    session: Session, info: ModelInfo, *, prompt: str, system: str | None, raw: bool, context: Sequence[int] | None
) -> Prompt:
    """Tokens for ``/api/generate``."""
    if raw:
        return Prompt(tokens=session.tokenize(prompt, add_bos=True))
    if info.chat_template:
        messages = ([ChatMessage("system", system)] if system else []) + [ChatMessage("user", prompt)]
        text = _render_template(info, messages)
    else:
        text = f"{system}\n\n{prompt}" if system else prompt
    if context:
        return Prompt(tokens=list(context) + session.tokenize(text, add_bos=False))
    return Prompt(tokens=session.tokenize(text, add_bos=not text.startswith(info.bos_text or "\0")))


def chat_prompt(
    session: Session, info: ModelInfo, messages: Sequence[ChatMessage], tools: ToolSet | None = None
) -> Prompt:
    """Tokens for ``/api/chat``; ``tools``, when given, are described in the system message."""
    messages = with_tools(messages, tools, template=bool(info.chat_template))
    if info.chat_template:
        text = _render_template(info, messages)
        return Prompt(
            tokens=session.tokenize(text, add_bos=not text.startswith(info.bos_text or "\0")),
            stop=(info.eos_text,) if info.eos_text else (),
        )
    lines = [f"{_TRANSCRIPT_LABELS.get(m.role, m.role.capitalize())}: {m.content}" for m in messages]
    continuing = messages[-1].role == "assistant"
    if not continuing:
        lines.append("Assistant:")
    return Prompt(
        tokens=session.tokenize("\n".join(lines), add_bos=True),
        stop=TRANSCRIPT_STOPS,
        strip_leading_space=not continuing,
    )


def with_tools(messages: Sequence[ChatMessage], tools: ToolSet | None, *, template: bool) -> list[ChatMessage]:
    """Plain ``{role, content}`` messages: calls and results written out, the tools' instructions added."""
    plain: list[ChatMessage] = []
    previous_result = False
    for message in messages:
        role, content = message.role, message.content
        if message.tool_calls:
            content = "\n".join(part for part in (content, calls_text(message.tool_calls)) if part)
        is_result = role == "tool"
        if is_result:
            content = result_text(content, message.tool_name)
            if template:
                role = "user"
                if previous_result:  # results in a row make one user turn
                    content = f"{plain.pop().content}\n{content}"
        previous_result = is_result
        plain.append(ChatMessage(role, content))
    if tools is not None:
        if plain and plain[0].role == "system":
            plain[0] = ChatMessage("system", f"{plain[0].content}\n\n{tools.instructions()}")
        else:
            plain.insert(0, ChatMessage("system", tools.instructions()))
    return plain


def _render_template(info: ModelInfo, messages: Sequence[ChatMessage]) -> str:
    import jinja2
    from llama_cpp.llama_chat_format import Jinja2ChatFormatter

    assert info.chat_template is not None
    formatter = Jinja2ChatFormatter(template=info.chat_template, eos_token=info.eos_text, bos_token=info.bos_text)
    try:
        rendered = formatter(messages=[{"role": m.role, "content": m.content} for m in messages])  # type: ignore[misc]
    except (ValueError, TypeError, jinja2.TemplateError) as exc:  # the template's raise_exception() included
        raise PromptError(f"the model's chat template rejected the messages: {exc}") from exc
    return rendered.prompt
