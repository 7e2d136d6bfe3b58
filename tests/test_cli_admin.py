"""``cynode admin user …`` and ``cynode admin node list``/``set-url`` on a real database.

The commands run through click's CliRunner with ``CYNODE_DATABASE_URL`` set
to the test's own database; their effect is checked through the running
app (logins, node registration) on that same database.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner, Result
from harness.api import ApiClient
from harness.nodes import NodeHandle, ack, fetch_config, register
from harness.processes import CynodeProcess, clean_environ

from cynode_core.cli import main


@pytest.fixture
def cynode(database_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch):  # type: ignore[no-untyped-def]
    """Run ``cynode <args>`` in-process against this test's database."""
    keep = clean_environ()
    for key in list(os.environ):
        if key not in keep:  # no CYNODE_* or upstream setting of the caller's shell leaks in
            monkeypatch.delenv(key)
    env = {"CYNODE_DATABASE_URL": database_url, "CYNODE_HOME": str(tmp_path / "cli-home")}
    runner = CliRunner()

    def run(*args: str, input: str | None = None) -> Result:
        return runner.invoke(main, list(args), env=env, input=input, catch_exceptions=False)

    return run


def users_json(cynode: Any) -> dict[str, dict[str, Any]]:
    result = cynode("admin", "user", "list", "--json")
    assert result.exit_code == 0, result.output
    return {row["handle"]: row for row in json.loads(result.stdout)}


def test_user_add_then_login(cynode, api: ApiClient) -> None:  # type: ignore[no-untyped-def]
    result = cynode("admin", "user", "add", "bob", "--password", "bob-pass-1", "--email", "bob@example.org")
    assert result.exit_code == 0 and "user bob created" in result.output
    assert "bob-pass-1" not in result.output
    assert api.login("bob", "bob-pass-1").status_code == 200
    assert api.login("bob", "wrong").status_code == 401
    row = users_json(cynode)["bob"]
    assert (row["email"], row["is_active"], row["source"]) == ("bob@example.org", True, "local")


def test_user_add_reads_the_password_from_stdin(cynode, api: ApiClient) -> None:  # type: ignore[no-untyped-def]
    result = cynode("admin", "user", "add", "dora", input="dora-pass-2\n")
    assert result.exit_code == 0, result.output
    assert api.login("dora", "dora-pass-2").status_code == 200


def test_user_add_refuses_an_empty_password_and_a_taken_handle(cynode) -> None:  # type: ignore[no-untyped-def]
    empty = cynode("admin", "user", "add", "erin", input="\n")
    assert empty.exit_code != 0 and "password is required" in empty.output
    assert cynode("admin", "user", "add", "erin", "--password", "p1").exit_code == 0
    again = cynode("admin", "user", "add", "erin", "--password", "p2")
    assert again.exit_code != 0 and "already exists" in again.output


def test_user_list_shows_every_user(cynode, orchestrator) -> None:  # type: ignore[no-untyped-def]
    cynode("admin", "user", "add", "frank", "--password", "frank-pass")
    table = cynode("admin", "user", "list")
    assert table.exit_code == 0
    lines = table.stdout.splitlines()
    assert lines[0].split() == ["HANDLE", "ACTIVE", "SOURCE", "EMAIL", "ID"]
    handles = {line.split()[0]: line.split()[1] for line in lines[1:]}
    assert handles == {"system": "no", "admin": "yes", "frank": "yes"}
    assert orchestrator.secrets.admin_password not in table.output


def test_disable_and_enable(cynode, api: ApiClient) -> None:  # type: ignore[no-untyped-def]
    cynode("admin", "user", "add", "gina", "--password", "gina-pass")
    tokens = api.login("gina", "gina-pass").json()

    result = cynode("admin", "user", "disable", "gina")
    assert result.exit_code == 0 and "user gina disabled" in result.output
    assert users_json(cynode)["gina"]["is_active"] is False
    refused = api.login("gina", "gina-pass")
    assert refused.status_code == 401 and refused.headers["Content-Type"] == "application/problem+json"
    # Her sessions ended at once: the token from before is dead too.
    assert api.get("/v1/users/me", token=tokens["access_token"]).status_code == 401
    assert api.post("/v1/auth/refresh", json={"refresh_token": tokens["refresh_token"]}).status_code == 401

    result = cynode("admin", "user", "enable", "gina")
    assert result.exit_code == 0 and "user gina enabled" in result.output
    assert api.login("gina", "gina-pass").status_code == 200


def test_disable_an_unknown_user_fails(cynode) -> None:  # type: ignore[no-untyped-def]
    result = cynode("admin", "user", "disable", "nobody")
    assert result.exit_code != 0 and "no user 'nobody'" in result.output


