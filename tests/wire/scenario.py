"""The scripted requests of each surface, in a fixed order (no cynode imports here).

Each function drives one surface through a :class:`~wire.recording.Recorder`
(``rec``): every endpoint's success answers and its main error answers. Calls
with ``record=False`` only set the stage. ``orch`` / ``worker`` are the
objects of :mod:`wire.targets` for what is not HTTP (users, the dispatcher's
SQL, the node's readiness).
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable
from typing import Any

NODE_SLUG = "wire-node-01"
ALICE_PASSWORD = "alice-password-for-wire-tests"
NO_SUCH_ID = "00000000-0000-4000-8000-000000000000"
REPORTED_AT = "2025-01-01T00:00:00Z"
TOO_LARGE = b"x" * (10 * 1024 * 1024 + 1)  # one byte over the 10 MiB request cap of both services
JSON = "application/json"


def metric_families(body: str) -> str:
    """A Prometheus text body reduced to its sorted ``# HELP`` / ``# TYPE`` lines (values vary by run)."""
    lines = {line for line in body.splitlines() if line.startswith(("# HELP ", "# TYPE "))}
    return "\n".join(sorted(line for line in lines if "_created " not in line)) + "\n"


def capability(worker_url: str, **changes: Any) -> dict[str, Any]:
    cap: dict[str, Any] = {
        "version": 1,
        "reported_at": REPORTED_AT,
        "node": {"node_slug": NODE_SLUG, "name": NODE_SLUG},
        "platform": {"os": "linux", "arch": "amd64"},
        "compute": {"cpu_cores": 4, "ram_mb": 4096},
        "gpu": {"present": False},
        "sandbox": {"supported": True, "max_concurrency": 4},
        "worker_api": {"base_url": worker_url},
    }
    cap.update(changes)
    return cap


def ack(config_version: str, status: str = "applied", **changes: Any) -> dict[str, Any]:
    body = {
        "version": 1,
        "node_slug": NODE_SLUG,
        "config_version": config_version,
        "ack_at": REPORTED_AT,
        "status": status,
    }
    body.update(changes)
    return body


def bound(rec: Any, method: str, path: str, **fixed: Any) -> Callable[..., Any]:
    """``rec`` for one endpoint, its method, path and some keywords (the token) fixed:
    ``send(step, query="", **more)``, the query string (``"?limit=2"``) appended to the path."""

    def send(step: str, query: str = "", **more: Any) -> Any:
        return rec(step, method, path + query, **fixed, **more)

    return send


def login(rec: Any, handle: str, password: str, step: str = "", ip: str = "10.0.0.1") -> dict[str, Any]:
    resp = rec(
        step or f"login {handle}",
        "POST",
        "/v1/auth/login",
        json_body={"handle": handle, "password": password},
        headers={"X-Forwarded-For": ip},
        record=bool(step),
    )
    assert resp.status == 200, resp.text
    return resp.json()


# -- control plane ---------------------------------------------------------------------------


