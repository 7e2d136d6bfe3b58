"""``cynode node ...``: the node agent's commands.

The lead attaches :data:`node` to the main ``cynode`` group; it also runs
on its own (``python -m node_agent.cli serve``).
"""

from __future__ import annotations

import logging
import sys
from pathlib import Path

import click

from cynode_core.logs import configure_logging
from cynode_core.settings import ConfigError, load_settings
from node_agent.manager import run_node
from node_agent.settings import NodeSettings


def _configure_logging(level: str, fmt: str = "text") -> None:
    numeric = logging.getLevelName(level.upper())
    if not isinstance(numeric, int):
        raise ConfigError(f"unknown log level {level!r} (use DEBUG, INFO, WARNING or ERROR)")
    configure_logging(numeric, fmt)
    # urllib3 logs request URLs at DEBUG; they hold no secrets, but keep the noise down.
    logging.getLogger("urllib3").setLevel(max(numeric, logging.INFO))


@click.group("node")
def node() -> None:
    """Run a worker node: sandboxes for the orchestrator's jobs."""


@node.command("serve")
@click.option(
    "--config",
    "config_file",
    type=click.Path(dir_okay=False, path_type=Path),
    help="node YAML file (default: $CYNODE_CONFIG)",
)
@click.option("--log-level", default=None, help="override CYNODE_LOG_LEVEL")
def serve(config_file: Path | None, log_level: str | None) -> None:
    """Register with the orchestrator and serve the Worker API until SIGTERM/SIGINT."""
    try:
        overrides = {"log_level": log_level} if log_level else None
        settings = load_settings(NodeSettings, config_file=config_file, overrides=overrides)
        _configure_logging(settings.log_level, settings.log_format)
        code = run_node(settings)
    except ConfigError as exc:
        click.echo(f"cynode node: configuration error: {exc}", err=True)
        sys.exit(2)
    sys.exit(code)


if __name__ == "__main__":  # pragma: no cover
    node()
