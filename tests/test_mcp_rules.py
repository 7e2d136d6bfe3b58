"""The gateway's fixed rules, enumerated: role allowlists (mcp/allowlist.py) and the schema subset (mcp/schemas.py).

Pure functions, no database: the allowlists are upstream's ``allowlist.go``
rule for rule (mcp_contract.md 5 says tests enumerate them), and the schema
subset is agents_contract.md 3.2.
"""

from __future__ import annotations

from typing import Any

import pytest

from cynode_core.orchestrator.mcp import allowlist, schemas
from cynode_core.orchestrator.mcp.registry import McpTool

# Written out from mcp_contract.md 5, not imported: the module must match the contract's text.
PM_PREFIXES = (
    "task. project. preference. job. system_setting. specification. node. sandbox. artifact. artifacts. model. "
    "connector. web. api. git. help. persona. skills."
).split()
SANDBOX = (
    "help.list help.get preference.get preference.list preference.effective artifact.get skills.list skills.get"
).split()
PA_ALLOWED = "task. project. preference. job. artifact. artifacts. help. persona. skills.".split()
PA_BLOCKED = "node. sandbox. system_setting. connector. model.".split()


def test_pm_allows_exactly_its_prefixes() -> None:
    for prefix in PM_PREFIXES:
        assert allowlist.role_allows("pm", prefix + "anything"), prefix
    for name in ("memory.get", "db.task.get", "tasks.get", "Task.get", " task.get", "task", "", "help"):
        assert not allowlist.role_allows("pm", name), name


def test_the_sandbox_allows_exactly_eight_names() -> None:
    for name in SANDBOX:
        assert allowlist.role_allows("sandbox", name), name
    for name in ("help.lists", "artifact.put", "artifact.list", "preference.create", "skills.update", "task.get"):
        assert not allowlist.role_allows("sandbox", name), name


def test_pa_blocks_first_then_allows_its_prefixes() -> None:
    for prefix in PA_ALLOWED:
        assert allowlist.role_allows("pa", prefix + "x"), prefix
    for prefix in PA_BLOCKED:
        assert not allowlist.role_allows("pa", prefix + "list"), prefix
    assert not allowlist.role_allows("pa", "task.cancel")
    assert not allowlist.role_allows("pa", "web.fetch") and not allowlist.role_allows("pa", "git.clone")


def test_unknown_roles_get_nothing() -> None:
    for role in ("", "admin", "PM", "worker"):
        assert not allowlist.role_allows(role, "help.list"), role


def _tool(name: str, scope: Any) -> McpTool:
    return McpTool(name, "d", {"type": "object", "properties": {}, "additionalProperties": False}, dict, scope)


def test_ours_only_narrow() -> None:
    for name in ("task.create", "task.ready"):
        assert allowlist.may_call("pm", name) and not allowlist.may_call("pa", name)
    assert allowlist.may_call("sandbox", "help.get", _tool("help.get", "both"))
    assert not allowlist.may_call("sandbox", "help.get", _tool("help.get", "pm"))
    assert not allowlist.may_call("pm", "task.x", _tool("task.x", "sandbox"))
    assert allowlist.may_call("pa", "task.x", _tool("task.x", "pm"))
    # Scope never widens: a sandbox-scoped tool outside the sandbox's names stays closed to it.
    assert not allowlist.may_call("sandbox", "task.x", _tool("task.x", "sandbox"))


GOOD = {"type": "string", "maxLength": 10}


@pytest.mark.parametrize(
    "schema",
    [
        {"type": "object", "properties": {}, "additionalProperties": False},
        {
            "type": "object",
            "properties": {
                "id": {"type": "string", "pattern": "^[0-9a-f]{8}-[0-9a-f]{4}$"},
                "n": {"type": "integer", "minimum": 1, "maximum": 3},
                "b": {"type": "boolean"},
                "e": {"type": "string", "enum": ["a"]},
                "c": {"type": "string", "const": "x"},
                "tags": {"type": "array", "items": GOOD, "maxItems": 3},
                "o": {"type": "object", "properties": {"s": GOOD}, "additionalProperties": False},
            },
            "required": ["id"],
            "additionalProperties": False,
        },
    ],
)
def test_schemas_in_the_subset_pass(schema: dict[str, Any]) -> None:
    assert schemas.subset_problems(schema) == []


def _with(prop: Any) -> dict[str, Any]:
    return {"type": "object", "properties": {"p": prop}, "additionalProperties": False}


@pytest.mark.parametrize(
    ("schema", "problem"),
    [
        ({"type": "array", "items": GOOD, "maxItems": 1}, "must be an object schema"),
        ({"type": "object", "properties": {}}, "additionalProperties: false"),
        (_with({"type": "string"}), "needs maxLength"),
        (_with({"type": "string", "maxLength": 5, "format": "uuid"}), "outside the subset"),
        (_with({"$ref": "#/x"}), "type must be one of"),
        (_with({"type": ["string", "null"], "maxLength": 5}), "type must be one of"),
        (_with({"type": "number"}), "type must be one of"),
        (_with({"type": "string", "maxLength": 5, "description": "d"}), "outside the subset"),
        (_with({"oneOf": [GOOD]}), "type must be one of"),
        (_with({"type": "array", "items": GOOD}), "needs items and maxItems"),
        (_with({"type": "string", "pattern": "[0-9]{3}"}), "anchored"),
        (_with({"type": "string", "pattern": "^[0-9]+$"}), "bounded repeats"),
        (_with({"type": "string", "pattern": "^(a|b)$"}), "bounded repeats"),
        (_with({"type": "string", "pattern": "^[0-9]{2,}$"}), "bounded repeats"),
        (_with({"type": "string", "maxLength": -1}), "not a valid JSON Schema"),
        ({**_with(GOOD), "required": ["q"]}, "required must list declared properties"),
        (_with({"type": "object", "properties": {}, "patternProperties": {}}), "outside the subset"),
    ],
)
def test_schemas_outside_the_subset_are_named(schema: dict[str, Any], problem: str) -> None:
    problems = schemas.subset_problems(schema)
    assert any(problem in p for p in problems), problems


def test_an_integer_is_a_json_integer() -> None:
    check = schemas.validator(_with({"type": "integer", "minimum": 0, "maximum": 9}))
    assert check.is_valid({"p": 3})
    for value in (3.0, True, "3", None):
        assert not check.is_valid({"p": value}), value
