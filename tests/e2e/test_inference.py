"""Steps of features/e2e/inference.feature: a real model, the real proxy, real Podman.

The node uses the ``ollama`` backend plugin pointed at an embedded llama.cpp
server this test starts (an "existing service" on loopback), so a scenario
can stop the model server under a running node.
"""

from __future__ import annotations

import base64
import json
import re
from pathlib import Path

import psycopg
import pytest
import requests
from harness.processes import wait_until
from pytest_bdd import given, parsers, scenarios, then, when

scenarios("e2e/inference.feature")

PROXY_CLIENT = r"""
import json, os, socket, sys
path = "/run/cynode/inference-proxy.sock"
body = sys.argv[1].encode() if len(sys.argv) > 1 else b""
size = int(os.environ.get("BODY_MIB", "0")) * 1024 * 1024
if size:
    body = b'{"model": "x", "prompt": "' + b"a" * size + b'"}'
s = socket.socket(socket.AF_UNIX)
s.settimeout(90)
s.connect(path)
s.sendall(b"POST /api/generate HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nConnection: close\r\n"
          b"Content-Length: " + str(len(body)).encode() + b"\r\n\r\n" + body)
raw = b""
while True:
    try:
        chunk = s.recv(65536)
    except OSError:
        break
    if not chunk:
        break
    raw += chunk
print("STATUS", raw.split(b" ", 2)[1].decode())
print("BODY", raw.partition(b"\r\n\r\n")[2][:20000].decode("utf-8", "replace"))
"""


@pytest.fixture(scope="module")
def model_server(tmp_path_factory):  # type: ignore[no-untyped-def]
    from cynode_llamacpp.plugin import create_backend

    home = tmp_path_factory.mktemp("llama-home")
    backend = create_backend({"home": str(home), "num_predict": 24})
    backend.start()
    yield backend
    backend.stop()


@pytest.fixture
def ctx() -> dict:
    return {}


@given('the single-node stack is ready with a node serving the embedded model and I am logged in as "admin"')
def stack(ctx, cluster, model_server) -> None:  # type: ignore[no-untyped-def]
    if not model_server.base_url:
        model_server.start()
    orch = cluster.orchestrator().start().wait_healthy()
    node = (
        cluster.node(
            "node-01", orch, inference_backend="ollama", ollama_url=model_server.base_url, keep_workspaces="true"
        )
        .start()
        .wait_ready()
    )
    wait_until(lambda: requests.get(f"{orch.gateway}/readyz", timeout=2).status_code == 200, 30, "ready")
    ctx.update(
        orch=orch,
        node=node,
        api=cluster.admin(orch),
        cluster=cluster,
        backend_url=model_server.base_url,
        model_server=model_server,
    )


@given('the node reported the served model in "inference.available_models"')
def reported(ctx, cluster) -> None:  # type: ignore[no-untyped-def]
    with psycopg.connect(cluster.env["CYNODE_DATABASE_URL"]) as conn:
        snapshot = conn.execute(
            "SELECT capability_snapshot FROM node_capabilities ORDER BY reported_at DESC LIMIT 1"
        ).fetchone()[0]
    assert "gemma3:270m" in snapshot["inference"]["available_models"]
    assert snapshot["inference"]["supported"] is True


def _create(ctx, body: dict) -> None:  # type: ignore[no-untyped-def]
    resp = ctx["api"].request("POST", "/v1/tasks", json=body)
    assert resp.status_code == 201, resp.text
    ctx["task"] = resp.json()["id"]


@when(parsers.parse('I create a task with the prompt "{prompt}" and no input_mode'))
def create_prompt(ctx, prompt: str) -> None:  # type: ignore[no-untyped-def]
    ctx["prompt"] = prompt
    _create(ctx, {"prompt": prompt})


@when(parsers.parse('I create the inference command task "{command}"'))
def create_inference_command(ctx, command: str) -> None:  # type: ignore[no-untyped-def]
    _create(ctx, {"prompt": command, "input_mode": "commands", "use_inference": True})


def _finish(ctx, timeout: float = 120) -> dict:  # type: ignore[no-untyped-def]
    ctx["result"] = ctx["api"].wait_result(ctx["task"], timeout=timeout)
    ctx["job"] = json.loads(ctx["result"]["jobs"][0]["result"])
    return ctx["result"]


@then(parsers.parse('within {seconds:d} seconds the task is "completed" and its result has a non-empty model answer'))
def completed_answer(ctx, seconds: int) -> None:  # type: ignore[no-untyped-def]
    assert _finish(ctx, seconds)["status"] == "completed", ctx["job"]
    assert ctx["job"]["stdout"].strip() and ctx["job"]["stdout"].strip() != "(no response)"


@then(parsers.parse('the job payload sent to the node is not the shell command ["sh", "-c", "{prompt}"]'))
def not_shell(ctx, prompt: str) -> None:  # type: ignore[no-untyped-def]
    with psycopg.connect(ctx["cluster"].env["CYNODE_DATABASE_URL"]) as conn:
        payload = json.loads(
            conn.execute("SELECT payload #>> '{}' FROM jobs WHERE task_id = %s", (ctx["task"],)).fetchone()[0]
        )
    assert payload["command"] != ["sh", "-c", prompt]
    assert payload["use_inference"] is True and payload["env"]["CYNODE_PROMPT"] == prompt


