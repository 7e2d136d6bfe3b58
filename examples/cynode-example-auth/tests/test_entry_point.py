"""After ``pip install``, cynode finds the plugin through the ``cynode`` entry-point group."""

from __future__ import annotations

from importlib.metadata import distribution, entry_points

import cynode_example_auth.plugin

from cynode_core.plugin_manager import ENTRY_POINT_GROUP, get_plugin_manager, plugin_names


def test_the_distribution_declares_the_entry_point() -> None:
    declared = [ep for ep in distribution("cynode-example-auth").entry_points if ep.group == ENTRY_POINT_GROUP]
    assert [(ep.name, ep.value) for ep in declared] == [("example-auth", "cynode_example_auth.plugin")]


def test_the_plugin_manager_loads_it_by_its_entry_point_name() -> None:
    (ep,) = entry_points(group=ENTRY_POINT_GROUP, name="example-auth")
    assert ep.load() is cynode_example_auth.plugin
    pm = get_plugin_manager()
    assert "example-auth" in plugin_names(pm)
    assert pm.get_plugin("example-auth") is cynode_example_auth.plugin
    assert any(impl.plugin_name == "example-auth" for impl in pm.hook.cynode_authenticate.get_hookimpls())
