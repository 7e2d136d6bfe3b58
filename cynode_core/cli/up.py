"""``cynode up`` and ``cynode demo``."""

from __future__ import annotations

import json
import os
import signal
import sys
import time
from typing import Any, TextIO

import click

from cynode_core.chat_client import ChatClient
from cynode_core.cli.common import FINAL_TASK_STATUSES, orchestrator_settings
from cynode_core.cli.stack import Stack, StackError
from cynode_core.client import ApiError, GatewayClient

DEMO_COMMAND = "echo hello from the sandbox; id; uname -a"
DEMO_PROMPT = "The capital of France is"
# A command task with use_inference: a client inside the sandbox (no network)
# asks the model through the node's per-job Unix-socket proxy.
DEMO_PROXY_COMMAND = (
    "echo INFERENCE_PROXY_URL=$INFERENCE_PROXY_URL; ls /sys/class/net; "
    "curl -s --max-time 60 --unix-socket /run/cynode/inference-proxy.sock http://inference/api/generate "
    '-d \'{"model": "\'$CYNODE_MODEL\'", "prompt": "Water is made of", "stream": false, '
    '"options": {"num_predict": 24}}\''
)


def _progress(text: str) -> None:
    _say(f"==> {text}")


def _say(text: str) -> None:
    """A line on stderr that never fails: a reader that went away must not stop ``up`` from stopping.

    After a broken pipe (``cynode up 2>&1 | head``) or a closed terminal (EIO),
    stderr is pointed at /dev/null, so later lines and the interpreter's final
    flush are dropped quietly instead of raising.
    """
    try:
        click.echo(text, err=True)
    except OSError:
        _silence(sys.stderr)


def _silence(stream: TextIO) -> None:
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, stream.fileno())
        os.close(devnull)
    except (OSError, ValueError):
        pass


@click.command()
@click.option("--nodes", default=1, show_default=True, help="local node agents to start")
@click.option(
    "--inference",
    default="llamacpp",
    show_default=True,
    help="inference backend of the local nodes: llamacpp (embedded model), ollama (existing server) or none",
)
def up(nodes: int, inference: str) -> None:
    """Run embedded PostgreSQL, the orchestrator and local nodes until Ctrl-C (or SIGTERM, or a hang-up)."""
    stack = Stack(orchestrator_settings(), nodes=nodes, inference_backend=inference, progress=_progress)
    # The children end with this process whatever kills it (lifeline watchers, see Stack);
    # these signals stop them in order: nodes first, then the orchestrator and its database.
    for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, lambda *_: stack.interrupted.set())
    try:
        stack.start()
        _say(f"cynode is up: gateway {stack.gateway_url}, control plane {stack.control_url}; Ctrl-C stops it")
        while not stack.interrupted.wait(1.0):
            stack.check_alive()
    except StackError as exc:
        if not stack.interrupted.is_set():
            raise click.ClickException(str(exc)) from exc
    finally:
        _progress("stopping")
        stack.stop()
        _progress("stopped")


def admin_password(stack: Stack) -> str:
    password = os.environ.get("CYNODE_ADMIN_PASSWORD") or os.environ.get("BOOTSTRAP_ADMIN_PASSWORD")
    return password or (stack.settings.home / "admin-password").read_text().strip()