def control_plane(rec: Any, orch: Any, node_url: str) -> None:
    psk, cap = orch.psk, capability(node_url)
    post = "/v1/nodes/register"
    first = rec("register: new node -> 201", "POST", post, json_body={"psk": psk, "capability": cap})
    assert first.status == 201, first.text
    again = rec(
        "register: known node again -> 200, token rotated", "POST", post, json_body={"psk": psk, "capability": cap}
    )
    node_jwt = again.json()["auth"]["node_jwt"]
    rec("register: wrong psk -> 401", "POST", post, json_body={"psk": "wrong-psk", "capability": cap})
    rec(
        "register: capability version 2 -> 400",
        "POST",
        post,
        json_body={"psk": psk, "capability": capability(node_url, version=2)},
    )
    rec(
        "register: no node slug -> 400",
        "POST",
        post,
        json_body={"psk": psk, "capability": capability(node_url, node={"name": "x"})},
    )
    rec("register: no capability -> 400", "POST", post, json_body={"psk": psk})
    rec("register: psk not a string -> 400 (validation)", "POST", post, json_body={"psk": 5, "capability": cap})
    rec("register: malformed JSON -> 400", "POST", post, data='{"psk": ', content_type=JSON)
    rec("register: text/plain -> 415", "POST", post, data="psk", content_type="text/plain")
    rec("register: body over the limit -> 413", "POST", post, data=TOO_LARGE, content_type=JSON)
    rec("register: GET -> 405", "GET", post)

    config = "/v1/nodes/config"
    rec("config: no token -> 401", "GET", config)
    rec("config: not a JWT -> 401", "GET", config, token="not-a-jwt")
    user_token = login(rec, "admin", orch.admin_password)["access_token"]
    rec("config: a user's access token -> 401", "GET", config, token=user_token)
    got = rec("config: GET -> 200", "GET", config, token=node_jwt)
    version = got.json()["config_version"]
    ack_config = bound(rec, "POST", config, token=node_jwt)
    ack_config("config: ack version 2 -> 400", json_body=ack(version, version=2))
    ack_config("config: ack of another slug -> 400", json_body=ack(version, node_slug="someone-else"))
    ack_config("config: ack status unknown -> 400", json_body=ack(version, "maybe"))
    ack_config("config: ack malformed JSON -> 400", data="[", content_type=JSON)
    rec("config: ack without token -> 401", "POST", config, json_body=ack(version))
    ack_config(
        "config: ack failed -> 204",
        json_body=ack(version, "failed", error={"type": "apply", "message": "could not apply"}),
    )
    ack_config("config: ack applied -> 204", json_body=ack(version))
    rec("config: PUT -> 405", "PUT", config, token=node_jwt, json_body=ack(version))

    report = "/v1/nodes/capability"
    report_as_node = bound(rec, "POST", report, token=node_jwt)
    report_as_node("capability: report -> 204", json_body=cap)
    report_as_node(
        "capability: unknown fields kept -> 204", json_body=capability(node_url, future_field={"anything": [1, "two"]})
    )
    report_as_node("capability: version not a number -> 400", json_body=capability(node_url, version="one"))
    report_as_node("capability: malformed JSON -> 400", data="{", content_type=JSON)
    rec("capability: no token -> 401", "POST", report, json_body=cap)
    rec("capability: a user's access token -> 401", "POST", report, token=user_token, json_body=cap)
    rec("readyz: a dispatchable node answers ready -> 200", "GET", "/readyz")


# -- user API gateway --------------------------------------------------------------------------


def make_node_dispatchable(rec: Any, orch: Any, node_url: str) -> None:
    """Register, fetch config and ack ``applied``, unrecorded (the control plane scenario records them)."""
    reg = rec(
        "", "POST", "/v1/nodes/register", json_body={"psk": orch.psk, "capability": capability(node_url)}, record=False
    )
    node_jwt = reg.json()["auth"]["node_jwt"]
    version = rec("", "GET", "/v1/nodes/config", token=node_jwt, record=False).json()["config_version"]
    assert rec("", "POST", "/v1/nodes/config", token=node_jwt, json_body=ack(version), record=False).status == 204


def job_result(job_ids: tuple[str, str], status: str, exit_code: int, stdout: str, stderr: str) -> dict[str, Any]:
    task_id, job_id = job_ids
    return {
        "version": 1,
        "task_id": task_id,
        "job_id": job_id,
        "status": status,
        "exit_code": exit_code,
        "stdout": stdout,
        "stderr": stderr,
        "started_at": "2025-01-01T00:00:01Z",
        "ended_at": "2025-01-01T00:00:02Z",
        "truncated": {"stdout": False, "stderr": False},
    }


