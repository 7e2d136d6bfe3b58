"""``cynode orchestrator ...``, ``cynode db ...`` and ``cynode config``."""

from __future__ import annotations

import logging

import click

from cynode_core.cli.common import orchestrator_settings, setup_logging

# Headings of ``cynode config --markdown`` per settings entry point (README tables).
SETTINGS_TITLES = {
    "orchestrator": "Orchestrator (`cynode orchestrator serve`, `cynode up`)",
    "node": "Node agent (`cynode node serve`)",
}


@click.group()
def orchestrator() -> None:
    """Run the orchestrator (User API Gateway + control plane + dispatcher)."""


@orchestrator.command("serve")
@click.option("--migrate-only", is_flag=True, help="apply pending migrations and exit")
def orchestrator_serve(migrate_only: bool) -> None:
    """Serve until SIGINT/SIGTERM; applies pending migrations first (under a lock)."""
    from cynode_core.orchestrator.process import open_resources, serve

    settings = orchestrator_settings()
    setup_logging(settings.log_level, settings.log_format)
    resources = open_resources(settings, bootstrap=not migrate_only)
    try:
        for message in resources.messages:
            if settings.log_format == "json":  # keep stderr one JSON object per line
                logging.getLogger("cynode_core.cli").warning("%s", message)
            else:
                click.echo(message, err=True)
        if not migrate_only:
            serve(resources)
    finally:
        resources.close()


@orchestrator.command("dispatch")
def orchestrator_dispatch() -> None:
    """Run only dispatcher threads (no HTTP), e.g. to add dispatch capacity next to serving processes."""
    from cynode_core.orchestrator.process import dispatch_only, open_resources

    settings = orchestrator_settings()
    setup_logging(settings.log_level, settings.log_format)
    resources = open_resources(settings)
    try:
        dispatch_only(resources)
    finally:
        resources.close()


@click.command("config")
@click.option("--markdown", is_flag=True, help="the README's tables")
def config_reference(markdown: bool) -> None:
    """Print every setting: environment variable, upstream alias, default, meaning."""
    from cynode_core.settings import describe, markdown_reference, settings_classes

    order = list(SETTINGS_TITLES)
    found = sorted(settings_classes(), key=lambda item: order.index(item[0]) if item[0] in order else len(order))
    classes = [(SETTINGS_TITLES.get(name, name), cls) for name, cls in found]
    if markdown:
        click.echo(markdown_reference(classes))
        return
    for title, cls in classes:
        click.echo(title)
        for env, aliases, default, text in describe(cls):
            click.echo(f"  {env}{f' ({aliases})' if aliases else ''} = {default!r}: {text}")


# -- database ---------------------------------------------------------------


@click.group()
def db() -> None:
    """Database schema commands."""


@db.command("upgrade")
def db_upgrade() -> None:
    """Apply pending migrations."""
    from cynode_core.orchestrator.process import open_resources

    settings = orchestrator_settings()
    setup_logging("WARNING")
    resources = open_resources(settings, bootstrap=False)
    resources.close()
    click.echo(resources.messages[0] if resources.messages else "database schema already at the newest version")


@db.command("current")
def db_current() -> None:
    """Print the schema revision of the database and the newest one."""
    from cynode_core.orchestrator import migrate
    from cynode_core.orchestrator.process import open_resources

    resources = open_resources(orchestrator_settings(), migrate_schema=False, bootstrap=False)
    try:
        click.echo(f"current: {migrate.current_revision(resources.db.engine) or '(empty)'}")
        click.echo(f"head:    {migrate.head_revision()}")
    finally:
        resources.close()


@db.command("revision")
@click.argument("message")
def db_revision(message: str) -> None:
    """(Developers) write a new migration from the models' difference to the database."""
    from alembic import command

    from cynode_core.orchestrator import migrate
    from cynode_core.orchestrator.process import open_resources

    resources = open_resources(orchestrator_settings(), bootstrap=False)
    try:
        cfg = migrate.alembic_config(resources.db.url)
        cfg.set_main_option("file_template", "%%(year)d%%(month).2d%%(day).2d_%%(rev)s_%%(slug)s")
        head = migrate.head_revision()
        command.revision(cfg, message=message, autogenerate=True, rev_id=f"{int(head or 0) + 1:04d}")
    finally:
        resources.close()
