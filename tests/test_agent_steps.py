"""The agent's step schema and its check of a decide answer (agents_contract.md 3.2, 4.4)."""

from __future__ import annotations

import json
from typing import Any

import pytest

from cynode_core.agents.step_schema import STEP_MAX_LENGTH, Decision, ToolInfo, check, prune, step_schema

CREATE = ToolInfo(
    "task.create",
    "Create a draft task",
    {
        "type": "object",
        "properties": {
            "prompt": {"type": "string", "minLength": 1, "maxLength": 2000},
            "task_name": {"type": "string", "maxLength": 128, "format": "hostname"},
            "attachments": {"type": "array", "items": {"type": "string"}},
        },
        "required": ["prompt"],
        "additionalProperties": False,
        "$comment": "not for the model",
    },
)
READY = ToolInfo(
    "task.ready",
    "Start a draft task",
    {
        "type": "object",
        "properties": {"task_id": {"type": "string", "pattern": "^[0-9a-f-]{36}$"}},
        "required": ["task_id"],
    },
)
LIST = ToolInfo("task.list", "List tasks", {"type": "object", "properties": {"project_id": {"type": "string"}}})
TASK = "7c1e4b2a-3f5d-4e6a-9b8c-1d2e3f4a5b6c"


def _branches(schema: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {b["properties"].get("tool", {}).get("const", "reply"): b for b in schema["oneOf"]}


def test_prune_keeps_the_subset_and_bounds_every_string_and_array() -> None:
    pruned = prune(CREATE.input_schema)
    assert "$comment" not in pruned and pruned["additionalProperties"] is False
    props = pruned["properties"]
    assert props["prompt"]["maxLength"] == STEP_MAX_LENGTH and props["prompt"]["minLength"] == 1
    assert "format" not in props["task_name"] and props["task_name"]["maxLength"] == 128
    assert props["attachments"]["maxItems"] == 16 and props["attachments"]["items"]["maxLength"] == STEP_MAX_LENGTH


def test_a_tool_whose_required_id_was_never_seen_is_left_out_and_ids_become_enums() -> None:
    first = _branches(step_schema([CREATE, READY, LIST]))
    assert set(first) == {"reply", "task.create", "task.list"}
    assert "project_id" not in first["task.list"]["properties"]["arguments"]["properties"]
    later = _branches(step_schema([CREATE, READY, LIST], {"task_id": {TASK}}))
    assert later["task.ready"]["properties"]["arguments"]["properties"]["task_id"] == {"type": "string", "enum": [TASK]}
    assert list(later["task.ready"]["properties"]) == ["action", "tool", "arguments"]


@pytest.mark.parametrize(
    ("answer", "expected"),
    [
        ({"action": "reply"}, Decision("reply")),
        (
            {"action": "call", "tool": "task.ready", "arguments": {"task_id": TASK}},
            Decision("call", "task.ready", {"task_id": TASK}),
        ),
    ],
)
def test_valid_answers_are_decisions(answer: dict[str, Any], expected: Decision) -> None:
    assert check(json.dumps(answer), step_schema([READY], {"task_id": {TASK}})) == expected


@pytest.mark.parametrize(
    "text",
    [
        "not json",
        json.dumps({"action": "call", "tool": "nope"}),
        json.dumps({"action": "call", "tool": "task.ready", "arguments": {"task_id": "another"}}),
        json.dumps({"action": "call", "tool": "task.create", "arguments": {"prompt": "x", "extra": 1}}),
        json.dumps({"action": "call", "tool": "task.create", "arguments": {"prompt": "x" * (STEP_MAX_LENGTH + 1)}}),
        json.dumps([]),
    ],
)
def test_invalid_answers_say_why(text: str) -> None:
    why = check(text, step_schema([CREATE, READY], {"task_id": {TASK}}))
    assert isinstance(why, str) and why