def gateway(rec: Any, orch: Any, node_url: str, job_ids: Any) -> None:
    """``job_ids(claimed job) -> (task_id, job_id)``."""
    # -- probes, docs and framework answers
    rec("healthz -> 200", "GET", "/healthz")
    rec("healthz HEAD -> 200", "HEAD", "/healthz")
    rec("readyz: no node -> 503", "GET", "/readyz")
    rec("metrics -> 200 (families only)", "GET", "/metrics", body_filter=metric_families)
    rec("docs -> 200", "GET", "/docs")
    rec("docs asset -> 200 (size and digest)", "GET", "/docs/static/swagger-ui.css")
    rec("docs asset missing -> 404", "GET", "/docs/static/no-such-file.js")
    rec("unknown route -> 404", "GET", "/v1/no-such-thing")
    rec("trailing slash -> 404", "GET", "/v1/tasks/")
    rec("GET on a POST route -> 405", "GET", "/v1/auth/login")
    rec("OPTIONS -> 200 with Allow", "OPTIONS", "/v1/tasks")

    # -- login
    path = "/v1/auth/login"
    admin = login(rec, "admin", orch.admin_password, "login: admin -> 200")
    xff = {"X-Forwarded-For": "10.0.0.2"}
    rec("login: wrong password -> 401", "POST", path, json_body={"handle": "admin", "password": "wrong"}, headers=xff)
    rec("login: unknown user -> 401", "POST", path, json_body={"handle": "nobody", "password": "pw"}, headers=xff)
    rec("login: no password -> 400", "POST", path, json_body={"handle": "admin"}, headers=xff)
    rec("login: no body -> 400", "POST", path, headers=xff)
    rec(
        "login: handle not a string -> 400 (validation)",
        "POST",
        path,
        json_body={"handle": 1, "password": "pw"},
        headers=xff,
    )
    rec("login: malformed JSON -> 400", "POST", path, data="{", content_type=JSON, headers=xff)
    rec("login: text/plain -> 415", "POST", path, data="admin", content_type="text/plain", headers=xff)
    rec("login: body over the limit -> 413", "POST", path, data=TOO_LARGE, content_type=JSON, headers=xff)
    limited = {"X-Forwarded-For": "10.9.9.9"}
    for _ in range(60):  # the per-address limit (60 a minute) counts even malformed attempts
        rec("", "POST", path, data="{", content_type=JSON, headers=limited, record=False)
    rec(
        "login: over the per-address rate -> 429",
        "POST",
        path,
        json_body={"handle": "admin", "password": "x"},
        headers=limited,
        volatile=["Retry-After"],
    )

    # -- users
    me = "/v1/users/me"
    rec("me: admin -> 200", "GET", me, token=admin["access_token"])
    rec("me: no token -> 401", "GET", me)
    rec("me: not a JWT -> 401", "GET", me, token="not-a-jwt")
    rec("me: refresh token as access token -> 401", "GET", me, token=admin["refresh_token"])
    rec("me: Basic scheme -> 401", "GET", me, headers={"Authorization": "Basic YWRtaW46YWRtaW4="})
    orch.add_user("alice", ALICE_PASSWORD)
    alice = login(rec, "alice", ALICE_PASSWORD, "login: alice -> 200", ip="10.0.0.3")
    alice_id = rec("me: alice -> 200", "GET", me, token=alice["access_token"]).json()["id"]

    # -- tasks: create
    tasks = "/v1/tasks"
    tok = admin["access_token"]
    create = bound(rec, "POST", tasks, token=tok)
    t1 = create(
        "create: commands task with a name -> 201",
        json_body={"prompt": "echo hello", "input_mode": "commands", "task_name": "hello-task"},
    ).json()
    t2 = create("create: prompt task (default mode) -> 201", json_body={"prompt": "Say hi"}).json()
    t3 = create(
        "create: with attachments and the same name -> 201",
        json_body={
            "prompt": "ls",
            "input_mode": "script",
            "task_name": "hello-task",
            # ONE attachment after strip and de-duplication: reads list several
            # in random order (same created_at, then random id).
            "attachments": [" a.txt ", "a.txt"],
        },
    ).json()
    t4 = create(
        "create: commands with inference -> 201",
        json_body={"prompt": "sleep 1", "input_mode": "commands", "use_inference": True},
    ).json()
    create("create: no prompt -> 400", json_body={"input_mode": "commands"})
    create("create: prompt not a string -> 400 (validation)", json_body={"prompt": 5})
    create("create: bad project_id -> 400", json_body={"prompt": "x", "project_id": "nope"})
    create("create: unknown project_id -> 400", json_body={"prompt": "x", "project_id": NO_SUCH_ID})
    create("create: malformed JSON -> 400", data='{"prompt": "x"', content_type=JSON)
    create("create: JSON array -> 400", data='["x"]', content_type=JSON)
    create("create: text/plain -> 415", data="echo hi", content_type="text/plain")
    create("create: body over the limit -> 413", data=TOO_LARGE, content_type=JSON)
    rec("create: no token -> 401", "POST", tasks, json_body={"prompt": "x"})
    create("create: NUL character -> 400", json_body={"prompt": "a\u0000b"})

    # -- tasks: list and read (all four queued)
    list_tasks = bound(rec, "GET", tasks, token=tok)
    list_tasks("list -> 200")
    list_tasks("list: limit 2 -> next_offset/next_cursor", "?limit=2")
    list_tasks("list: cursor 2", "?limit=2&cursor=2")
    list_tasks("list: status queued", "?status=queued")
    list_tasks("list: bad limit -> 400", "?limit=abc")
    list_tasks("list: limit 0 -> 400", "?limit=0")
    list_tasks("list: unknown status -> 400", "?status=sleeping")
    rec("list: alice sees none of admin's", "GET", tasks, token=alice["access_token"])
    rec("list: no token -> 401", "GET", tasks)
    one = f"{tasks}/{t1['id']}"
    logs_of_one = bound(rec, "GET", one + "/logs", token=tok)
    rec("get: by id -> 200", "GET", one, token=tok)
    rec("get: by name -> 200 (the newest of that name)", "GET", tasks + "/hello-task", token=tok)
    rec("get: unknown id -> 404", "GET", f"{tasks}/{NO_SUCH_ID}", token=tok)
    rec("get: unknown name -> 404", "GET", tasks + "/no-such-task", token=tok)
    rec("get: another user's task -> 404", "GET", one, token=alice["access_token"])
    rec("get: no token -> 401", "GET", one)
    rec("get: POST -> 405", "POST", one, token=tok, json_body={})
    rec("result: queued -> 200", "GET", one + "/result", token=tok)
    logs_of_one("logs: queued -> 200, empty")

    # -- dispatch, played with the dispatcher's SQL: t1 completes, t2 fails, t3 is canceled while running
    make_node_dispatchable(rec, orch, node_url)
    job1 = orch.claim_job()
    rec("get: running -> 200", "GET", one, token=tok)
    rec("result: running -> 200", "GET", one + "/result", token=tok)
    orch.store_result(job1, job_result(job_ids(job1), "completed", 0, "hello\n", ""))
    rec("get: completed -> 200", "GET", one, token=tok)
    rec("result: completed -> 200", "GET", one + "/result", token=tok)
    logs_of_one("logs: completed, all -> 200")
    logs_of_one("logs: stdout only", "?stream=stdout")
    logs_of_one("logs: stderr only", "?stream=stderr")
    logs_of_one("logs: unknown stream", "?stream=both")
    rec("logs: unknown id -> 404", "GET", f"{tasks}/{NO_SUCH_ID}/logs", token=tok)
    rec("result: unknown id -> 404", "GET", f"{tasks}/{NO_SUCH_ID}/result", token=tok)
    rec("result: no token -> 401", "GET", one + "/result")
    job2 = orch.claim_job()
    orch.store_result(job2, job_result(job_ids(job2), "failed", 3, 'partial "out"\n', "boom: caf\u00e9 \\ \t\n"))
    two = f"{tasks}/{t2['id']}"
    rec("result: failed, with escapes -> 200", "GET", two + "/result", token=tok)
    rec("logs: failed -> 200", "GET", two + "/logs", token=tok)
    orch.claim_job()
    three = f"{tasks}/{t3['id']}"
    rec("cancel: running task -> 200", "POST", three + "/cancel", token=tok)
    rec("result: canceled -> 200", "GET", three + "/result", token=tok)
    four = f"{tasks}/{t4['id']}"
    rec("cancel: queued task -> 200", "POST", four + "/cancel", token=tok)
    rec("cancel: again -> 200", "POST", four + "/cancel", token=tok)
    rec("cancel: finished task -> 200", "POST", one + "/cancel", token=tok)
    rec("cancel: unknown id -> 404", "POST", f"{tasks}/{NO_SUCH_ID}/cancel", token=tok)
    rec("cancel: another user's task -> 404", "POST", two + "/cancel", token=alice["access_token"])
    rec("cancel: no token -> 401", "POST", two + "/cancel")
    rec("cancel: GET -> 405", "GET", two + "/cancel", token=tok)
    list_tasks("list: after dispatch -> 200")
    list_tasks("list: status canceled", "?status=canceled")

    # -- tasks: planning state (a draft has no job until it is made ready)
    draft_body = {"prompt": "echo later", "input_mode": "commands", "planning_state": "draft"}
    later = f"{tasks}/{create('create: draft -> 201', json_body=draft_body).json()['id']}"
    create("create: unknown planning_state -> 400", json_body={"prompt": "x", "planning_state": "paused"})
    rec("result: draft -> 200, no jobs", "GET", later + "/result", token=tok)
    rec("ready: another user's task -> 404", "POST", later + "/ready", token=alice["access_token"])
    rec("ready: no token -> 401", "POST", later + "/ready")
    rec("ready: draft -> 200", "POST", later + "/ready", token=tok)
    rec("ready: again -> 200, unchanged", "POST", later + "/ready", token=tok)
    rec("ready: unknown id -> 404", "POST", f"{tasks}/{NO_SUCH_ID}/ready", token=tok)
    dropped = f"{tasks}/{create('', json_body=draft_body, record=False).json()['id']}"
    rec("", "POST", dropped + "/cancel", token=tok, record=False)
    rec("ready: canceled draft -> 409", "POST", dropped + "/ready", token=tok)

    # -- admin: revoke sessions
    revoke = f"/v1/users/{alice_id}/revoke_sessions"
    rec("revoke: by a non-admin -> 403", "POST", revoke, token=alice["access_token"])
    rec("revoke: not a user id -> 400", "POST", "/v1/users/not-a-uuid/revoke_sessions", token=tok)
    rec("revoke: unknown user -> 404", "POST", f"/v1/users/{NO_SUCH_ID}/revoke_sessions", token=tok)
    rec("revoke: no token -> 401", "POST", revoke)
    rec("revoke: alice's sessions -> 204", "POST", revoke, token=tok)
    rec("me: alice after revoke -> 401", "GET", me, token=alice["access_token"])

    # -- refresh and logout (a second admin session, so the first one stays usable above)
    refresh, logout = "/v1/auth/refresh", "/v1/auth/logout"
    second = login(rec, "admin", orch.admin_password, "login: admin again -> 200", ip="10.0.0.4")
    pair = rec(
        "refresh -> 200, a new pair", "POST", refresh, json_body={"refresh_token": second["refresh_token"]}
    ).json()
    rec("refresh: no token -> 400", "POST", refresh, json_body={})
    rec("refresh: access token -> 401", "POST", refresh, json_body={"refresh_token": pair["access_token"]})
    rec("refresh: not a JWT -> 401", "POST", refresh, json_body={"refresh_token": "garbage"})
    rec("refresh: malformed JSON -> 400", "POST", refresh, data="{", content_type=JSON)
    rec("refresh: text/plain -> 415", "POST", refresh, data="x", content_type="text/plain")
    rec("logout: no token -> 401", "POST", logout)
    rec("logout: malformed JSON -> 400", "POST", logout, token=pair["access_token"], data="{", content_type=JSON)
    rec("logout -> 204", "POST", logout, token=pair["access_token"], json_body={"refresh_token": pair["refresh_token"]})
    rec("me: after logout -> 401", "GET", me, token=pair["access_token"])
    rec("refresh: logged-out token -> 401", "POST", refresh, json_body={"refresh_token": pair["refresh_token"]})
    rec("refresh: rotated token replayed -> 401", "POST", refresh, json_body={"refresh_token": second["refresh_token"]})
    rec("logout: without body -> 204", "POST", logout, token=tok)
    api_keys(rec, orch)


