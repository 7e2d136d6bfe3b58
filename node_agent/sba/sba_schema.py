"""The local tools' argument schemas, the step schema of a decide call, and a small validator for both.

Schemas use only the subset of agents_contract.md 3.2 (``type``,
``properties``, ``required``, ``additionalProperties: false``, ``enum``,
``const``, ``minLength``, ``maxLength``, ``minimum``, ``maximum``, ``items``,
``maxItems``, ``oneOf`` at the top), so :func:`check` implements exactly that
and the runner needs nothing beyond the standard library (a sandbox can
install nothing). :data:`ARGUMENTS` carries the tools' real bounds (5.5),
which direct mode checks; the step schema given to the model as ``format``
lowers every string to :data:`STEP_MAX_LENGTH` characters, because a
llama.cpp grammar spells each repetition out (it refuses counts over 1000)
and a decide call has 512 tokens anyway.
"""

from __future__ import annotations

import copy
from typing import Any

import sba_spec as spec

STEP_MAX_LENGTH = 400
PATH_MAX = 1000


def _string(max_length: int, min_length: int = 0) -> dict[str, Any]:
    out: dict[str, Any] = {"type": "string", "maxLength": max_length}
    if min_length:
        out["minLength"] = min_length
    return out


def _object(properties: dict[str, Any], required: tuple[str, ...] = ()) -> dict[str, Any]:
    out: dict[str, Any] = {"type": "object", "properties": properties}
    if required:
        out["required"] = list(required)
    out["additionalProperties"] = False
    return out


_LINE = {"type": "integer", "minimum": 1}
# Each tool's arguments with the bounds of agents_contract.md 5.5 (argv's non-emptiness is the tool's check).
ARGUMENTS: dict[str, dict[str, Any]] = {
    spec.RUN_COMMAND: _object(
        {"argv": {"type": "array", "items": _string(1000), "maxItems": 32}, "cwd": _string(200)}, ("argv",)
    ),
    spec.READ_FILE: _object({"path": _string(PATH_MAX, 1), "start_line": _LINE, "end_line": _LINE}, ("path",)),
    spec.WRITE_FILE: _object({"path": _string(PATH_MAX, 1), "content": _string(65536)}, ("path", "content")),
    spec.APPLY_UNIFIED_DIFF: _object({"diff": _string(65536, 1)}, ("diff",)),
    spec.LIST_TREE: _object({"path": _string(PATH_MAX)}),
    spec.SEARCH_FILES: _object(
        {"pattern": _string(1000, 1), "path": _string(PATH_MAX), "include": _string(200)}, ("pattern",)
    ),
    spec.TODO_ADD: _object({"title": _string(200, 1)}, ("title",)),
    spec.TODO_DONE: _object({"index": {"type": "integer", "minimum": 0}}, ("index",)),
    spec.FINISH: _object({"answer": _string(4000, 1)}, ("answer",)),
}

# One line per tool for the prompt's catalog (argument schemas go into ``format``, not the prompt).
DESCRIPTIONS = {
    spec.RUN_COMMAND: "run a program without a shell (argv list; cwd under /workspace)",
    spec.READ_FILE: "read a text file (start_line, end_line optional)",
    spec.WRITE_FILE: "create or overwrite a file",
    spec.APPLY_UNIFIED_DIFF: "apply a unified diff (a/ and b/ paths)",
    spec.LIST_TREE: "list files and directories",
    spec.SEARCH_FILES: "search file contents with a regular expression",
    spec.TODO_ADD: "add an item to the todo list",
    spec.TODO_DONE: "mark a todo item done by its index",
    spec.FINISH: "end the job with your final report (answer)",
}


def _clamped(schema: Any) -> Any:
    """``schema`` with every ``maxLength`` at most :data:`STEP_MAX_LENGTH` (``minLength`` kept below it)."""
    if isinstance(schema, list):
        return [_clamped(item) for item in schema]
    if not isinstance(schema, dict):
        return schema
    out = {key: _clamped(value) for key, value in schema.items()}
    if "maxLength" in out:
        out["maxLength"] = min(out["maxLength"], STEP_MAX_LENGTH)
        if "minLength" in out:
            out["minLength"] = min(out["minLength"], out["maxLength"])
    return out


