"""Client commands (the role of cynork in CyNodeAI, the reference implementation): login, whoami, logout, task ..."""

from __future__ import annotations

import json
import sys
import time
from typing import Any

import click

from cynode_core.cli.common import FINAL_TASK_STATUSES, print_table
from cynode_core.client import ApiError, GatewayClient

url_option = click.option("--url", envvar="CYNODE_URL", default=None, help="gateway URL (default: the logged-in one)")
json_option = click.option("--json", "as_json", is_flag=True, help="machine-readable output")


def _client(url: str | None) -> GatewayClient:
    return GatewayClient.from_store(url)


def _run(fn):  # type: ignore[no-untyped-def]
    try:
        return fn()
    except ApiError as exc:
        raise click.ClickException(str(exc)) from exc


def _emit(data: Any, as_json: bool, text: str) -> None:
    click.echo(json.dumps(data, indent=2) if as_json else text)


@click.command()
@url_option
@click.option("--handle", "-u", prompt=True, help="user handle")
@click.option("--password", "-p", default=None, help="password (default: asked)")
def login(url: str | None, handle: str, password: str | None) -> None:
    """Log in to a gateway and store the tokens (mode 0600)."""
    if password is None:
        password = (
            click.prompt("password", hide_input=True) if sys.stdin.isatty() else sys.stdin.readline().rstrip("\n")
        )
    client = GatewayClient(url or "http://127.0.0.1:12080")
    _run(lambda: client.login(handle, password or ""))
    click.echo(f"logged in as {handle} at {client.url}")


@click.command()
@url_option
@json_option
def whoami(url: str | None, as_json: bool) -> None:
    """Show the logged-in user."""
    me = _run(lambda: _client(url).call("GET", "/v1/users/me"))
    _emit(me, as_json, f"{me['handle']} ({me['id']}){'' if me['is_active'] else ' disabled'}")


@click.command()
@url_option
def logout(url: str | None) -> None:
    """End the session and forget the stored tokens."""
    _run(lambda: _client(url).logout())
    click.echo("logged out")


@click.group()
def task() -> None:
    """Create and follow tasks."""


@task.command("list")
@url_option
@json_option
@click.option("--status", default=None, help="only tasks of this status")
@click.option("--limit", default=50, show_default=True)
@click.option("--offset", default=0, show_default=True)
def task_list(url: str | None, as_json: bool, status: str | None, limit: int, offset: int) -> None:
    """List my tasks, newest first."""
    params: dict[str, Any] = {"limit": limit, "offset": offset}
    if status:
        params["status"] = status
    data = _run(lambda: _client(url).call("GET", "/v1/tasks", params=params))
    if as_json:
        _emit(data, True, "")
        return
    print_table(
        ("ID", "NAME", "STATUS", "PLANNING", "CREATED", "PROMPT"),
        [
            (
                t["id"],
                t.get("task_name", ""),
                t["status"],
                t.get("planning_state", ""),
                t["created_at"],
                (t.get("prompt") or "")[:40].replace("\n", " "),
            )
            for t in data["tasks"]
        ],
    )
    if "next_offset" in data:
        click.echo(f"more: --offset {data['next_offset']}")


@task.command("get")
@url_option
@json_option
@click.argument("task_ref")
def task_get(url: str | None, as_json: bool, task_ref: str) -> None:
    """Show one task (by id or name); a sandbox agent's task also lists its steps so far."""
    client = _client(url)
    found = _run(lambda: client.call("GET", f"/v1/tasks/{task_ref}"))
    _emit_task(found, as_json)
    if as_json:
        return
    result = _run(lambda: client.call("GET", f"/v1/tasks/{found['id']}/result"))
    for sba in filter(None, map(_sba_result, result["jobs"])):
        _show_agent_steps(sba)


def _sba_result(job: dict[str, Any]) -> dict[str, Any] | None:
    """The ``sba_result`` of a job's stored result, if it has one."""
    try:
        result = json.loads(job.get("result") or "null")
    except ValueError:
        return None
    sba = result.get("sba_result") if isinstance(result, dict) else None
    return sba if isinstance(sba, dict) else None


def _emit_task(t: dict[str, Any], as_json: bool) -> None:
    """A task as ``task get`` shows it: one ``field: value`` line each (``planning_state`` among them)."""
    _emit(t, as_json, "\n".join(f"{k}: {v}" for k, v in t.items()))


@task.command("ready")
@url_option
@json_option
@click.argument("task_ref")
def task_ready(url: str | None, as_json: bool, task_ref: str) -> None:
    """Start a draft task (by id or name): its job is queued. A task already ready stays as it is."""
    _emit_task(_run(lambda: _client(url).call("POST", f"/v1/tasks/{task_ref}/ready")), as_json)


def _show_agent_steps(sba: dict[str, Any]) -> None:
    """A sandbox agent's steps, one line each, and how it ended."""
    for step in sba.get("steps") or []:
        if isinstance(step, dict):
            code = f" (exit code {step['exit_code']})" if "exit_code" in step else ""
            click.echo(f"step {step.get('index', '?')}: {step.get('type', '?')} {step.get('status', '?')}{code}")
    ending = sba.get("status", "?")
    if sba.get("failure_code"):
        ending += f": {sba['failure_code']}: {sba.get('failure_message', '')}"
    click.echo(f"agent {ending}")