def api_keys(rec: Any, orch: Any) -> None:
    """Personal API keys, on sessions of their own (the ones above have ended)."""
    admin = login(rec, "admin", orch.admin_password, ip="10.0.0.5")["access_token"]
    alice = login(rec, "alice", ALICE_PASSWORD, ip="10.0.0.6")["access_token"]
    keys = "/v1/auth/api-keys"
    create = bound(rec, "POST", keys, token=admin)
    made = create("api-keys: create -> 201", json_body={"name": "wire key"}).json()
    create("api-keys: create expiring in 30 days -> 201", json_body={"name": "expiring", "expires_in_days": 30})
    create("api-keys: no name -> 400", json_body={})
    create("api-keys: name over 100 characters -> 400", json_body={"name": "x" * 101})
    create("api-keys: NUL in the name -> 400", json_body={"name": "a\u0000b"})
    create("api-keys: expires_in_days 0 -> 400", json_body={"name": "k", "expires_in_days": 0})
    create("api-keys: expires_in_days a string -> 400 (validation)", json_body={"name": "k", "expires_in_days": "30"})
    rec("api-keys: create without token -> 401", "POST", keys, json_body={"name": "k"})
    rec("api-keys: list -> 200", "GET", keys, token=admin)
    key, one = made["key"], f"{keys}/{made['id']}"
    rec("me: with an API key -> 200", "GET", "/v1/users/me", token=key)
    rec("list: with an API key -> 200", "GET", "/v1/tasks", token=key)
    rec("api-keys: create with an API key -> 403", "POST", keys, token=key, json_body={"name": "successor"})
    rec("api-keys: list with an API key -> 403", "GET", keys, token=key)
    rec("logout: with an API key -> 403", "POST", "/v1/auth/logout", token=key)
    rec("api-keys: another user's key -> 404", "DELETE", one, token=alice)
    rec("api-keys: unknown id -> 404", "DELETE", f"{keys}/{NO_SUCH_ID}", token=admin)
    rec("api-keys: revoke -> 204", "DELETE", one, token=admin)
    rec("api-keys: revoke again -> 204", "DELETE", one, token=admin)
    rec("me: with a revoked API key -> 401", "GET", "/v1/users/me", token=key)
    rec("me: a malformed API key -> 401", "GET", "/v1/users/me", token="cyk_bad")
    rec("api-keys: list after revoke -> 200", "GET", keys, token=admin)


