"""The gateway's tool catalog: every tool the plugins registered, checked once.

:func:`catalog_of` asks the plugin manager's ``cynode_register_mcp_tools``
once per plugin manager (the first time the gateway is used) and keeps the
answer. A name registered twice keeps its first registration (the built-in
catalog registers first). A tool whose name is not a valid MCP tool name
(SEP-986: 1 to 128 of ``[A-Za-z0-9._-]``), whose scope is unknown or whose
input schema leaves the subset of agents_contract.md 3.2 (``schemas``) is
refused with an error in the log: one plugin's mistake costs that tool, not
the orchestrator.
"""

from __future__ import annotations

import logging
import threading
import weakref
from collections.abc import Collection, Iterator
from typing import Any

import pluggy
from jsonschema.protocols import Validator
from mcp.shared.tool_name_validation import TOOL_NAME_REGEX

from cynode_core.orchestrator.mcp import schemas
from cynode_core.orchestrator.mcp.allowlist import is_disabled, may_call
from cynode_core.orchestrator.mcp.registry import McpTool

log = logging.getLogger(__name__)

SCOPES = ("pm", "sandbox", "both")


class Catalog:
    """The registered tools in registration order, each with its compiled argument validator."""

    def __init__(self) -> None:
        self._tools: dict[str, McpTool] = {}
        self._validators: dict[str, Validator] = {}

    def register(self, tool: Any) -> None:
        """Add ``tool`` (the ``register`` callable the hook gets); a bad or repeated one is logged and left out."""
        if not isinstance(tool, McpTool):
            log.error("MCP tool refused: %r is not an McpTool", type(tool).__name__)
            return
        problems = _problems(tool)
        if problems:
            log.error("MCP tool %r refused: %s", tool.name[:200], "; ".join(problems))
            return
        if tool.name in self._tools:
            log.warning("MCP tool %r registered again: the first registration is kept", tool.name)
            return
        self._tools[tool.name] = tool
        self._validators[tool.name] = schemas.validator(tool.input_schema)

    def get(self, name: str) -> McpTool | None:
        return self._tools.get(name)

    def validator(self, name: str) -> Validator:
        """The argument validator of the registered tool ``name``."""
        return self._validators[name]

    def callable_by(self, role: str, disabled: Collection[str]) -> list[McpTool]:
        """The enabled tools ``role`` may call (its allowlist and each tool's scope), in catalog order."""
        return [t for t in self if may_call(role, t.name, t) and not is_disabled(t.name, disabled)]

    def __iter__(self) -> Iterator[McpTool]:
        return iter(list(self._tools.values()))

    def __len__(self) -> int:
        return len(self._tools)


def _problems(tool: McpTool) -> list[str]:
    if not isinstance(tool.name, str) or not TOOL_NAME_REGEX.fullmatch(tool.name):
        return ["the name must be 1 to 128 of A-Z a-z 0-9 . _ -"]
    if tool.scope not in SCOPES:
        return [f"scope must be one of {', '.join(SCOPES)}"]
    if not isinstance(tool.description, str) or not tool.description.strip():
        return ["the description must be a non-empty string"]
    if not callable(tool.handler):
        return ["the handler must be callable"]
    return schemas.subset_problems(tool.input_schema)


def build_catalog(pm: pluggy.PluginManager) -> Catalog:
    """Ask every plugin for its tools."""
    catalog = Catalog()
    pm.hook.cynode_register_mcp_tools(register=catalog.register)
    log.debug("MCP catalog: %d tool(s)", len(catalog))
    return catalog


_CATALOGS: weakref.WeakKeyDictionary[pluggy.PluginManager, Catalog] = weakref.WeakKeyDictionary()
_LOCK = threading.Lock()


def catalog_of(pm: pluggy.PluginManager) -> Catalog:
    """The catalog of ``pm``'s plugins, built on first use and kept for the plugin manager's life."""
    with _LOCK:
        found = _CATALOGS.get(pm)
        if found is None:
            found = _CATALOGS[pm] = build_catalog(pm)
    return found
