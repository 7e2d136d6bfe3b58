"""The everyday client against a live gateway: `cynode status`, `cynode artifact ...`, `task create` from files,
`cynode completion` (issue 15)."""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner, Result

from cynode_core.cli import main


def cynode(env: dict[str, str], *args: str) -> Result:
    return CliRunner(env=env).invoke(main, list(args), catch_exceptions=False)


def test_status_shows_readiness_the_user_and_their_queue(logged_in: Any) -> None:
    env, api = logged_in
    api.create_command("echo queued")
    shown = cynode(env, "status")
    assert shown.exit_code == 1, shown.output  # no node can take work: not ready
    lines = shown.output.splitlines()
    assert lines[0].endswith(": NOT READY") and any(line.startswith("  database: ok") for line in lines)
    assert "user: alice" in lines and "your tasks: 1 queued, 0 running, 0 drafts" in lines
    data = json.loads(cynode(env, "status", "--json").stdout)
    assert (data["ready"], data["user"], data["queue"]["queued"]) == (False, "alice", "1")


def test_artifacts_go_up_and_come_back_verified(
    logged_in: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    env, _ = logged_in
    source = tmp_path / "report.bin"
    source.write_bytes(os.urandom(300_000))
    put = cynode(env, "artifact", "put", str(source), "--path", "reports/r1.bin", "--json")
    assert put.exit_code == 0, put.output
    made = json.loads(put.stdout)
    assert made["checksum_sha256"] == hashlib.sha256(source.read_bytes()).hexdigest()
    listed = cynode(env, "artifact", "ls")
    assert made["artifact_id"] in listed.output and "reports/r1.bin" in listed.output
    target = tmp_path / "copy.bin"
    got = cynode(env, "artifact", "get", made["artifact_id"], "-o", str(target))
    assert got.exit_code == 0 and "verified" in got.output, got.output
    assert target.read_bytes() == source.read_bytes()
    shown = cynode(env, "artifact", "show", made["artifact_id"])
    assert shown.exit_code == 0 and "size_bytes: 300000" in shown.output and "path: reports/r1.bin" in shown.output
    monkeypatch.chdir(tmp_path)  # without -o: the path's last segment, in the current directory
    assert cynode(env, "artifact", "get", made["artifact_id"]).exit_code == 0
    assert (tmp_path / "r1.bin").read_bytes() == source.read_bytes()
    assert cynode(env, "artifact", "rm", made["artifact_id"]).exit_code == 0
    gone = cynode(env, "artifact", "get", made["artifact_id"], "-o", str(tmp_path / "never.bin"))
    assert gone.exit_code != 0 and "artifact not found" in gone.output
    assert not (tmp_path / "never.bin").exists()


def test_tasks_from_files_and_attachments(logged_in: Any, tmp_path: Path) -> None:
    env, api = logged_in
    commands = tmp_path / "steps.sh"
    commands.write_text("echo one\necho two\n")
    data = tmp_path / "data.csv"
    data.write_text("a,b\n")
    made = cynode(env, "task", "create", "--commands-file", str(commands), "--attach", str(data), "--json")
    assert made.exit_code == 0, made.output
    task = json.loads(made.stdout)
    assert task["prompt"] == "echo one\necho two\n"
    [attachment] = task["attachments"]
    assert attachment.startswith("artifact:")
    listed = api.request("GET", "/v1/artifacts", params={"scope_level": "user"}).json()["artifacts"]
    assert [a["artifact_id"] for a in listed] == [attachment.removeprefix("artifact:")]
    both = cynode(env, "task", "create", "--commands-file", str(commands), "--prompt", "x")
    assert both.exit_code == 2 and "give one of" in both.output


def test_completion_scripts_are_printed_for_each_shell() -> None:
    for shell in ("bash", "zsh", "fish"):
        result = CliRunner().invoke(main, ["completion", shell])
        assert result.exit_code == 0 and "_CYNODE_COMPLETE" in result.output, shell
