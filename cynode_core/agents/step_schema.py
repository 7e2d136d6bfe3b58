"""The JSON Schema a decide call is sampled under, and the check of what the model answered (agents_contract.md 3, 4.4).

A step is either ``{"action": "reply"}`` or ``{"action": "call", "tool":
<name>, "arguments": {...}}``, one ``oneOf`` branch per tool with that
tool's input schema, pruned to the subset a llama.cpp grammar and a small
model handle (3.2), every string at most :data:`STEP_MAX_LENGTH` characters.
Arguments that name existing objects (``task_id``,
``job_id``, ``project_id``) are narrowed to the ids seen in this turn, so
even a tiny model's call names a real object; a tool whose required id has
no candidate yet is left out of the step.

The backend samples under the schema, but the agent checks every answer
again with ``jsonschema`` (a backend may ignore ``format``).
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import jsonschema

# The keywords a published input schema may use (agents_contract.md 3.2); others are dropped.
KEPT_KEYWORDS = frozenset(
    {
        "type",
        "properties",
        "required",
        "additionalProperties",
        "enum",
        "const",
        "minLength",
        "maxLength",
        "minimum",
        "maximum",
        "items",
        "maxItems",
        "pattern",
        "description",
    }
)
# Arguments that name an object the turn may have seen; narrowed to those ids.
ID_ARGUMENTS = ("task_id", "job_id", "project_id")
# Bounds of every string and array of a step, whatever the tool publishes: a decide call has 512 tokens,
# a tiny model would otherwise never close an open string, and llama.cpp grammars spell repetitions out.
STEP_MAX_LENGTH = 400
STEP_MAX_ITEMS = 16


@dataclass(frozen=True)
class ToolInfo:
    """A tool the agent may call: as the gateway lists it."""

    name: str
    description: str
    input_schema: Mapping[str, Any]
    # The gateway's readOnlyHint: a call may be sent again after a transport failure (agents_contract.md 4.8).
    read_only: bool = False


@dataclass(frozen=True)
class Decision:
    """What a decide call chose: reply, or call ``tool`` with ``arguments``."""

    action: str
    tool: str = ""
    arguments: Mapping[str, Any] | None = None


def prune(schema: Mapping[str, Any]) -> dict[str, Any]:
    """``schema`` with only the kept keywords, bounds on open strings and arrays, no extra properties."""
    out: dict[str, Any] = {}
    for key, value in schema.items():
        if key not in KEPT_KEYWORDS:
            continue
        if key == "properties" and isinstance(value, Mapping):
            out[key] = {name: prune(sub) for name, sub in value.items() if isinstance(sub, Mapping)}
        elif key == "items" and isinstance(value, Mapping):
            out[key] = prune(value)
        else:
            out[key] = value
    kind = out.get("type")
    if kind == "object":
        out["additionalProperties"] = False
        out.setdefault("properties", {})
    elif kind == "string" and "enum" not in out and "const" not in out:
        out["maxLength"] = min(int(out.get("maxLength", STEP_MAX_LENGTH)), STEP_MAX_LENGTH)
        out["minLength"] = min(int(out.get("minLength", 0)), out["maxLength"])
    elif kind == "array":
        out["maxItems"] = min(int(out.get("maxItems", STEP_MAX_ITEMS)), STEP_MAX_ITEMS)
    return out


def _narrowed(arguments: dict[str, Any], seen: Mapping[str, Iterable[str]]) -> dict[str, Any] | None:
    """The arguments schema with id arguments limited to ``seen`` ids; None when a required id has none."""
    properties = dict(arguments.get("properties", {}))
    required = set(arguments.get("required", []))
    for name in ID_ARGUMENTS:
        if name not in properties:
            continue
        candidates = sorted(set(seen.get(name, ())))
        if candidates:
            properties[name] = {"type": "string", "enum": candidates}
        elif name in required:
            return None
        else:
            del properties[name]
    return {**arguments, "properties": properties}


def step_schema(tools: Sequence[ToolInfo], seen: Mapping[str, Iterable[str]] | None = None) -> dict[str, Any]:
    """The ``oneOf`` of reply and one call branch per tool (``action`` and ``tool`` first)."""
    branches: list[dict[str, Any]] = [
        {
            "type": "object",
            "properties": {"action": {"const": "reply"}},
            "required": ["action"],
            "additionalProperties": False,
        }
    ]
    for tool in tools:
        arguments = _narrowed(prune({"type": "object", **tool.input_schema}), seen or {})
        if arguments is None:
            continue
        arguments.pop("description", None)
        branches.append(
            {
                "type": "object",
                "properties": {"action": {"const": "call"}, "tool": {"const": tool.name}, "arguments": arguments},
                "required": ["action", "tool", "arguments"],
                "additionalProperties": False,
            }
        )
    return {"oneOf": branches}


def check(text: str, schema: Mapping[str, Any]) -> Decision | str:
    """The decision in a decide call's text, or why it is not one (to show the model on its retry)."""
    try:
        value = json.loads(text)
    except json.JSONDecodeError as exc:
        return f"the answer is not JSON ({exc.msg})"
    error = jsonschema.exceptions.best_match(jsonschema.Draft202012Validator(schema).iter_errors(value))
    if error is not None:
        return f"the answer does not match the step schema: {error.message[:300]}"
    if value["action"] == "reply":
        return Decision("reply")
    return Decision("call", value["tool"], value["arguments"])
