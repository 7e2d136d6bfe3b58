"""``cynode token``: personal API keys of the logged-in user (docs/wire_contract.md#api-keys).

A key is for a client that sends one static ``Authorization: Bearer`` and
never logs in (an OpenAI client, a script). Making, listing and revoking
keys takes the login of ``cynode login``; a key cannot manage keys.
"""

from __future__ import annotations

import datetime as dt
import re
from typing import Any

import click

from cynode_core.cli.common import print_table
from cynode_core.cli.gateway import _client, _emit, _run, json_option, url_option

DAYS = re.compile(r"([0-9]+)d")


def _days(expires: str | None) -> int | None:
    if expires is None:
        return None
    match = DAYS.fullmatch(expires.strip())
    if match is None:
        raise click.BadParameter("a number of days, e.g. 30d", param_hint="--expires")
    return int(match.group(1))


def _state(key: dict[str, Any], now: str) -> str:
    """live, revoked or expired (timestamps are RFC 3339 UTC strings, so they compare as text)."""
    if "revoked_at" in key:
        return "revoked"
    if "expires_at" in key and key["expires_at"] <= now:
        return "expired"
    return "live"


@click.group()
def token() -> None:
    """Personal API keys, for clients that send a static bearer token."""


@token.command("create")
@url_option
@json_option
@click.option("--name", required=True, help="what the key is for (1 to 100 characters)")
@click.option("--expires", default=None, metavar="Nd", help="lifetime in days, e.g. 30d (default: never expires)")
def token_create(url: str | None, as_json: bool, name: str, expires: str | None) -> None:
    """Make a key and print it (it is shown this once)."""
    days = _days(expires)
    created = _run(lambda: _client(url).create_api_key(name, days))
    _emit(created, as_json, created["key"])
    if not as_json:
        until = f"expires {created['expires_at']}" if "expires_at" in created else "never expires"
        click.echo(
            f"API key {created['id']} ({created['name']}, {until}). "
            "Store it now: it will not be shown again. Use it as `Authorization: Bearer <key>`.",
            err=True,
        )


@token.command("list")
@url_option
@json_option
def token_list(url: str | None, as_json: bool) -> None:
    """List my keys, newest first (their prefixes, never the keys)."""
    keys = _run(lambda: _client(url).list_api_keys())
    if as_json:
        _emit(keys, True, "")
        return
    now = dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    print_table(
        ("ID", "NAME", "PREFIX", "STATE", "CREATED", "EXPIRES", "LAST USED"),
        [
            (
                k["id"],
                k["name"],
                k["prefix"],
                _state(k, now),
                k["created_at"],
                k.get("expires_at", "never"),
                k.get("last_used_at", "-"),
            )
            for k in keys
        ],
    )


@token.command("revoke")
@url_option
@click.argument("key_id")
def token_revoke(url: str | None, key_id: str) -> None:
    """Revoke a key at once."""
    _run(lambda: _client(url).revoke_api_key(key_id))
    click.echo(f"API key {key_id} revoked")


COMMANDS = (token,)
