"""``cynode status``: the cluster at a glance, as the logged-in user sees it.

One line each: the gateway and whether it is ready (its ``/readyz``
checks: database, migrations, the nodes that can take work), who is logged
in, and the user's own queue (tasks queued and running, drafts waiting for
approval). Exit code 0 when the gateway is ready, 1 when not, 2 when it
cannot be reached.
"""

from __future__ import annotations

import sys
from typing import Any

import click
import requests

from cynode_core.cli.gateway import _client, _emit, json_option, url_option
from cynode_core.client import ApiError, GatewayClient

COUNTED = ("queued", "running")
PAGE = 200


def _count(client: GatewayClient, **params: Any) -> str:
    """How many of the user's tasks match (``200+`` past one page)."""
    data = client.call("GET", "/v1/tasks", params={**params, "limit": PAGE})
    tasks = data["tasks"]
    return f"{len(tasks)}+" if "next_offset" in data else str(len(tasks))


def _readiness(client: GatewayClient) -> tuple[bool, dict[str, str]]:
    resp = client.http.get(f"{client.url}/readyz", timeout=client.timeout)
    checks = {}
    for line in resp.text.splitlines()[1:]:
        name, _, rest = line.partition(": ")
        checks[name] = rest
    return resp.status_code == 200, checks


@click.command()
@url_option
@json_option
def status(url: str | None, as_json: bool) -> None:
    """The gateway, its readiness and nodes, and your queue at a glance."""
    client = _client(url)
    try:
        ready, checks = _readiness(client)
    except requests.RequestException as exc:
        click.echo(f"gateway {client.url}: unreachable ({type(exc).__name__})", err=True)
        sys.exit(2)
    report: dict[str, Any] = {"gateway": client.url, "ready": ready, "checks": checks}
    try:
        me = client.call("GET", "/v1/users/me")
        report["user"] = me["handle"]
        report["queue"] = {name: _count(client, status=name) for name in COUNTED}
        drafts = client.call("GET", "/v1/tasks", params={"limit": PAGE})["tasks"]
        report["queue"]["drafts"] = str(sum(1 for t in drafts if t.get("planning_state") == "draft"))
    except ApiError as exc:
        report["user"] = f"({exc})"
    if as_json:
        _emit(report, True, "")
    else:
        lines = [f"gateway {client.url}: {'ready' if ready else 'NOT READY'}"]
        lines += [f"  {name}: {value}" for name, value in checks.items()]
        lines.append(f"user: {report['user']}")
        if "queue" in report:
            lines.append("your tasks: " + ", ".join(f"{n} {name}" for name, n in report["queue"].items()))
        click.echo("\n".join(lines))
    sys.exit(0 if ready else 1)


COMMANDS = (status,)