def _show_result(client: GatewayClient, ref: str, as_json: bool, *, wait: bool) -> None:
    spinner, i, started = "|/-\\", 0, time.monotonic()
    while True:
        data = _run(lambda: client.call("GET", f"/v1/tasks/{ref}/result"))
        if not wait or data["status"] in FINAL_TASK_STATUSES:
            break
        if sys.stderr.isatty():
            click.echo(f"\r{data['status']} {spinner[i % 4]} {time.monotonic() - started:5.1f}s", nl=False, err=True)
        i += 1
        time.sleep(0.25)
    if wait and sys.stderr.isatty():
        click.echo("\r" + " " * 30 + "\r", nl=False, err=True)
    if as_json:
        _emit(data, True, "")
        return
    click.echo(f"task {data['task_id']}: {data['status']}")
    for job in data["jobs"]:
        try:
            result = json.loads(job.get("result") or "null")
        except ValueError:
            result = None
        sba = _sba_result(job)
        if sba is not None:
            _show_agent_steps(sba)
        if isinstance(result, dict) and "stdout" in result:
            click.echo(f"exit code {result.get('exit_code')}, job {job['status']}")
            if result.get("stdout"):
                click.echo(result["stdout"].rstrip("\n"))
            if result.get("stderr"):
                click.echo(result["stderr"].rstrip("\n"), err=True)
        elif isinstance(result, dict) and "error" in result:
            click.echo(f"job {job['status']}: {result['error']}", err=True)
        else:
            click.echo(f"job {job['status']}: no result yet")
    if data["status"] == "failed":
        sys.exit(1)


@task.command("result")
@url_option
@json_option
@click.option("--wait", is_flag=True, help="wait until the task ends, showing progress")
@click.argument("task_ref")
def task_result(url: str | None, as_json: bool, wait: bool, task_ref: str) -> None:
    """Show a task's result (stdout, stderr, exit code)."""
    _show_result(_client(url), task_ref, as_json, wait=wait)


class StatusLine:
    """The task's status on stderr: one line redrawn in place on a terminal, a line per change elsewhere."""

    def __init__(self, ref: str):
        self.ref, self.status = ref, ""
        self.live = sys.stderr.isatty()
        self.shown = False  # drawn on the terminal's current line (never over a line printed without its end)

    def clear(self) -> None:
        if self.shown:
            click.echo("\r\033[K", nl=False, err=True)
            self.shown = False

    def draw(self) -> None:
        if self.live and self.status:
            click.echo(f"[{self.status}] task {self.ref}", nl=False, err=True)
            self.shown = True

    def finish(self, status: str) -> None:
        """The final status, left on its own line."""
        self.update(status)
        if self.live:
            self.clear()
            click.echo(f"task {self.ref}: {status}", err=True)

    def update(self, status: str) -> None:
        if status == self.status:
            return
        redraw = self.shown or not self.status
        self.clear()
        self.status = status
        if self.live:
            if redraw:
                self.draw()
        else:
            click.echo(f"task {self.ref}: {status}", err=True)


def _follow(client: GatewayClient, ref: str, stream: str, status: StatusLine | None) -> str:
    """Print the task's lines as they come (stdout lines to stdout, stderr lines to stderr); its final status.

    Ctrl-C stops following (exit 130); the task goes on.
    """
    try:
        for event in client.follow_logs(ref, stream=stream):
            body = event.json()
            if event.event in ("stdout", "stderr"):
                if status is not None:
                    status.clear()
                click.echo(body["text"], nl=False, err=event.event == "stderr")
                if status is not None and body["text"].endswith("\n"):
                    status.draw()
            elif event.event == "status" and status is not None:
                status.update(body["status"])
            elif event.event == "end":
                if status is not None:
                    status.finish(body["status"])
                return str(body["status"])
    except KeyboardInterrupt:
        if status is not None:
            status.clear()
        click.echo(f"stopped following; task {ref} goes on", err=True)
        sys.exit(130)
    except ApiError as exc:
        raise click.ClickException(str(exc)) from exc
    return ""


@task.command("watch")
@url_option
@click.option("--stream", type=click.Choice(["all", "stdout", "stderr"]), default="all")
@click.argument("task_ref")
def task_watch(url: str | None, stream: str, task_ref: str) -> None:
    """Show a task's lines as they come and its status until it ends (Ctrl-C stops watching, not the task)."""
    final = _follow(_client(url), task_ref, stream, StatusLine(task_ref))
    if final == "failed":
        sys.exit(1)


@task.command("logs")
@url_option
@json_option
@click.option("--stream", type=click.Choice(["all", "stdout", "stderr"]), default="all")
@click.option("--follow", "-f", is_flag=True, help="print lines as they come until the task ends (Ctrl-C stops)")
@click.argument("task_ref")
def task_logs(url: str | None, as_json: bool, stream: str, follow: bool, task_ref: str) -> None:
    """Print a task's captured output, or follow it live."""
    if follow:
        if as_json:
            raise click.UsageError("--follow prints lines; it has no --json form")
        _follow(_client(url), task_ref, stream, None)
        return
    data = _run(lambda: _client(url).call("GET", f"/v1/tasks/{task_ref}/logs", params={"stream": stream}))
    if as_json:
        _emit(data, True, "")
        return
    if data["stdout"]:
        click.echo(data["stdout"], nl=False)
    if data["stderr"]:
        click.echo(data["stderr"], nl=False, err=True)


@task.command("cancel")
@url_option
@json_option
@click.argument("task_ref")
def task_cancel(url: str | None, as_json: bool, task_ref: str) -> None:
    """Cancel a task (a running job's container is stopped)."""
    data = _run(lambda: _client(url).call("POST", f"/v1/tasks/{task_ref}/cancel"))
    _emit(data, as_json, f"task {data['task_id']} canceled")


COMMANDS = (login, whoami, logout, task)
