"""``cynode task create``: a task from a command, a script, a prompt or a goal, with files attached.

``--attach PATH`` (repeatable) uploads each file as an artifact first
(with a progress bar on a terminal) and names it among the task's
attachments as ``artifact:<id>``; the job finds it at
``/workspace/inputs/<name>`` (artifacts_contract.md 7).
"""

from __future__ import annotations

import uuid
from pathlib import Path
from typing import Any

import click

from cynode_core.artifact_client import upload
from cynode_core.cli.artifacts import progress_bar
from cynode_core.cli.gateway import _client, _emit, _run, _show_result, json_option, task, url_option
from cynode_core.client import GatewayClient

_FILE = click.Path(exists=True, dir_okay=False, path_type=Path)


@task.command("create")
@url_option
@json_option
@click.option("--command", "-c", "commands", multiple=True, help="a shell command (repeat for several lines)")
@click.option("--prompt", "-p", default=None, help="a prompt for the node's model")
@click.option("--agent", "-a", default=None, help="a goal for a sandbox agent, which works on it step by step")
@click.option("--name", default=None, help="task name (made unique per user)")
@click.option("--use-inference", is_flag=True, help="give a command task the inference proxy")
@click.option("--script", type=_FILE, default=None, help="a script file to run (input mode script)")
@click.option("--commands-file", type=_FILE, default=None, help="a file of shell command lines")
@click.option("--task-file", type=_FILE, default=None, help="a file holding the prompt")
@click.option("--attach", "attach", type=_FILE, multiple=True, help="a file the job finds in /workspace/inputs")
@click.option("--draft", is_flag=True, help="keep it as a draft: nothing runs until `cynode task ready`")
@click.option("--wait", is_flag=True, help="wait for the result and print it")
def task_create(
    url: str | None,
    as_json: bool,
    commands: tuple[str, ...],
    prompt: str | None,
    agent: str | None,
    name: str | None,
    use_inference: bool,
    script: Path | None,
    commands_file: Path | None,
    task_file: Path | None,
    attach: tuple[Path, ...],
    draft: bool,
    wait: bool,
) -> None:
    """Create a command task (--command), a prompt task (--prompt) or a sandbox-agent task (--agent)."""
    given = (commands, prompt, agent, script, commands_file, task_file)
    if sum(map(bool, given)) != 1:
        raise click.UsageError(
            "give one of --command (one or more), --prompt, --agent, --script, --commands-file or --task-file"
        )
    if draft and wait:
        raise click.UsageError("a draft does not run until `cynode task ready`: --wait has nothing to wait for")
    body = _body(commands, prompt, agent, script, commands_file, task_file)
    if name:
        body["task_name"] = name
    if use_inference:
        body["use_inference"] = True
    if draft:
        body["planning_state"] = "draft"
    client = _client(url)
    if attach:
        body["attachments"] = [f"artifact:{_attached(client, path)}" for path in attach]
    created = _run(lambda: client.call("POST", "/v1/tasks", json=body))
    if wait and created.get("planning_state") != "draft":
        _show_result(client, created["id"], as_json, wait=True)
        return
    _emit(created, as_json, _created_line(created))


def _created_line(t: dict[str, Any]) -> str:
    line = f"task {t['id']} ({t['task_name']}): {t['status']}"
    if t.get("planning_state") == "draft":
        line += f", draft (start it with: cynode task ready {t['id']})"
    return line


def _body(
    commands: tuple[str, ...],
    prompt: str | None,
    agent: str | None,
    script: Path | None,
    commands_file: Path | None,
    task_file: Path | None,
) -> dict[str, Any]:
    if prompt or task_file:
        return {"prompt": prompt or _text(task_file), "input_mode": "prompt"}
    if agent:
        return {"prompt": agent, "use_sba": True}
    if script:
        return {"prompt": _text(script), "input_mode": "script"}
    return {"prompt": _text(commands_file) if commands_file else "\n".join(commands), "input_mode": "commands"}


def _text(path: Path | None) -> str:
    assert path is not None
    try:
        return path.read_text(encoding="utf-8")
    except UnicodeDecodeError as exc:
        raise click.UsageError(f"{path} is not UTF-8 text") from exc


def _attached(client: GatewayClient, path: Path) -> str:
    """Upload one attachment as an artifact of the caller (a path of its own, so names never clash); its id."""
    params = {"scope_level": "user", "path": f"attachments/{uuid.uuid4()}/{path.name}"}
    with progress_bar(f"upload {path.name}", path.stat().st_size) as progress:
        created = _run(lambda: upload(client, path, params, progress))
    return str(created["artifact_id"])
