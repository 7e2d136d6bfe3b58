"""``cynode token create|list|revoke`` against a real orchestrator on loopback.

The orchestrator app is served by waitress in this process; alice's
credentials are stored as ``cynode login`` leaves them. The commands run
through click's CliRunner, and ``token create`` once as a real ``cynode``
process, to see that stdout carries the key alone (for ``$(...)``) and the
notice goes to stderr.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
from typing import Any

from click.testing import CliRunner, Result
from harness.processes import clean_environ

from cynode_core.cli import main

KEY = re.compile(r"cyk_[A-Za-z0-9_-]{43}")


def cynode(env: dict[str, str], *args: str) -> Result:
    return CliRunner(env=env).invoke(main, ["token", *args], catch_exceptions=False)


def test_create_list_revoke(logged_in: Any) -> None:
    env, api = logged_in
    made = cynode(env, "create", "--name", "my editor", "--expires", "30d")
    assert made.exit_code == 0, made.output
    key = made.stdout.strip()
    assert KEY.fullmatch(key), made.stdout
    assert "will not be shown again" in made.stderr and key not in made.stderr
    assert api.get("/v1/tasks", token=key).status_code == 200

    as_json = json.loads(cynode(env, "list", "--json").stdout)
    [row] = as_json
    assert row["name"] == "my editor" and row["prefix"] == key[:12] and "expires_at" in row

    table = cynode(env, "list")
    assert table.exit_code == 0 and key not in table.stdout
    header, line = table.stdout.splitlines()
    assert header.split() == ["ID", "NAME", "PREFIX", "STATE", "CREATED", "EXPIRES", "LAST", "USED"]
    assert line.startswith(row["id"]) and key[:12] in line and " live " in line

    revoked = cynode(env, "revoke", row["id"])
    assert revoked.exit_code == 0 and f"API key {row['id']} revoked" in revoked.output
    assert api.get("/v1/tasks", token=key).status_code == 401
    assert " revoked " in cynode(env, "list").stdout


def test_errors_are_shown(logged_in: Any) -> None:
    env, _ = logged_in
    bad_expiry = cynode(env, "create", "--name", "x", "--expires", "30")
    assert bad_expiry.exit_code == 2 and "a number of days, e.g. 30d" in bad_expiry.output
    too_long = cynode(env, "create", "--name", "x", "--expires", "3651d")
    assert too_long.exit_code == 1 and "400 Bad Request: expires_in_days must be" in too_long.output
    unknown = cynode(env, "revoke", "00000000-0000-4000-8000-000000000000")
    assert unknown.exit_code == 1 and "404 Not Found: No such API key" in unknown.output
    never = cynode(env, "create", "--name", "forever")
    assert never.exit_code == 0 and "never expires" in never.stderr


def test_a_cynode_process_prints_the_key_alone_on_stdout(logged_in: Any) -> None:
    env, api = logged_in
    done = subprocess.run(
        [sys.executable, "-m", "cynode_core", "token", "create", "--name", "script"],
        env=clean_environ(**env),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    assert KEY.fullmatch(done.stdout.rstrip("\n")), done.stdout
    assert "will not be shown again" in done.stderr
    assert api.get("/v1/users/me", token=done.stdout.strip()).json()["handle"] == "alice"
