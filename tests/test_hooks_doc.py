"""docs/hooks.md documents every hook cynode declares, and only those.

The hooks are those of the contract (cynode_core/contract/hookspecs.py) and
the orchestrator's own: the claim hook (cynode_core/orchestrator/dispatch/placement.py)
and the MCP tools hook (cynode_core/orchestrator/mcp/registry.py).
"""

from __future__ import annotations

import inspect
import re
from pathlib import Path
from types import ModuleType

import pluggy

from cynode_core import PROJECT_NAME
from cynode_core.contract import hookspecs
from cynode_core.orchestrator.dispatch import placement
from cynode_core.orchestrator.mcp import registry

DOC = Path(__file__).resolve().parent.parent / "docs" / "hooks.md"
SECTION = re.compile(r"^### `(?P<name>\w+)\((?P<params>[^)]*)\)", re.MULTILINE)


SPEC_MODULES = (hookspecs, placement, registry)


def hooks_of(module: ModuleType) -> dict[str, inspect.Signature]:
    """Every function in ``module`` that pluggy sees as a hookspec, with its signature."""
    pm = pluggy.PluginManager(PROJECT_NAME)
    pm.add_hookspecs(module)
    names = {name for name in dir(pm.hook) if name.startswith("cynode_")}
    marked = {
        name for name, fn in inspect.getmembers(module, inspect.isfunction) if hasattr(fn, f"{PROJECT_NAME}_spec")
    }
    assert names == marked
    return {name: inspect.signature(getattr(module, name)) for name in names}


def spec_module(name: str) -> ModuleType:
    """The module that declares hook ``name``."""
    return next(module for module in SPEC_MODULES if name in hooks_of(module))


def declared_hooks() -> dict[str, inspect.Signature]:
    """The hooks of every spec module; no name is declared twice."""
    found: dict[str, inspect.Signature] = {}
    for module in SPEC_MODULES:
        hooks = hooks_of(module)
        assert not set(hooks) & set(found), f"{module.__name__} declares a hook again"
        found.update(hooks)
    return found


def documented_hooks() -> dict[str, list[str]]:
    """``{hook: [parameter names]}`` of the ``### `hook(...)` `` sections of the doc."""
    found = {}
    for match in SECTION.finditer(DOC.read_text()):
        params = [p.split(":")[0].strip() for p in match["params"].split(",") if p.strip()]
        found[match["name"]] = params
    return found


def test_the_hooks_are_found() -> None:
    assert {"cynode_authenticate", "cynode_select_node", "cynode_task_finished"} <= set(declared_hooks())
    assert {"cynode_claim_job", "cynode_register_mcp_tools"} <= set(declared_hooks())


def test_every_orchestrator_hook_is_documented() -> None:
    documented = documented_hooks()
    for module in (placement, registry):
        for name, sig in hooks_of(module).items():
            assert name in documented, f"docs/hooks.md has no section for {name} of {module.__name__}"
            assert documented[name] == list(sig.parameters), f"docs/hooks.md shows other parameters for {name}"


def test_every_hook_has_a_section_with_its_parameters() -> None:
    documented = documented_hooks()
    for name, sig in declared_hooks().items():
        assert name in documented, f"docs/hooks.md has no section for {name}"
        assert documented[name] == list(sig.parameters), f"docs/hooks.md shows other parameters for {name}"


def test_no_section_documents_a_hook_that_does_not_exist() -> None:
    assert set(documented_hooks()) - set(declared_hooks()) == set()


def test_each_section_states_kind_caller_and_default() -> None:
    text = DOC.read_text()
    sections = re.split(r"^### ", text, flags=re.MULTILINE)[1:]
    opts = {name: getattr(getattr(spec_module(name), name), f"{PROJECT_NAME}_spec") for name in declared_hooks()}
    for section in sections:
        name = section.split("(", 1)[0].strip("`")
        body = section.split("\n## ", 1)[0]
        for row in ("| kind |", "| called by |", "| default plugin |"):
            assert row in body, f"{name}: no '{row}' row"
        kind = re.search(r"^\| kind \| (\w+)", body, re.MULTILINE)
        assert kind is not None
        if opts[name].get("firstresult"):
            expected = "firstresult"
        else:
            expected = "registration" if "register" in name else "event"
        assert kind.group(1) == expected, name


def test_every_hook_has_a_docstring_naming_its_caller() -> None:
    for name in declared_hooks():
        doc = inspect.getdoc(getattr(spec_module(name), name)) or ""
        assert "Called by:" in doc, name
