"""The help tools: ``help.list`` and ``help.get`` (mcp_contract.md 7), for every role.

Help describes only the tools the caller may call: those its role's
allowlist admits, whose scope fits the role, and that are not disabled. A
tool's help is its description and a table of its arguments made from its
input schema; three fixed topics (``tools``, ``gateway``, ``projects``)
follow, as upstream's; no topic gives the overview. Content is at most
32 KiB of UTF-8, cut on a character boundary, with ``truncated`` saying so.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from cynode_core.orchestrator.mcp.catalog import catalog_of
from cynode_core.orchestrator.mcp.registry import McpTool, ToolCall, ToolFailed
from cynode_core.orchestrator.mcp.tools import schema

MAX_CONTENT_BYTES = 32 * 1024
MAX_SUMMARY = 200

# topic -> (summary, markdown)
TOPICS: dict[str, tuple[str, str]] = {
    "tools": (
        "How to call a tool and read its answer.",
        "# Calling tools\n\n"
        'Send `POST /v1/mcp/tools/call` with `{"tool_name": "task.get", "arguments": {...}}`, or the MCP '
        "method `tools/call` on `POST /mcp`. Arguments are checked against the tool's input schema: unknown keys "
        "are dropped, a wrong type or a missing required argument is a 400 `invalid_arguments`.\n\n"
        "A result is a JSON object; timestamps are RFC 3339 UTC and absent values are left out. Lists come in "
        "pages: `limit` (default 50, at most 200) and `offset`, or the `next_cursor` of the previous page as "
        "`cursor`. An error names its kind in `error_type` (`not_found`, `conflict`, `invalid_arguments`, ...).\n\n"
        "Tasks: `task.create` writes a draft that does not run; `task.ready` starts it; `task.get`, "
        "`task.result` and `task.logs` follow it; `task.cancel` stops it.",
    ),
    "gateway": (
        "What the gateway checks and records on every call.",
        "# The gateway\n\n"
        "Every call carries an agent token bound to one user (and maybe a project, task and job). The gateway "
        "checks, in order: the token, the role's allowlist, the disabled list, the call rate, that the tool "
        "exists, the arguments, and then the scope: you act as that user, never as an administrator, and only "
        "on their own tasks, jobs and projects (another user's object is `not found`). A `user_id` argument, "
        "when given, must be the token's user. Every call is written to the audit log, allowed or not.",
    ),
    "projects": (
        "Which projects a task can belong to.",
        "# Projects\n\n"
        "A user may use their default project (today the only one). `project.list` and `project.get` show it. "
        "A task created without `project_id` belongs to the project of the conversation, else to the default "
        "project; a `project_id` that is not one of the user's is refused (400 `Invalid project_id`).",
    ),
}
HINT = "Call help.get with a topic (a tool name, or tools, gateway, projects) for its text; with none for the overview."
_PATH_NOTE = "\n\n(No document is served for `path`; ask for a topic from help.list instead.)"


def _summary(text: str) -> str:
    line = text.strip().splitlines()[0] if text.strip() else ""
    return line if len(line) <= MAX_SUMMARY else line[: MAX_SUMMARY - 3] + "..."


def _callable_tools(call: ToolCall) -> list[McpTool]:
    """The tools the caller's role may call, in catalog order (as ``tools/list`` shows them)."""
    return catalog_of(call.state.pm).callable_by(call.principal.role, call.state.settings.mcp_disabled_tools)


def _range(low: Any, high: Any, unit: str = "") -> list[str]:
    if low is not None and high is not None:
        return [f"{low} to {high}{unit}"]
    if high is not None:
        return [f"at most {high}{unit}"]
    return [] if low is None else [f"at least {low}{unit}"]


