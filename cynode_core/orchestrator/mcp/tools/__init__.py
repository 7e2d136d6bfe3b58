"""The built-in MCP tool catalog (mcp_contract.md 7), registered through ``cynode_register_mcp_tools``.

``help`` holds the help tools, ``task_tools`` the task tools,
``catalog_tools`` those over jobs, projects and nodes, ``artifact_tools`` the
artifact tools; ``schema``,
``results`` and ``scoping`` are what they share (input schemas, result
rendering and paging, who may reach what).
"""

from __future__ import annotations

from cynode_core import hookimpl
from cynode_core.orchestrator.mcp.registry import McpTool, RegisterTool
from cynode_core.orchestrator.mcp.tools import artifact_tools, catalog_tools, help, task_tools

PLUGIN_NAME = "mcp-builtin-tools"


def builtin_tools() -> list[McpTool]:
    """Every tool cynode ships, in catalog order."""
    return [*help.TOOLS, *task_tools.TOOLS, *catalog_tools.TOOLS, *artifact_tools.TOOLS]


class BuiltinTools:
    """The plugin that offers :func:`builtin_tools`."""

    @hookimpl(tryfirst=True)
    def cynode_register_mcp_tools(self, register: RegisterTool) -> None:
        for tool in builtin_tools():
            register(tool)