def test_node_list_shows_a_registered_node_and_its_ack(cynode, api: ApiClient, orchestrator) -> None:  # type: ignore[no-untyped-def]
    empty = cynode("admin", "node", "list")
    assert empty.exit_code == 0 and "(none)" in empty.stdout

    node = NodeHandle("node-cli", "http://127.0.0.1:12090")
    compute, sandbox = {"cpu_cores": 4, "ram_mb": 8192}, {"max_concurrency": 3}
    register(api, orchestrator.secrets.psk, node, compute=compute, sandbox=sandbox)
    fetch_config(api, node)
    before = json.loads(cynode("admin", "node", "list", "--json").stdout)
    assert [n["slug"] for n in before] == ["node-cli"]
    assert before[0]["config_ack_status"] is None and before[0]["config_version"] == node.config_version

    ack(api, node, "applied")

    table = cynode("admin", "node", "list")
    assert table.exit_code == 0
    header, row = table.stdout.splitlines()[:2]
    assert header.split()[:3] == ["SLUG", "STATUS", "SLOTS"]
    assert row.startswith("node-cli") and "active" in row and "0/3" in row
    assert node.config_version in row and "applied (current)" in row and "http://127.0.0.1:12090" in row
    assert "linux/amd64 4cpu 8192MB" in row

    after = json.loads(cynode("admin", "node", "list", "--json").stdout)[0]
    assert (after["config_ack_status"], after["config_ack_version"]) == ("applied", node.config_version)
    assert after["max_concurrency"] == 3 and after["running_jobs"] == 0
    assert (
        node.jwt not in table.output and node.worker_token not in table.output
    )  # no node JWT, no Worker API token in the listing


def test_node_set_url_takes_only_a_url_a_node_could_report(cynode, api: ApiClient, orchestrator) -> None:  # type: ignore[no-untyped-def]
    register(api, orchestrator.secrets.psk, NodeHandle("node-url", "http://127.0.0.1:12090"))

    def url() -> str:
        return str(json.loads(cynode("admin", "node", "list", "--json").stdout)[0]["url"])

    for refused, why in [
        ("http://8.8.8.8:12090", "outside the networks nodes may use"),
        ("http://admin:pw@127.0.0.1:12091", "must not carry a user name or password"),
        ("http://127.0.0.1:12091/?x=1", "must not carry a query or fragment"),
    ]:
        result = cynode("admin", "node", "set-url", "node-url", refused)
        assert result.exit_code != 0 and why in result.output, (refused, result.output)
        assert url() == "http://127.0.0.1:12090"
    assert cynode("admin", "node", "set-url", "node-url", "http://10.0.0.7:12091/").exit_code == 0
    assert url() == "http://10.0.0.7:12091"
    assert cynode("admin", "node", "set-url", "node-url").exit_code == 0
    assert url() == "http://127.0.0.1:12090"


def test_the_real_command_lists_users(database_url: str, tmp_path: Path, orchestrator) -> None:  # type: ignore[no-untyped-def]
    env = clean_environ(CYNODE_DATABASE_URL=database_url, CYNODE_HOME=str(tmp_path / "proc-home"))
    proc = CynodeProcess(["admin", "user", "list", "--json"], env, tmp_path / "list.log").start()
    try:
        assert proc.wait(timeout=60) == 0, proc.output
    finally:
        proc.stop()
    assert {"admin", "system"} <= {row["handle"] for row in json.loads(proc.output[proc.output.index("[") :])}


@pytest.mark.parametrize("settings_overrides", [{"login_handle_failures": 2}])
def test_unlock_ends_the_slow_down_of_an_account(cynode, api: ApiClient) -> None:  # type: ignore[no-untyped-def]
    cynode("admin", "user", "add", "hank", "--password", "hank-pass")
    # Eight failures from eight addresses, then one from 10.6.6.6: the wait doubles per failure past two.
    for i in range(8):
        assert api.login("hank", "wrong", ip=f"10.6.0.{i}").status_code == 401
    assert api.login("hank", "wrong", ip="10.6.6.6").status_code == 401
    slowed = api.login("hank", "hank-pass", ip="10.6.6.6")
    assert slowed.status_code == 429 and int(slowed.headers["Retry-After"]) > 60

    result = cynode("admin", "user", "unlock", "hank")
    assert result.exit_code == 0 and "user hank unlocked" in result.output
    assert api.login("hank", "hank-pass", ip="10.6.6.6").status_code == 200

    unknown = cynode("admin", "user", "unlock", "nobody")
    assert unknown.exit_code != 0 and "no user 'nobody'" in unknown.output
