"""Which tools an agent role may call (mcp_contract.md 5), and the disabled list.

:func:`role_allows` is upstream's ``roleAllowsTool`` (``allowlist.go``),
rule for rule: prefix lists for ``pm`` and ``pa``, eight exact names for
``sandbox``, nothing for any other role. Ours only narrows it
(:func:`may_call`): ``task.create`` and ``task.ready`` are for ``pm`` alone,
and a shipped tool's ``scope`` must admit the caller (``pm`` and ``pa``
callers need ``pm`` or ``both``, a sandbox caller ``sandbox`` or ``both``).
``CYNODE_MCP_DISABLED_TOOLS`` takes a tool away from every role.
"""

from __future__ import annotations

from collections.abc import Collection

from cynode_core.orchestrator.mcp.registry import McpTool

PM_PREFIXES = (
    "task.",
    "project.",
    "preference.",
    "job.",
    "system_setting.",
    "specification.",
    "node.",
    "sandbox.",
    "artifact.",
    "artifacts.",
    "model.",
    "connector.",
    "web.",
    "api.",
    "git.",
    "help.",
    "persona.",
    "skills.",
)
SANDBOX_TOOLS = frozenset(
    {
        "help.list",
        "help.get",
        "preference.get",
        "preference.list",
        "preference.effective",
        "artifact.get",
        "skills.list",
        "skills.get",
    }
)
PA_PREFIXES = ("task.", "project.", "preference.", "job.", "artifact.", "artifacts.", "help.", "persona.", "skills.")
PA_BLOCKED_PREFIXES = ("node.", "sandbox.", "system_setting.", "connector.", "model.")
PA_BLOCKED_TOOLS = frozenset({"task.cancel"})

# Ours, for the PM agent alone (the pa prefix rule would admit them).
PM_ONLY_TOOLS = frozenset({"task.create", "task.ready"})
# Which tool scopes admit a caller of each role.
_SCOPES_OF_ROLE = {"pm": ("pm", "both"), "pa": ("pm", "both"), "sandbox": ("sandbox", "both")}


def role_allows(role: str, name: str) -> bool:
    """Upstream's rule for ``role`` and tool ``name`` (names are matched as sent: case and spaces count)."""
    if role == "pm":
        return name.startswith(PM_PREFIXES)
    if role == "sandbox":
        return name in SANDBOX_TOOLS
    if role == "pa":
        if name.startswith(PA_BLOCKED_PREFIXES) or name in PA_BLOCKED_TOOLS:
            return False
        return name.startswith(PA_PREFIXES)
    return False


def may_call(role: str, name: str, tool: McpTool | None = None) -> bool:
    """Whether ``role`` passes the allowlist step for ``name`` (``tool``: the shipped tool of that name, if any)."""
    if not role_allows(role, name):
        return False
    if name in PM_ONLY_TOOLS and role != "pm":
        return False
    return tool is None or tool.scope in _SCOPES_OF_ROLE.get(role, ())


def is_disabled(name: str, disabled: Collection[str]) -> bool:
    """Whether ``name`` is on the disabled list (exact names)."""
    return name in disabled
