"""A sandbox agent's tools end to end: the dispatcher's job token, the node's per-job MCP socket, the gateway's checks.

Real processes (an orchestrator on PostgreSQL, a node agent on Podman) and
a real sandbox: bob's sandbox-agent task runs direct steps (``write_file``
puts a Python script in the workspace, ``run_command`` runs it), and the
script, inside the hardened container, calls the MCP gateway through
``/run/cynode/mcp-proxy.sock`` (mcp_contract.md 2.3). It may use the
sandbox role's tools; it cannot read the admin's task (nor its own: task
tools are not on the sandbox allowlist); every call is audited under bob
and the ``sandbox`` role; the token never enters the container and is
revoked once the task ended.
"""

from __future__ import annotations

import json

from harness.api import ApiClient
from harness.orchestrator import USER_PASSWORD, create_users, rows

from cynode_core.orchestrator.db import Database

# Runs in the sandbox: each call through the socket, and what the sandbox can see of its credential.
PROBE = r"""
import http.client, json, os, socket, sys
class Conn(http.client.HTTPConnection):
    def connect(self):
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.connect("/run/cynode/mcp-proxy.sock")
def call(method, path, body=None):
    conn = Conn("mcp", timeout=30)
    conn.request(method, path, body=json.dumps(body) if body is not None else None,
                 headers={"Content-Type": "application/json"})
    answer = conn.getresponse()
    return {"status": answer.status, "body": answer.read().decode()}
own = json.load(open("/job/job.json"))["task_id"]
report = {
    "help": call("POST", "/v1/mcp/tools/call", {"tool_name": "help.list", "arguments": {}}),
    "other_task": call("POST", "/v1/mcp/tools/call", {"tool_name": "task.get", "arguments": {"task_id": sys.argv[1]}}),
    "own_task": call("POST", "/v1/mcp/tools/call", {"tool_name": "task.get", "arguments": {"task_id": own}}),
    "other_path": call("POST", "/v1/tasks", {"prompt": "escape"}),
    "sockets": sorted(os.listdir("/run/cynode")),
    "token_in_env": any("cyat_" in value for value in os.environ.values()),
}
print(json.dumps(report))
"""


def test_a_sandbox_agent_reaches_its_tools_only_through_its_socket_and_cannot_touch_another_users_task(
    cluster,  # type: ignore[no-untyped-def]
) -> None:
    orch = cluster.orchestrator().start().wait_healthy()
    cluster.node("node-01", orch).start().wait_ready()
    admin = cluster.admin(orch)
    db = Database(cluster.database_url)
    try:
        create_users(db, "bob")
        admins_task = admin.create_command("echo the admin task")
        bob = ApiClient(orch.gateway)
        bob.login("bob", USER_PASSWORD, expect=200)
        steps = [
            {"type": "write_file", "args": {"path": "probe.py", "content": PROBE}},
            {"type": "run_command", "args": {"argv": ["python3", "probe.py", admins_task]}},
        ]
        created = bob.request(
            "POST", "/v1/tasks", json={"prompt": "probe the tools", "use_sba": True, "sba_steps": steps}
        )
        assert created.status_code == 201, created.text
        probe_task = created.json()["id"]

        result = bob.wait_result(probe_task, timeout=120)
        stored = json.loads(result["jobs"][0]["result"])
        assert result["status"] == "completed", stored
        step = stored["sba_result"]["steps"][1]
        assert step["status"] == "success", step
        report = json.loads(step["output"])

        assert report["help"]["status"] == 200, report["help"]
        names = [topic["topic"] for topic in json.loads(report["help"]["body"])["topics"]]
        assert "help.list" in names and not any(name.startswith("task.") for name in names), names
        for key in ("other_task", "own_task"):
            denied = json.loads(report[key]["body"])
            assert report[key]["status"] == 403 and denied["error_type"] == "agent_allowlist_denied", report[key]
        assert report["other_path"]["status"] == 403
        assert report["other_path"]["body"] == "forbidden: not an allowed MCP endpoint"
        assert report["sockets"] == ["mcp-proxy.sock"]
        assert report["token_in_env"] is False

        bob_id = rows(db, "SELECT id FROM users WHERE handle = 'bob'")[0]["id"]
        audit = rows(
            db,
            "SELECT tool_name, decision, status, error_type, user_id, role_names, task_id FROM mcp_tool_call_audit_log "
            "WHERE user_id = :u ORDER BY created_at",
            u=bob_id,
        )
        assert [(r["tool_name"], r["decision"], r["error_type"]) for r in audit] == [
            ("help.list", "allow", None),
            ("task.get", "deny", "agent_allowlist_denied"),
            ("task.get", "deny", "agent_allowlist_denied"),
        ]
        assert all(r["role_names"] == ["sandbox"] and str(r["task_id"]) == probe_task for r in audit)
        tokens = rows(
            db,
            "SELECT role, user_id, task_id, job_id, issued_by, revoked_at, revoked_reason FROM agent_tokens "
            "WHERE task_id = :t",
            t=probe_task,
        )
        assert len(tokens) == 1 and tokens[0]["role"] == "sandbox" and tokens[0]["issued_by"] == "dispatcher"
        assert tokens[0]["user_id"] == bob_id and str(tokens[0]["job_id"]) == result["jobs"][0]["id"]
        assert tokens[0]["revoked_at"] is not None and tokens[0]["revoked_reason"] == "job_ended"
        # Nothing of the admin's task was touched or read out.
        assert admin.wait_result(admins_task)["status"] == "completed"
    finally:
        db.dispose()
