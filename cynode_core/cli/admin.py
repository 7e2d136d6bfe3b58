"""``cynode admin ...``: users and nodes, straight on the database."""

from __future__ import annotations

import json
import sys
from typing import Any

import click

from cynode_core.cli.common import orchestrator_settings, print_table, setup_logging


@click.group()
def admin() -> None:
    """Administration straight on the database (users, nodes)."""


def _with_session(fn):  # type: ignore[no-untyped-def]
    from cynode_core.contract.errors import CynodeError
    from cynode_core.orchestrator.process import open_resources

    setup_logging("WARNING")
    resources = open_resources(orchestrator_settings())
    try:
        with resources.db.session() as session:
            return fn(session, resources)
    except CynodeError as exc:
        raise click.ClickException(exc.detail) from exc
    finally:
        resources.close()


@admin.group("user")
def admin_user() -> None:
    """Local user accounts."""


@admin_user.command("add")
@click.argument("handle")
@click.option("--email", default=None)
@click.option("--password", default=None, help="the password (default: asked, or read from stdin when not a tty)")
def admin_user_add(handle: str, email: str | None, password: str | None) -> None:
    """Create a local user."""
    from cynode_core.orchestrator.services import accounts

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
    from cynode_core.orchestrator.services import accounts

    _with_session(lambda s, _r: accounts.set_active(s, handle, False))
    click.echo(f"user {handle} disabled")


@admin_user.command("enable")
@click.argument("handle")
def admin_user_enable(handle: str) -> None:
    """Enable a disabled user."""
    from cynode_core.orchestrator.services import accounts

    _with_session(lambda s, _r: accounts.set_active(s, handle, True))
    click.echo(f"user {handle} enabled")


@admin_user.command("unlock")
@click.argument("handle")
def admin_user_unlock(handle: str) -> None:
    """Let every address try a user's password again at once (ends the slow-down after failed logins)."""
    from cynode_core.orchestrator.services import accounts

    _with_session(lambda s, _r: accounts.unlock(s, handle))
    click.echo(f"user {handle} unlocked")


@admin_user.command("list")
@click.option("--json", "as_json", is_flag=True)
def admin_user_list(as_json: bool) -> None:
    """List users."""
    from cynode_core.orchestrator.services import accounts

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
    from cynode_core.orchestrator.services import nodes

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
    """Override a node's Worker API URL (no URL: back to what the node reports).

    The URL passes the checks a node's own URL passes (CYNODE_NODE_URL_NETWORKS).
    """
    from cynode_core.orchestrator.services import nodes

    _with_session(lambda s, r: nodes.set_url_override(s, r.settings, slug, url))
    click.echo(f"node {slug}: worker API URL {'set to ' + url if url else 'reset to the reported one'}")


@admin.group("agent-token")
def admin_agent_token() -> None:
    """Agent tokens for the MCP gateway (mcp_contract.md 3.2)."""


@admin_agent_token.command("create")
@click.option("--role", type=click.Choice(["pm", "pa", "sandbox"]), required=True)
@click.option("--user", "handle", required=True, help="the user the agent acts for")
@click.option("--task", "task_id", type=click.UUID, default=None, help="bind the token to this task of the user")
@click.option("--ttl", "ttl_seconds", type=int, default=3600, show_default=True, help="lifetime in seconds")
def admin_agent_token_create(role: str, handle: str, task_id: Any, ttl_seconds: int) -> None:
    """Mint an agent token and print it (it is shown only here)."""
    from cynode_core.orchestrator.services import accounts, agent_tokens

    def issue(session: Any, _resources: Any) -> tuple[str, str, str]:
        user = accounts.get_by_handle(session, handle)
        request = agent_tokens.TokenRequest(role, user.id, agent_tokens.Binding(task_id=task_id), ttl_seconds)
        minted = agent_tokens.issue(session, request, "admin:cli")
        return minted.token, str(minted.row.id), minted.row.expires_at.isoformat()

    token, token_id, expires_at = _with_session(issue)
    click.echo(f"token_id: {token_id}\nexpires_at: {expires_at}\ntoken: {token}")


@admin_agent_token.command("revoke")
@click.argument("token_id", type=click.UUID)
def admin_agent_token_revoke(token_id: Any) -> None:
    """Revoke an agent token at once."""
    from cynode_core.orchestrator.services import agent_tokens

    _with_session(lambda s, _r: agent_tokens.revoke_issued(s, token_id, "admin:cli"))
    click.echo(f"agent token {token_id} revoked")
