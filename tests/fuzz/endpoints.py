"""The body-taking endpoints of each surface, with a valid body each (see ``hostile.Endpoint``)."""

from __future__ import annotations

import uuid

from fuzz.clients import FUZZ_PASSWORD, FUZZ_USER, NODE_SLUG, capability
from fuzz.hostile import Endpoint

# Stands for the fuzz user's id in a body; the sender puts the real one in.
FUZZ_USER_ID = "<fuzz-user-id>"

ORCHESTRATOR_ENDPOINTS = [
    Endpoint("login", "/v1/auth/login", {"handle": FUZZ_USER, "password": FUZZ_PASSWORD, "extra": 1}),
    Endpoint("refresh", "/v1/auth/refresh", {"refresh_token": "not-a-token", "extra": 1}),
    Endpoint("logout", "/v1/auth/logout", {"refresh_token": "not-a-token", "extra": 1}, token="user"),
    Endpoint(
        "create_api_key", "/v1/auth/api-keys", {"name": "fuzz key", "expires_in_days": 30, "extra": 1}, token="user"
    ),
    Endpoint(
        "create_task",
        "/v1/tasks",
        {
            "prompt": "echo hi",
            "input_mode": "commands",
            "use_inference": False,
            "task_name": "fuzz",
            "project_id": "p",
            "attachments": ["a.txt"],
            "use_sba": False,
        },
        token="user",
    ),
    # No node serves "fuzz-model": a valid body is a 404 model_not_found, so no turn runs.
    Endpoint(
        "chat_completions",
        "/v1/chat/completions",
        {
            "model": "fuzz-model",
            "messages": [
                {"role": "system", "content": "be brief"},
                {"role": "user", "content": [{"type": "text", "text": "hi"}]},
                {
                    "role": "assistant",
                    "content": None,
                    "tool_calls": [{"id": "c", "function": {"name": "f", "arguments": "{}"}}],
                },
                {"role": "tool", "content": "r", "tool_call_id": "c"},
            ],
            "stream": False,
            "temperature": 0.5,
            "top_p": 1,
            "max_tokens": 5,
            "seed": 1,
            "stop": ["x"],
            "tools": [{"type": "function", "function": {"name": "f", "parameters": {"type": "object"}}}],
            "tool_choice": "auto",
            "stream_options": {"include_usage": True},
        },
        token="user",
        openai=True,
    ),
    Endpoint(
        "responses",
        "/v1/responses",
        {"model": "fuzz-model", "input": [{"role": "user", "content": "hi"}], "instructions": "x", "stream": False},
        token="user",
        openai=True,
    ),
    Endpoint("chat_threads", "/v1/chat/threads", {"title": "fuzz", "project_id": None}, token="user"),
    Endpoint(
        "create_agent_token",
        "/v1/admin/agent-tokens",
        {
            "role": "pm",
            "user_id": FUZZ_USER_ID,
            "project_id": None,
            "task_id": None,
            "invocation_class": "orchestrator_initiated",
            "ttl_seconds": 600,
        },
        token="admin",
    ),
    # A built-in tool every agent may call; the fuzz hits the body's checks, the arguments' and the tool's.
    Endpoint(
        "mcp_tools_call",
        "/v1/mcp/tools/call",
        {"tool_name": "help.get", "arguments": {"topic": "tools", "path": "gateway"}},
        token="agent",
    ),
    Endpoint(
        "mcp",
        "/mcp",
        {
            "jsonrpc": "2.0",
            "id": 1,
            "method": "tools/call",
            "params": {"name": "help.get", "arguments": {"topic": "tools"}},
        },
        token="agent",
    ),
    Endpoint("register", "/v1/nodes/register", {"psk": "<psk>", "capability": capability("fuzz-register")}),
    Endpoint("capability", "/v1/nodes/capability", capability(NODE_SLUG), token="node"),
    Endpoint(
        "config_ack",
        "/v1/nodes/config",
        {
            "version": 1,
            "node_slug": NODE_SLUG,
            "config_version": "1",
            "ack_at": "2026-01-01T00:00:00Z",
            "status": "applied",
            "error": {"code": "none"},
        },
        token="node",
    ),
]
_EXAMPLE_TASK, _EXAMPLE_JOB = "00000000-0000-4000-8000-00000000000a", "00000000-0000-4000-8000-00000000000b"
RUN_JOB = Endpoint(
    "run_job",
    "/v1/worker/jobs:run",
    {
        "version": 1,
        "task_id": _EXAMPLE_TASK,
        "job_id": _EXAMPLE_JOB,
        "sandbox": {
            "image": "busybox",
            "command": ["echo", "hi"],
            "env": {"A": "b"},
            "timeout_seconds": 5,
            "network_policy": "none",
            "use_inference": False,
            "job_spec_json": "{}",
        },
    },
    token="worker",
)


def with_fresh_ids(body: bytes) -> bytes:
    """A run request with new task and job ids: a repeated job_id is answered from the node's record, not run."""
    for example in (_EXAMPLE_TASK, _EXAMPLE_JOB):
        body = body.replace(example.encode(), str(uuid.uuid4()).encode())
    return body
