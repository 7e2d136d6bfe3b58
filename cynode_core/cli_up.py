"""``cynode up`` and ``cynode demo``."""

from __future__ import annotations

import json
import os
import signal
import threading
import time

import click

from cynode_core.cli import main, orchestrator_settings
from cynode_core.client import ApiError, GatewayClient
from cynode_core.stack import Stack, StackError

DEMO_COMMAND = "echo hello from the sandbox; id; uname -a"


def _progress(text: str) -> None:
    click.echo(f"==> {text}", err=True)


@main.command()
@click.option("--nodes", default=1, show_default=True, help="local node agents to start")
@click.option("--inference", default="none", show_default=True, help="inference backend of the local nodes (or 'none')")
def up(nodes: int, inference: str) -> None:
    """Run embedded PostgreSQL, the orchestrator and local nodes until Ctrl-C."""
    stack = Stack(orchestrator_settings(), nodes=nodes, inference_backend=inference, progress=_progress)
    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    try:
        stack.start()
        click.echo(f"cynode is up: gateway {stack.gateway_url}, control plane {stack.control_url}; Ctrl-C stops it", err=True)
        while not stop.wait(1.0):
            stack.check_alive()
    except StackError as exc:
        raise click.ClickException(str(exc)) from exc
    finally:
        _progress("stopping")
        stack.stop()
        _progress("stopped")


def admin_password(stack: Stack) -> str:
    password = os.environ.get("CYNODE_ADMIN_PASSWORD") or os.environ.get("BOOTSTRAP_ADMIN_PASSWORD")
    return password or (stack.settings.home / "admin-password").read_text().strip()


@main.command()
@click.option("--command", "command", default=DEMO_COMMAND, show_default=True, help="the sample command task")
def demo(command: str) -> None:
    """Bring the system up, log in, run a sample task in a sandbox, print its result, stop."""
    stack = Stack(orchestrator_settings(), progress=_progress)
    try:
        stack.start()
        client = GatewayClient(stack.gateway_url, store=stack.settings.home / "demo-credentials.json")
        _progress("logging in as admin")
        client.login("admin", admin_password(stack))
        me = client.call("GET", "/v1/users/me")
        click.echo(f"logged in: {json.dumps(me)}")
        _progress(f"creating a command task: {command}")
        created = client.call("POST", "/v1/tasks", json={"prompt": command, "input_mode": "commands", "task_name": "demo"})
        result = _wait_result(client, created["id"], timeout=120)
        job = result["jobs"][0]
        outcome = json.loads(job["result"])
        click.echo(f"task {result['task_id']} {result['status']} (exit code {outcome.get('exit_code')})")
        click.echo("--- stdout ---")
        click.echo((outcome.get("stdout") or "").rstrip("\n"))
        if outcome.get("stderr"):
            click.echo("--- stderr ---")
            click.echo(outcome["stderr"].rstrip("\n"))
        if result["status"] != "completed":
            raise click.ClickException(f"the demo task ended {result['status']}")
    except (StackError, ApiError) as exc:
        raise click.ClickException(str(exc)) from exc
    finally:
        _progress("stopping")
        stack.stop()


def _wait_result(client: GatewayClient, task_id: str, timeout: float) -> dict:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        result = client.call("GET", f"/v1/tasks/{task_id}/result")
        if result["status"] in ("completed", "failed", "canceled"):
            return result
        time.sleep(0.2)
    raise click.ClickException(f"task {task_id} did not finish within {timeout:.0f} s")
