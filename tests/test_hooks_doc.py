"""docs/hooks.md documents every hook of cynode_core/contract/hookspecs.py, and only those."""

from __future__ import annotations

import inspect
import re
from pathlib import Path

import pluggy

from cynode_core import PROJECT_NAME
from cynode_core.contract import hookspecs

DOC = Path(__file__).resolve().parent.parent / "docs" / "hooks.md"
SECTION = re.compile(r"^### `(?P<name>\w+)\((?P<params>[^)]*)\)", re.MULTILINE)


def declared_hooks() -> dict[str, inspect.Signature]:
    """Every function in hookspecs.py that pluggy sees as a hookspec, with its signature."""
    pm = pluggy.PluginManager(PROJECT_NAME)
    pm.add_hookspecs(hookspecs)
    names = {name for name in dir(pm.hook) if name.startswith("cynode_")}
    marked = {
        name for name, fn in inspect.getmembers(hookspecs, inspect.isfunction) if hasattr(fn, f"{PROJECT_NAME}_spec")
    }
    assert names == marked
    return {name: inspect.signature(getattr(hookspecs, name)) for name in names}


def documented_hooks() -> dict[str, list[str]]:
    """``{hook: [parameter names]}`` of the ``### `hook(...)` `` sections of the doc."""
    found = {}
    for match in SECTION.finditer(DOC.read_text()):
        params = [p.split(":")[0].strip() for p in match["params"].split(",") if p.strip()]
        found[match["name"]] = params
    return found


def test_the_hooks_are_found() -> None:
    assert {"cynode_authenticate", "cynode_select_node", "cynode_task_finished"} <= set(declared_hooks())


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
    opts = {name: getattr(getattr(hookspecs, name), f"{PROJECT_NAME}_spec") for name in declared_hooks()}
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
        doc = inspect.getdoc(getattr(hookspecs, name)) or ""
        assert "Called by:" in doc, name