# -- the OpenAPI document ------------------------------------------------------------------


def openapi(rec: Any) -> None:
    rec("openapi.json -> 200 (full text)", "GET", "/openapi.json")


# -- a node's Worker API ---------------------------------------------------------------------


def run_body(command: list[str] | None = None, **sandbox: Any) -> dict[str, Any]:
    sandbox.setdefault("command", command or ["sh", "-c", "echo hello"])
    return {"version": 1, "task_id": str(uuid.uuid4()), "job_id": str(uuid.uuid4()), "sandbox": sandbox}


def worker_api(rec: Any, worker: Any) -> None:
    run, tok = "/v1/worker/jobs:run", worker.token
    run_job = bound(rec, "POST", run, token=tok)
    rec("readyz: starting -> 503", "GET", "/readyz")
    worker.mark_ready()
    rec("readyz -> 200", "GET", "/readyz")
    rec("healthz -> 200", "GET", "/healthz")
    rec("metrics -> 200 (families only)", "GET", "/metrics", body_filter=metric_families)

    hello = run_body(["sh", "-c", 'echo "hello $GREETING"; echo "job $CYNODE_JOB_ID"'], env={"GREETING": "wire"})
    run_job("run: completed -> 200", json_body=hello)
    run_job("run: same job again -> 200, the stored result", json_body=hello)
    run_job("run: non-zero exit -> 200, failed", json_body=run_body(["sh", "-c", "echo out; echo err >&2; exit 3"]))
    run_job(
        "run: output needing escapes -> 200", json_body=run_body(["printf", 'caf\u00e9 "q" \\\\ \\t \\001 \u2603\\n'])
    )
    run_job("run: timeout -> 200, timeout", json_body=run_body(["sleep", "30"], timeout_seconds=1))
    run_job("run: use_inference without a backend -> 200, note", json_body=run_body(["true"], use_inference=True))

    rec("run: no token -> 401", "POST", run, json_body=run_body())
    rec("run: wrong token -> 401", "POST", run, token="wrong", json_body=run_body())
    rec("run: lower-case scheme -> 401", "POST", run, headers={"Authorization": f"bearer {tok}"}, json_body=run_body())
    run_job("run: malformed JSON -> 400", data="{", content_type=JSON)
    run_job("run: JSON array -> 400", data="[]", content_type=JSON)
    run_job("run: no command -> 400", json_body={**run_body(), "sandbox": {"image": "", "command": []}})
    run_job("run: version 2 -> 400", json_body={**run_body(), "version": 2})
    run_job("run: no ids -> 400", json_body={"version": 1, "sandbox": {"command": ["true"]}})
    run_job("run: ids not UUIDs -> 400", json_body={**run_body(), "task_id": "t-1", "job_id": "j-1"})
    run_job("run: timeout_seconds a string -> 400", json_body=run_body(["true"], timeout_seconds="1"))
    run_job("run: body over the limit -> 413", data=TOO_LARGE, content_type=JSON)
    rec("run: GET -> 405", "GET", run, token=tok)
    rec("unknown route -> 404", "GET", "/v1/worker/jobs", token=tok)

    # -- cancel: the one slot busy with a sleeping job, a second job meets 503, the cancel stops the first
    sleeper = run_body(["sh", "-c", "touch /workspace/started; exec sleep 60"])
    finish = rec.background(
        "run: canceled while running -> 200, failed with the note", "POST", run, token=tok, json_body=sleeper
    )
    started = worker.workspace_root / sleeper["job_id"] / "started"
    deadline = time.monotonic() + 60
    while not started.exists():  # its container runs: the cancel will kill it (not stop it before the start)
        assert time.monotonic() < deadline, "the sleeping job never started"
        time.sleep(0.05)
    run_job("run: no free slot -> 503", json_body=run_body())
    cancel = f"/v1/worker/jobs/{sleeper['job_id']}:cancel"
    rec("cancel: running job -> 200, canceled", "POST", cancel, token=tok)
    finish()
    rec("cancel: canceled job again -> 200, canceled", "POST", cancel, token=tok)
    rec("cancel: finished job -> 200, not canceled", "POST", f"/v1/worker/jobs/{hello['job_id']}:cancel", token=tok)
    rec("cancel: unknown job -> 404", "POST", f"/v1/worker/jobs/{NO_SUCH_ID}:cancel", token=tok)
    rec("cancel: not a UUID -> 400", "POST", "/v1/worker/jobs/not-a-uuid:cancel", token=tok)
    rec("cancel: no token -> 401", "POST", cancel)
    rec("cancel: GET -> 405", "GET", cancel, token=tok)