@click.command()
@click.option("--command", "command", default=DEMO_COMMAND, show_default=True, help="the sample command task")
@click.option("--prompt", "prompt", default=DEMO_PROMPT, show_default=True, help="the sample prompt task")
def demo(command: str, prompt: str) -> None:
    """Bring the system up, log in, run sample tasks (a command, a prompt, a sandbox asking the model), chat, stop.

    The chat part: the project-manager agent, asked in a streamed chat, creates a draft task through
    its tools; the demo approves it and shows its result.
    """
    # The small base model rambles; a short answer keeps the demo readable.
    os.environ.setdefault("CYNODE_LLAMACPP_NUM_PREDICT", "40")
    # The agent's turn: one tool, one step, so even the tiny model's turn is short.
    os.environ.setdefault("CYNODE_PMA_TOOLS", "task.create")
    os.environ.setdefault("CYNODE_PMA_MAX_STEPS", "1")
    stack = Stack(orchestrator_settings(), progress=_progress)
    try:
        stack.start()
        client = GatewayClient(stack.gateway_url, store=stack.settings.home / "demo-credentials.json")
        _progress("logging in as admin")
        client.login("admin", admin_password(stack))
        click.echo(f"logged in: {json.dumps(client.call('GET', '/v1/users/me'))}")
        failures = 0
        samples: tuple[tuple[str, dict[str, Any]], ...] = (
            ("command task in a hardened sandbox", {"prompt": command, "input_mode": "commands", "task_name": "demo"}),
            ("prompt task answered by the node's model", {"prompt": prompt, "task_name": "demo-prompt"}),
            (
                "sandboxed job asking the model through the inference proxy",
                {
                    "prompt": DEMO_PROXY_COMMAND,
                    "input_mode": "commands",
                    "use_inference": True,
                    "task_name": "demo-proxy",
                },
            ),
        )
        for title, body in samples:
            _progress(f"{title}: {body['prompt'][:70]}")
            created = client.call("POST", "/v1/tasks", json=body)
            failures += _show(_wait_result(client, created["id"], timeout=180))
        failures += _demo_agent(client)
        if failures:
            raise click.ClickException(f"{failures} demo step(s) did not complete")
    except (StackError, ApiError) as exc:
        raise click.ClickException(str(exc)) from exc
    finally:
        _progress("stopping")
        stack.stop()


DEMO_AGENT = "Create a task that runs the command: echo hello from the agent"


def _demo_agent(client: GatewayClient) -> int:
    """The PM agent creates a draft task through its tools; it is approved here and run; 1 when a step failed."""
    _progress(f"the project-manager agent, asked in a chat: {DEMO_AGENT}")
    created = []
    for event in ChatClient(client).stream(DEMO_AGENT):
        if event.kind == "tool":
            click.echo(f"[agent calls {event.text}]")
        elif event.kind == "tool_result":
            click.echo(f"[tool result {event.text[:160]}]")
            if event.text.startswith("task.create:"):
                created.append(event.text)
        elif event.kind == "text":
            click.echo(event.text, nl=False)
    click.echo()
    drafts = [t for t in client.call("GET", "/v1/tasks")["tasks"] if t.get("planning_state") == "draft"]
    if not created or not drafts:
        click.echo("the agent created no task")
        return 1
    task = drafts[0]
    _progress(f"approving the agent's draft task {task['task_name']} (POST /v1/tasks/{{id}}/ready)")
    client.call("POST", f"/v1/tasks/{task['id']}/ready")
    return _show(_wait_result(client, task["id"], timeout=180))


def _show(result: dict) -> int:
    outcome = json.loads(result["jobs"][0].get("result") or "{}")
    click.echo(f"task {result['task_id']} {result['status']} (exit code {outcome.get('exit_code')})")
    if outcome.get("stdout"):
        click.echo("--- stdout ---")
        click.echo(outcome["stdout"].rstrip("\n"))
    if outcome.get("stderr") or outcome.get("error"):
        click.echo("--- stderr ---")
        click.echo((outcome.get("stderr") or outcome.get("error")).rstrip("\n"))
    return 0 if result["status"] == "completed" else 1


def _wait_result(client: GatewayClient, task_id: str, timeout: float) -> dict:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        result = client.call("GET", f"/v1/tasks/{task_id}/result")
        if result["status"] in FINAL_TASK_STATUSES:
            return result
        time.sleep(0.2)
    raise click.ClickException(f"task {task_id} did not finish within {timeout:.0f} s")
