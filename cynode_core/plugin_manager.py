"""Building the plugin manager: built-ins first, then entry points."""

from __future__ import annotations

import logging
from collections.abc import Iterable
from types import ModuleType

import pluggy

from cynode_core import PROJECT_NAME
from cynode_core.contract import hookspecs

log = logging.getLogger(__name__)

ENTRY_POINT_GROUP = PROJECT_NAME


def get_plugin_manager(
    builtins: Iterable[tuple[object, str]] = (),
    *,
    disabled: Iterable[str] = (),
    load_entry_points: bool = True,
    extra_specs: Iterable[ModuleType] = (),
) -> pluggy.PluginManager:
    """Return a fresh plugin manager with cynode's hooks.

    ``builtins`` are ``(plugin, name)`` pairs registered before the entry
    points, so a third party can block one by name and replace it.
    ``disabled`` names plugins that must not load (``CYNODE_DISABLE_PLUGINS``).
    ``extra_specs`` are hook specification modules of one process (the
    orchestrator's ``cynode_claim_job``) added to the contract's.
    The manager ends with ``check_pending()``: a hook implementation whose
    name matches no spec fails here, at start-up, not at first call.
    """
    pm = pluggy.PluginManager(PROJECT_NAME)
    pm.add_hookspecs(hookspecs)
    for specs in extra_specs:
        pm.add_hookspecs(specs)
    for name in disabled:
        if name:
            pm.set_blocked(name)
    for plugin, name in builtins:
        if not pm.is_blocked(name):
            pm.register(plugin, name=name)
    if load_entry_points:
        count = pm.load_setuptools_entrypoints(ENTRY_POINT_GROUP)
        log.debug("loaded %d plugin(s) from entry points", count)
    pm.check_pending()
    return pm


def plugin_names(pm: pluggy.PluginManager) -> list[str]:
    """Names of the registered plugins, for logs and ``cynode plugins``."""
    return sorted(name for name, plugin in pm.list_name_plugin() if plugin is not None)


def describe_plugins(pm: pluggy.PluginManager) -> list[str]:
    """One line per registered plugin, for the start-up log: its name and where it comes from.

    A plugin loaded from an entry point shows its distribution's name and
    version (``podman: cynode-podman 0.1.0``); one registered in code shows
    ``built in``.
    """
    dists = {id(plugin): dist for plugin, dist in pm.list_plugin_distinfo()}
    lines = []
    for name, plugin in sorted(pm.list_name_plugin(), key=lambda pair: pair[0]):
        if plugin is None:  # blocked
            continue
        dist = dists.get(id(plugin))
        lines.append(f"{name}: {dist.project_name} {dist.version}" if dist is not None else f"{name}: built in")
    return lines
