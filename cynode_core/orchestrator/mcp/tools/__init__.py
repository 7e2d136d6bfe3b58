"""The built-in MCP tool catalog (mcp_contract.md 7), registered through ``cynode_register_mcp_tools``."""

from __future__ import annotations

from cynode_core import hookimpl
from cynode_core.orchestrator.mcp.registry import McpTool, RegisterTool

PLUGIN_NAME = "mcp-builtin-tools"


def builtin_tools() -> list[McpTool]:
    """Every tool cynode ships, in catalog order."""
    return []


class BuiltinTools:
    """The plugin that offers :func:`builtin_tools`."""

    @hookimpl(tryfirst=True)
    def cynode_register_mcp_tools(self, register: RegisterTool) -> None:
        for tool in builtin_tools():
            register(tool)