def step_schema(open_todos: list[int]) -> dict[str, Any]:
    """The decide call's ``format``: one ``oneOf`` branch per agent tool, ``action`` and ``tool`` first.

    ``todo_done`` may only name an open item (its ``index`` is an ``enum`` of
    them), and is left out while none is open.
    """
    branches = []
    for name in spec.AGENT_TOOLS:
        arguments = _clamped(copy.deepcopy(ARGUMENTS[name]))
        if name == spec.TODO_DONE:
            if not open_todos:
                continue
            arguments["properties"]["index"] = {"type": "integer", "enum": list(open_todos)}
        properties = {"action": {"const": "call"}, "tool": {"const": name}, "arguments": arguments}
        branches.append(_object(properties, ("action", "tool", "arguments")))
    return {"oneOf": branches}


_TYPES: dict[str, Any] = {"object": dict, "array": list, "string": str, "integer": int, "boolean": bool}


def _same(value: Any, expected: Any) -> bool:
    """JSON equality: ``true`` is not ``1``."""
    return type(value) is type(expected) and value == expected


def _name(where: str, key: str) -> str:
    return f"{where}.{key}" if where else key


def check(value: Any, schema: dict[str, Any], where: str = "") -> str:
    """The first way ``value`` breaks ``schema`` (``<path>: <reason>``), or ``""`` when it is valid."""
    here = where or "value"
    if "oneOf" in schema:
        return _check_one_of(value, schema["oneOf"], where)
    if "const" in schema and not _same(value, schema["const"]):
        return f"{here}: must be {schema['const']!r}"
    if "enum" in schema and not any(_same(value, item) for item in schema["enum"]):
        return f"{here}: must be one of {schema['enum']}"
    kind = schema.get("type")
    if kind is not None and (not isinstance(value, _TYPES[kind]) or (kind == "integer" and isinstance(value, bool))):
        return f"{here}: must be of type {kind}"
    if isinstance(value, dict):
        properties = schema.get("properties", {})
        for key in schema.get("required", []):
            if key not in value:
                return f"{_name(where, key)}: required"
        for key in value:
            if key not in properties and schema.get("additionalProperties") is False:
                return f"{_name(where, key)}: unknown field"
            if key in properties:
                problem = check(value[key], properties[key], _name(where, key))
                if problem:
                    return problem
    elif isinstance(value, str):
        if len(value) < schema.get("minLength", 0):
            return f"{here}: shorter than {schema['minLength']} characters"
        if "maxLength" in schema and len(value) > schema["maxLength"]:
            return f"{here}: longer than {schema['maxLength']} characters"
    elif isinstance(value, int) and not isinstance(value, bool):
        if "minimum" in schema and value < schema["minimum"]:
            return f"{here}: less than {schema['minimum']}"
        if "maximum" in schema and value > schema["maximum"]:
            return f"{here}: more than {schema['maximum']}"
    elif isinstance(value, list):
        if "maxItems" in schema and len(value) > schema["maxItems"]:
            return f"{here}: more than {schema['maxItems']} items"
        for n, item in enumerate(value):
            problem = check(item, schema.get("items", {}), f"{where}[{n}]")
            if problem:
                return problem
    return ""


def _check_one_of(value: Any, branches: list[dict[str, Any]], where: str) -> str:
    """Exactly one branch must hold; otherwise the problem of the branch the value's constants chose."""
    problems = [check(value, branch, where) for branch in branches]
    matching = problems.count("")
    if matching == 1:
        return ""
    if matching > 1:
        return f"{where or 'value'}: matches more than one branch"
    for n, branch in enumerate(branches):
        constants = {key: sub["const"] for key, sub in branch.get("properties", {}).items() if "const" in sub}
        if isinstance(value, dict) and constants and all(_same(value.get(k), c) for k, c in constants.items()):
            return problems[n]
    tools = [b["properties"]["tool"]["const"] for b in branches if "tool" in b.get("properties", {})]
    shape = '{"action": "call", "tool": <one of ' + ", ".join(tools) + '>, "arguments": {...}}'
    return f"{where or 'value'}: must be {shape}"
