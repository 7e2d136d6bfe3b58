"""JSON schemas as llama.cpp grammars (GBNF): Ollama's ``format``, and the pieces of the tool-call grammar.

Schemas are converted by llama-cpp-python's port of llama.cpp's
``json_schema_to_grammar`` (``llama_cpp.llama_grammar.SchemaConverter``),
all of one request's schemas by one converter, each under its own rule name,
so the format and every tool's parameters share the primitive rules. Two
things differ from the port:

- a string may not hold raw control characters (``json.loads`` refuses
  them), as in llama.cpp's own converter; the port allows them;
- a schema the port cannot convert is a :class:`GrammarError` (HTTP 400)
  rather than an exception from deep inside the converter; so is one whose
  grammar llama.cpp then refuses
  (:class:`~cynode_llamacpp.constrained.GrammarConstraint`).

Whitespace between JSON tokens is at most one space (the port's rule), so a
small model cannot run away in blank lines.
"""

from __future__ import annotations

import copy
import json
import re
from collections.abc import Mapping
from typing import Any

# Ollama's "json" format: any JSON object (its grammarJSON's root is an object).
ANY_OBJECT: dict[str, Any] = {"type": "object"}

# Repetition counts beyond this would make grammars of millions of rules (the converter spells them out).
MAX_REPEAT = 1000
_SIZE_KEYS = ("minItems", "maxItems", "minLength", "maxLength")
_PATTERN_COUNT = re.compile(r"\{\s*(\d*)\s*(?:,\s*(\d*)\s*)?\}")

# A JSON string character: the port's rule, less the control characters JSON forbids unescaped.
_PORT_CHAR = r'[^"\\] |'
_JSON_CHAR = r'[^"\\\x7F\x00-\x1F] |'


class GrammarError(ValueError):
    """A ``format`` or tool schema that cannot become a grammar (HTTP 400, Ollama's words where it has them)."""


def read_format(value: object) -> dict[str, Any] | None:
    """The JSON schema Ollama's ``format`` asks for: ``None`` for no format, ``"json"`` for any object."""
    if value is None or value == "":
        return None
    if value == "json":
        return dict(ANY_OBJECT)
    if isinstance(value, dict):
        return value
    shown = json.dumps(json.dumps(value))
    raise GrammarError(f'invalid format: {shown}; expected "json" or a valid JSON Schema object')


class GrammarBuilder:
    """Collects one request's rules: schemas converted by llama.cpp's converter plus rules of our own."""

    def __init__(self) -> None:
        from llama_cpp.llama_grammar import SchemaConverter

        self._converter = SchemaConverter(prop_order={}, allow_fetch=False, dotall=False, raw_pattern=False)
        self._own: dict[str, str] = {}

    def schema(self, schema: Mapping[str, Any], name: str, *, error: str) -> str:
        """Add the rules for values valid under ``schema``; the name of their rule (``error`` if it cannot be)."""
        if not isinstance(schema, Mapping):
            raise GrammarError(error)
        try:
            _check_sizes(schema)
            resolved = self._converter.resolve_refs(copy.deepcopy(dict(schema)), f"{name}:")
            return str(self._converter.visit(resolved, name))
        except (AssertionError, ValueError, KeyError, TypeError, AttributeError, IndexError, RecursionError) as exc:
            reason = str(exc).encode("utf-8", "backslashreplace").decode("utf-8")  # lone surrogates stay readable
            raise GrammarError(f"{error}: {reason}" if reason else error) from None

    def rule(self, name: str, body: str) -> str:
        """Add a rule of our own; ``name`` must not be one the converter makes (ours start with ``cy-``)."""
        self._own[name] = body
        return name

    def build(self, root: str) -> str:
        """The grammar text, ``root ::= <root>`` first."""
        converted = self._converter.format_grammar()
        lines = [f"root ::= {root}", *(f"{name} ::= {body}" for name, body in self._own.items())]
        for line in converted.splitlines():
            if line.startswith("char ::= ") and _PORT_CHAR in line:
                line = line.replace(_PORT_CHAR, _JSON_CHAR, 1)
            lines.append(line)
        return "\n".join(lines) + "\n"


def literal(text: str) -> str:
    """``text`` as a GBNF string literal."""
    escaped = text.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n").replace("\r", "\\r")
    return f'"{escaped}"'


def format_grammar(schema: Mapping[str, Any]) -> str:
    """The grammar of an answer that is one JSON value valid under ``schema`` (Ollama's ``format``)."""
    builder = GrammarBuilder()
    return builder.build(builder.schema(schema, "cy-format", error="invalid JSON schema in format"))


def _check_sizes(schema: Mapping[str, Any]) -> None:
    """``ValueError`` for a repetition count the converter would spell out into an enormous grammar."""
    pending: list[object] = [schema]
    while pending:
        node = pending.pop()
        if isinstance(node, list):
            pending.extend(node)
        elif isinstance(node, Mapping):
            for key, value in node.items():
                if key in _SIZE_KEYS and isinstance(value, int | float) and value > MAX_REPEAT:
                    raise ValueError(f"{key} {value} is more than {MAX_REPEAT}")
                if key == "pattern" and isinstance(value, str):
                    counts = [int(n) for match in _PATTERN_COUNT.finditer(value) for n in match.groups() if n]
                    if any(n > MAX_REPEAT for n in counts):
                        raise ValueError(f"a repetition count in pattern is more than {MAX_REPEAT}")
                pending.append(value)