def _constraints(prop: Mapping[str, Any]) -> str:
    """An argument's allowed values, in words."""
    if "const" in prop:
        return f"`{prop['const']}`"
    if "enum" in prop:
        return "one of " + ", ".join(f"`{v}`" for v in prop["enum"])
    if prop.get("pattern") == schema.UUID_PATTERN:
        return "a UUID"
    kind = prop.get("type")
    words = [f"matching `{prop['pattern']}`"] if "pattern" in prop else []
    if kind == "string":
        words += _range(prop.get("minLength") or None, prop.get("maxLength"), " characters")
    elif kind == "integer":
        words += _range(prop.get("minimum"), prop.get("maximum"))
    elif kind == "array":
        inner = _constraints(prop.get("items") or {})
        words += _range(None, prop.get("maxItems"), " items")
        return ", each ".join([*words, inner] if inner else words)
    return ", ".join(words)


def _type_name(prop: Mapping[str, Any]) -> str:
    if prop.get("type") == "array":
        return f"array of {(prop.get('items') or {}).get('type', 'any')}"
    return str(prop.get("type", "any"))


def tool_help(tool: McpTool) -> str:
    """A tool's description and the table of its arguments."""
    lines = [f"# {tool.name}", "", tool.description.strip(), ""]
    properties: Mapping[str, Any] = tool.input_schema.get("properties") or {}
    required = set(tool.input_schema.get("required") or [])
    if not properties:
        lines.append("No arguments.")
    else:
        lines += ["| argument | type | required | allowed |", "| --- | --- | --- | --- |"]
        for name, prop in properties.items():
            yes = "yes" if name in required else "no"
            lines.append(f"| `{name}` | {_type_name(prop)} | {yes} | {_constraints(prop)} |")
    if not tool.read_only:
        lines += ["", "This tool changes state: do not repeat it blindly after a transport failure."]
    return "\n".join(lines) + "\n"


def overview(tools: list[McpTool]) -> str:
    lines = [
        "# cynode MCP gateway",
        "",
        "Tools act for the user your token is bound to. Call `help.get` with a tool's name for its arguments.",
        "",
        "## Tools you may call",
        "",
        *(f"- `{tool.name}`: {_summary(tool.description)}" for tool in tools),
        "",
        "## Topics",
        "",
        *(f"- `{topic}`: {summary}" for topic, (summary, _) in TOPICS.items()),
    ]
    return "\n".join(lines) + "\n"


def bounded(content: str) -> tuple[str, bool]:
    """``content`` cut to :data:`MAX_CONTENT_BYTES` of UTF-8 on a character boundary, and whether it was cut."""
    raw = content.encode()
    if len(raw) <= MAX_CONTENT_BYTES:
        return content, False
    return raw[:MAX_CONTENT_BYTES].decode(errors="ignore"), True


def help_list(call: ToolCall, arguments: dict[str, Any]) -> dict[str, Any]:
    topics = [{"topic": tool.name, "summary": _summary(tool.description)} for tool in _callable_tools(call)]
    topics += [{"topic": topic, "summary": summary} for topic, (summary, _) in TOPICS.items()]
    return {"topics": topics, "hint": HINT}


def help_get(call: ToolCall, arguments: dict[str, Any]) -> dict[str, Any]:
    tools = _callable_tools(call)
    topic = (arguments.get("topic") or "").strip()
    if topic:
        named = next((tool for tool in tools if tool.name == topic), None)
        if named is not None:
            content = tool_help(named)
        elif topic.lower() in TOPICS:
            content = TOPICS[topic.lower()][1]
        else:
            raise ToolFailed(404, "not_found", "no such help topic; help.list names them")
    else:
        content = overview(tools) + (_PATH_NOTE if (arguments.get("path") or "").strip() else "")
    text, truncated = bounded(content)
    return {"content": text, "truncated": truncated}


TOOLS = (
    McpTool(
        "help.list",
        "The help topics: one per tool you may call, then tools, gateway and projects.",
        schema.arguments(),
        help_list,
        scope="both",
    ),
    McpTool(
        "help.get",
        "Help text in Markdown: a tool's description and arguments, or a topic; without topic, the overview.\n"
        "topic: a tool name or tools, gateway, projects. path: accepted for upstream's clients; serves the "
        "overview.",
        schema.arguments({"topic": schema.text(100), "path": schema.text(200)}),
        help_get,
        scope="both",
    ),
)
