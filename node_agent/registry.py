"""Sandbox runtimes and inference backends offered by plugins, looked up by name."""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from typing import TypeVar

import pluggy

from cynode_core.contract import BackendFactory, RuntimeFactory
from cynode_core.settings import ConfigError

log = logging.getLogger(__name__)

F = TypeVar("F")


def _collect(call: Callable[[Callable[[str, F], None]], object], kind: str) -> dict[str, F]:
    found: dict[str, F] = {}

    def register(name: str, factory: F) -> None:
        # pluggy calls the most recently registered plugin first, so a
        # third-party plugin (loaded from entry points after the built-ins)
        # wins a name clash; the clash is logged, never silent.
        if name in found:
            log.warning("%s %r offered twice; keeping the first offer", kind, name)
            return
        found[name] = factory

    call(register)
    return found


def sandbox_runtime_factories(pm: pluggy.PluginManager) -> dict[str, RuntimeFactory]:
    """Every sandbox runtime the plugins offer, by name."""
    return _collect(lambda register: pm.hook.cynode_register_sandbox_runtimes(register=register), "sandbox runtime")


def inference_backend_factories(pm: pluggy.PluginManager) -> dict[str, BackendFactory]:
    """Every inference backend the plugins offer, by name."""
    return _collect(lambda register: pm.hook.cynode_register_inference_backends(register=register), "inference backend")


def pick(factories: Mapping[str, F], name: str, *, kind: str, setting: str) -> F:
    """The factory registered as ``name``; a ``ConfigError`` listing the known names otherwise."""
    try:
        return factories[name]
    except KeyError:
        known = ", ".join(sorted(factories)) or "none installed"
        raise ConfigError(f"unknown {kind} {name!r} ({setting}); registered: {known}") from None
