"""The ``cynode`` command: one group; each command family lives in its own module.

Command groups of other parts of the installation (the node agent's
``cynode node``) are found through the ``cynode.cli`` entry-point group, so
the CLI never imports the node agent.
"""

from __future__ import annotations

import os
from importlib.metadata import entry_points
from pathlib import Path

import click

from cynode_core import __version__
from cynode_core.cli import (
    admin,
    artifacts,
    chat,
    completion,
    gateway,
    orchestrator,
    status,
    task_create,
    tokens,
    up,
)

CLI_ENTRY_POINTS = "cynode.cli"
# Imported for the commands they add to ``cynode task`` (create, artifacts).
TASK_COMMAND_MODULES = (task_create, artifacts)
CONTAINERS_CONF = Path("/etc/cynode/containers.conf")


@click.group()
@click.version_option(__version__, prog_name="cynode")
def main() -> None:
    """cynode: a local-first orchestrator for self-hosted teams."""
    # Point Podman at cynode's containers.conf when bootstrap installed one.
    if "CONTAINERS_CONF" not in os.environ and CONTAINERS_CONF.exists():
        os.environ["CONTAINERS_CONF"] = str(CONTAINERS_CONF)


for command in (
    orchestrator.orchestrator,
    orchestrator.db,
    orchestrator.config_reference,
    admin.admin,
    *gateway.COMMANDS,
    *artifacts.COMMANDS,
    *status.COMMANDS,
    *completion.COMMANDS,
    *tokens.COMMANDS,
    *chat.COMMANDS,
    up.up,
    up.demo,
):
    main.add_command(command)

for entry in entry_points(group=CLI_ENTRY_POINTS):
    try:
        main.add_command(entry.load(), entry.name)
    except ImportError:  # that part is not installed (an extra left out)
        continue