@then('the task logs return the same answer in "stdout"')
def logs_same(ctx) -> None:  # type: ignore[no-untyped-def]
    assert ctx["api"].call("GET", f"/v1/tasks/{ctx['task']}/logs")["stdout"] == ctx["job"]["stdout"]


@then(parsers.parse('the task reaches a terminal status and no file "{name}" exists in its job workspace'))
def no_file(ctx, name: str) -> None:  # type: ignore[no-untyped-def]
    _finish(ctx)
    job_id = ctx["result"]["jobs"][0]["id"]
    root = Path(ctx["cluster"].tmp) / "home-node-01" / "node" / "node-01" / "sandbox_mounts"
    workspace = root / job_id
    assert workspace.is_dir(), f"kept workspace missing: {workspace}"
    assert not (workspace / name).exists()


@then(parsers.parse('the result does not contain "{text}"'))
def result_lacks(ctx, text: str) -> None:  # type: ignore[no-untyped-def]
    assert text not in ctx["result"]["jobs"][0]["result"]


@then(parsers.parse('the task is "completed" and stdout starts with "{prefix}"'))
def stdout_prefix(ctx, prefix: str) -> None:  # type: ignore[no-untyped-def]
    assert _finish(ctx)["status"] == "completed", ctx["job"]
    assert ctx["job"]["stdout"].startswith(prefix)


@then('stdout has no "OLLAMA_BASE_URL" and not the backend\'s http:// address')
def no_tcp_url(ctx) -> None:  # type: ignore[no-untyped-def]
    out = ctx["job"]["stdout"]
    assert "OLLAMA_BASE_URL" not in out and ctx["backend_url"] not in out
    assert not re.search(r"http://\S+", out)


def _python_job(ctx, script: str, *, use_inference: bool = True, env: str = "") -> dict:  # type: ignore[no-untyped-def]
    # The script travels base64-encoded so no shell quoting can change it.
    encoded = base64.b64encode(script.encode()).decode()
    command = f"echo {encoded} | base64 -d > /tmp/job.py && {env} python3 /tmp/job.py"
    _create(ctx, {"prompt": command, "input_mode": "commands", "use_inference": use_inference})
    _finish(ctx)
    return ctx["job"]


@when("an inference job POSTs /api/generate for the served model over the socket in INFERENCE_PROXY_URL")
def generate_through_proxy(ctx) -> None:  # type: ignore[no-untyped-def]
    port = ctx["backend_url"].rsplit(":", 1)[1]
    probe = (
        "import os, socket, subprocess, sys\n"
        'print("NET", sorted(os.listdir("/sys/class/net")))\n'
        f"c = socket.socket(); c.settimeout(3)\n"
        f'print("TCP", c.connect_ex(("127.0.0.1", {port})))\n'
    )
    body = json.dumps(
        {"model": "gemma3:270m", "prompt": "Water is made of", "stream": False, "options": {"num_predict": 12}}
    )
    script = probe + PROXY_CLIENT.replace(
        'sys.argv[1].encode() if len(sys.argv) > 1 else b""', repr(body) + ".encode()"
    )
    ctx["probe"] = _python_job(ctx, script)


@then("the call answered 200 with generated text")
def answered_200(ctx) -> None:  # type: ignore[no-untyped-def]
    out = ctx["probe"]["stdout"]
    assert "STATUS 200" in out, (ctx["probe"]["stderr"], out)
    body = json.loads(out.split("BODY ", 1)[1].strip())
    assert body["response"].strip() and body["model"] == "gemma3:270m"


@then("the same job's direct TCP connection to the backend's port failed and it saw only \"lo\"")
def tcp_failed(ctx) -> None:  # type: ignore[no-untyped-def]
    out = ctx["probe"]["stdout"]
    assert "NET ['lo']" in out
    code = int(re.search(r"TCP (-?\d+)", out).group(1))  # type: ignore[union-attr]
    assert code != 0


@then("a job without use_inference finds no proxy socket and no INFERENCE_PROXY_URL")
def no_proxy_without_inference(ctx) -> None:  # type: ignore[no-untyped-def]
    _create(ctx, {"prompt": "ls /run/cynode 2>&1; echo URL=[$INFERENCE_PROXY_URL]", "input_mode": "commands"})
    job = _finish(ctx) and ctx["job"]
    assert "inference-proxy.sock" not in job["stdout"] and "URL=[]" in job["stdout"]


@when("an inference job sends an 11 MiB body to the proxy")
def oversize(ctx) -> None:  # type: ignore[no-untyped-def]
    ctx["probe"] = _python_job(ctx, PROXY_CLIENT, env="BODY_MIB=11")


@then("the proxy answered 413")
def got_413(ctx) -> None:  # type: ignore[no-untyped-def]
    assert "STATUS 413" in ctx["probe"]["stdout"], ctx["probe"]


@given("the model server behind the node has been stopped")
def stop_model(ctx) -> None:  # type: ignore[no-untyped-def]
    ctx["model_server"].stop()


@then(parsers.parse('within {seconds:d} seconds the task is "failed" and its stderr names the inference failure'))
def failed_inference(ctx, seconds: int) -> None:  # type: ignore[no-untyped-def]
    assert _finish(ctx, seconds)["status"] == "failed"
    assert "[Ollama request failed]" in ctx["job"]["stderr"] or "Ollama error" in ctx["job"]["stdout"], ctx["job"]
