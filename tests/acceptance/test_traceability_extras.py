"""Steps of features/orchestrator/traceability_extras.feature.

Small proofs of Phase 1 requirements no other scenario is tagged with (see
scripts/trace_requirements.py and docs/trace_exceptions.txt). Most run the
orchestrator app in this process on the test's own PostgreSQL database; the
header-size and ``cynode db upgrade`` scenarios run the real ``cynode``
command.
"""

from __future__ import annotations

import contextlib
import json
import re
import secrets
import socket
import uuid
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import psycopg
import pytest
from acceptance.conftest import Ctx, assert_problem
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from harness.api import ApiClient
from harness.nodes import NodeHandle, ack, capability, fetch_config, register
from harness.orchestrator import USER_PASSWORD, OrchestratorUnderTest, create_users, make_settings, open_orchestrator
from harness.processes import CynodeProcess, Orchestrator, clean_environ, orchestrator_environ
from pytest_bdd import given, parsers, scenarios, then, when
from sqlalchemy import inspect, select
from sqlalchemy.engine import make_url

import cynode_core.orchestrator.models  # noqa: F401  (registers every table on Base.metadata)
from cynode_core.contract.job import RunJobRequest, payload_from_storage
from cynode_core.orchestrator import migrate
from cynode_core.orchestrator.db import Base, make_engine
from cynode_core.orchestrator.models import Job, Task, User
from cynode_core.orchestrator.services import tasks as task_service
from cynode_core.orchestrator.services.accounts import SYSTEM_HANDLE
from cynode_core.orchestrator.settings import OrchestratorSettings

scenarios("orchestrator/traceability_extras.feature")

# Routes outside /v1/: the probes (health, readiness, metrics) and the API description.
# /mcp: the MCP streamable HTTP endpoint keeps the path MCP clients expect (mcp_contract.md 2.2).
UNVERSIONED = {"/healthz", "/readyz", "/metrics", "/openapi.json", "/mcp"}
DOCS_PREFIX = "/docs"
PROVIDER_KEYS = {
    "OPENAI_API_KEY": "sk-test-" + secrets.token_hex(16),
    "ANTHROPIC_API_KEY": "sk-ant-test-" + secrets.token_hex(16),
    "GEMINI_API_KEY": "gm-test-" + secrets.token_hex(16),
}
SECRET_NAME = re.compile(r"(API_?KEY|TOKEN|SECRET|PASSWORD|PSK|JWT)", re.IGNORECASE)


@pytest.fixture
def opened() -> Iterator[contextlib.ExitStack]:
    """Where a step registers the orchestrators it opened itself; all are closed at the end of the scenario."""
    with contextlib.ExitStack() as stack:
        yield stack


def _open(opened: contextlib.ExitStack, settings: OrchestratorSettings, secrets_: Any = None) -> OrchestratorUnderTest:
    return opened.enter_context(contextlib.closing(open_orchestrator(settings, secrets_)))


def _media_type(resp: Any) -> str:
    """``Content-Type`` without its parameters."""
    return str(resp.headers["Content-Type"]).split(";", 1)[0].strip()


# -- shared ------------------------------------------------------------------


@given("the orchestrator app on a migrated database")
def app_on_migrated_db(ctx: Ctx, orchestrator: Any, api: ApiClient) -> None:
    ctx["orch"], ctx["api"] = orchestrator, api
    assert api.get("/healthz").status_code == 200


# -- REQ-STANDS-0131: /v1/ prefix --------------------------------------------


@when("I list the routes of the gateway and the control plane")
def list_routes(ctx: Ctx) -> None:
    ctx["routes"] = sorted({rule.rule for rule in ctx["orch"].app.url_map.iter_rules()})


@then(
    'every route other than "/healthz", "/readyz", "/metrics", "/openapi.json", "/mcp" and the "/docs" pages '
    'starts with "/v1/"'
)
def routes_versioned(ctx: Ctx) -> None:
    stray = [
        r
        for r in ctx["routes"]
        if not r.startswith("/v1/")
        and r not in UNVERSIONED
        and not r.startswith(DOCS_PREFIX)
        and r != "/static/<path:filename>"
    ]
    assert stray == [], stray


@then("the task, auth, user and node routes are among them")
def known_routes(ctx: Ctx) -> None:
    for route in (
        "/v1/tasks",
        "/v1/auth/login",
        "/v1/auth/refresh",
        "/v1/users/me",
        "/v1/nodes/register",
        "/v1/nodes/config",
        "/v1/nodes/capability",
    ):
        assert route in ctx["routes"], route


# -- REQ-STANDS-0105: JSON both ways ------------------------------------------


@when(parsers.parse('I log in as "{handle}" with a JSON body'))
def login_json(ctx: Ctx, handle: str) -> None:
    ctx["resp"] = ctx["api"].login(handle, ctx["orch"].secrets.admin_password)
    if ctx["resp"].status_code == 200:
        ctx["token"] = ctx["resp"].json()["access_token"]


@then(parsers.parse('the answer is 200 with "Content-Type" "{content_type}"'))
def answer_content_type(ctx: Ctx, content_type: str) -> None:
    assert ctx.resp.status_code == 200, ctx.resp.text
    assert _media_type(ctx.resp) == content_type


@then(parsers.parse('GET /v1/users/me and GET /v1/tasks answer with "Content-Type" "{content_type}"'))
def reads_are_json(ctx: Ctx, content_type: str) -> None:
    for path in ("/v1/users/me", "/v1/tasks"):
        resp = ctx["api"].get(path, token=ctx["token"])
        assert resp.status_code == 200 and _media_type(resp) == content_type, (path, resp.headers)
        resp.json()


@then(parsers.parse('a task created with a "{content_type}" body gets a 415 problem response and creates no task'))
def task_not_json(ctx: Ctx, content_type: str) -> None:
    body = json.dumps({"prompt": "echo hi", "input_mode": "commands"})
    resp = ctx["api"].post("/v1/tasks", data=body, headers={"Content-Type": content_type}, token=ctx["token"])
    assert_problem(resp, 415)
    with ctx["orch"].db.session() as session:
        assert session.scalar(select(Task.id)) is None


@then(parsers.parse('a node registration with a "{content_type}" body gets a 415 problem response'))
def register_not_json(ctx: Ctx, content_type: str) -> None:
    resp = ctx["api"].post(
        "/v1/nodes/register", data=f"psk={ctx['orch'].secrets.psk}", headers={"Content-Type": content_type}
    )
    assert_problem(resp, 415)


# -- REQ-STANDS-0103: header size cap of the real server -----------------------


@given("`cynode orchestrator serve` runs on a migrated database")
def serve_process(
    ctx: Ctx, tmp_path: Path, database_url: str, test_secrets: Any, processes: list[CynodeProcess]
) -> None:
    env = orchestrator_environ(database_url, tmp_path / "serve-home", test_secrets)
    proc = Orchestrator(env, tmp_path, "serve", dispatcher_enabled="false")
    processes.append(proc)
    proc.start().wait_healthy()
    ctx["port"] = proc.gateway_port


@when("I send GET /healthz with a 1 MiB header")
def huge_header(ctx: Ctx) -> None:
    request = (
        f"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Padding: {'a' * (1024 * 1024)}\r\nConnection: close\r\n\r\n"
    ).encode()
    with socket.create_connection(("127.0.0.1", ctx["port"]), timeout=10) as sock:
        try:
            sock.sendall(request)
        except (BrokenPipeError, ConnectionResetError):
            pass  # the server may answer and close before reading it all
        answer = b""
        try:
            while chunk := sock.recv(65536):
                answer += chunk
        except ConnectionResetError:
            pass
    ctx["raw_answer"] = answer


@then("the server answers 431 with one response and closes the connection")
def header_refused(ctx: Ctx) -> None:
    status_line = ctx["raw_answer"].split(b"\r\n", 1)[0].decode("latin-1")
    match = re.match(r"HTTP/1\.[01] (\d{3})", status_line)
    assert match, ctx["raw_answer"][:200]
    assert match.group(1) == "431", status_line
    assert ctx["raw_answer"].count(b"HTTP/1.") == 1


@then('GET /healthz with ordinary headers still answers 200 "ok"')
def still_healthy(ctx: Ctx) -> None:
    resp = ApiClient(f"http://127.0.0.1:{ctx['port']}").get("/healthz")
    assert resp.status_code == 200 and resp.text.strip() == "ok"


# -- REQ-IDENTY-0113: initial admin ------------------------------------------


@given("an empty database and the bootstrap admin password P1")
def empty_db_p1(ctx: Ctx, pg: Any, tmp_path: Path, test_secrets: Any) -> Iterator[None]:
    name = pg.create_database()
    ctx["empty_url"] = pg.url_for(name)
    ctx["p1"], ctx["p2"] = "first-" + secrets.token_urlsafe(9), "second-" + secrets.token_urlsafe(9)
    ctx["settings"] = make_settings(
        tmp_path / "fresh-home", ctx["empty_url"], replace(test_secrets, admin_password=ctx["p1"])
    )
    yield
    pg.drop_database(name)


@when("the orchestrator opens the database for the first time")
def first_open(ctx: Ctx, opened: contextlib.ExitStack) -> None:
    ctx["fresh"] = _open(opened, ctx["settings"])


def _admins(orch: Any) -> list[User]:
    with orch.db.session() as session:
        return list(session.scalars(select(User).where(User.handle == "admin")))


@then('a users row "admin" exists and "admin" logs in with P1')
def admin_logs_in(ctx: Ctx) -> None:
    assert len(_admins(ctx["fresh"])) == 1
    assert ApiClient.in_process(ctx["fresh"].app).login("admin", ctx["p1"]).status_code == 200


@when("the orchestrator opens it again with the bootstrap admin password P2")
def second_open(ctx: Ctx, opened: contextlib.ExitStack) -> None:
    ctx["fresh"].close()  # closing it again at the end is harmless: its engine is only disposed once more
    ctx["fresh"] = _open(opened, replace(ctx["settings"], admin_password=ctx["p2"]))


@then('there is still exactly one users row "admin" and it logs in with P1 but not with P2')
def admin_unchanged(ctx: Ctx) -> None:
    assert len(_admins(ctx["fresh"])) == 1
    api = ApiClient.in_process(ctx["fresh"].app)
    assert api.login("admin", ctx["p1"], ip="10.9.0.1").status_code == 200
    assert api.login("admin", ctx["p2"], ip="10.9.0.2").status_code == 401


# -- REQ-PROJCT-0100, 0102, 0103, 0104: default projects -------------------------


@given(parsers.parse('users "{first}" and "{second}" exist'))
def two_users(ctx: Ctx, first: str, second: str) -> None:
    create_users(ctx["orch"].db, first, second)


def _create_task_as(api: ApiClient, handle: str, prompt: str) -> str:
    resp = api.login(handle, USER_PASSWORD, ip=f"10.8.{uuid.uuid4().int % 250}.1")
    assert resp.status_code == 200, resp.text
    created = api.post("/v1/tasks", json={"prompt": prompt, "input_mode": "commands"}, token=api.token)
    assert created.status_code == 201, created.text
    return str(created.json()["task_id"])


def _project_of(orch: Any, task_id: str) -> uuid.UUID:
    with orch.db.session() as session:
        task = session.get(Task, uuid.UUID(task_id))
        assert task is not None and task.project_id is not None
        return task.project_id


@when(parsers.parse('"{first}" creates two tasks and "{second}" one task, none naming a project'))
def create_without_project(ctx: Ctx, first: str, second: str) -> None:
    api = ctx["api"]
    ctx["a_tasks"] = [_create_task_as(api, first, "echo a1"), _create_task_as(api, first, "echo a2")]
    ctx["b_task"] = _create_task_as(api, second, "echo b1")


@then("both of alice's tasks have the same project_id, and bob's task has another one")
def same_default_project(ctx: Ctx) -> None:
    orch = ctx["orch"]
    a1, a2 = (_project_of(orch, t) for t in ctx["a_tasks"])
    b = _project_of(orch, ctx["b_task"])
    assert a1 == a2 and b != a1
    ctx["projects"] = {"alice": a1, "bob": b}


@then("each of those projects has a non-empty display title")
def projects_titled(ctx: Ctx) -> None:
    from cynode_core.orchestrator.models import Project

    with ctx["orch"].db.session() as session:
        for project_id in ctx["projects"].values():
            project = session.get(Project, project_id)
            assert project is not None and project.display_name.strip()


@then(
    "asking again for the default project of alice, of bob and of the reserved system user gives the same id each time"
)
def default_project_deterministic(ctx: Ctx) -> None:
    with ctx["orch"].db.session() as session:
        ids = {h: session.scalar(select(User.id).where(User.handle == h)) for h in ("alice", "bob", SYSTEM_HANDLE)}
        for handle in ("alice", "bob"):
            assert task_service.default_project(session, ids[handle]) == ctx["projects"][handle]
        first = task_service.default_project(session, ids[SYSTEM_HANDLE])
    with ctx["orch"].db.session() as session:
        assert task_service.default_project(session, ids[SYSTEM_HANDLE]) == first
    assert first not in ctx["projects"].values()


@then("after the orchestrator is reopened alice's next task still lands in the same project")
def stable_after_reopen(ctx: Ctx, opened: contextlib.ExitStack) -> None:
    again = _open(opened, ctx["orch"].settings)
    task_id = _create_task_as(ApiClient.in_process(again.app), "alice", "echo a3")
    assert _project_of(again, task_id) == ctx["projects"]["alice"]


# The MCP audit log has no foreign keys (mcp_contract.md 8, decision 6): a call that is refused, or whose
# effect was rolled back, is recorded with the ids it named, which may name nothing.
NO_FOREIGN_KEYS = {"mcp_tool_call_audit_log"}


@then("every project_id column of the schema is a foreign key to projects.id")
def project_fks(ctx: Ctx) -> None:
    inspector = inspect(ctx["orch"].db.engine)
    checked = []
    for table in inspector.get_table_names():
        if "project_id" not in {c["name"] for c in inspector.get_columns(table)} or table in NO_FOREIGN_KEYS:
            continue
        fks = [
            fk
            for fk in inspector.get_foreign_keys(table)
            if fk["constrained_columns"] == ["project_id"]
            and fk["referred_table"] == "projects"
            and fk["referred_columns"] == ["id"]
        ]
        assert fks, f"{table}.project_id is not a foreign key to projects.id"
        checked.append(table)
    assert "tasks" in checked


# -- REQ-STANDS-0121: pool ------------------------------------------------------


@then("its database engine has a fixed pool size and a bounded overflow")
def pool_bounded(ctx: Ctx) -> None:
    pool = ctx["orch"].db.engine.pool
    assert pool.size() > 0
    assert 0 <= pool._max_overflow < 1000  # type: ignore[attr-defined]


@then("pooled connections are recycled after at most 30 minutes")
def pool_recycles(ctx: Ctx) -> None:
    pool = ctx["orch"].db.engine.pool
    assert 0 < pool._recycle <= 1800  # type: ignore[attr-defined]


@then("when the database drops every connection one request gets 503 with Retry-After and the next one succeeds")
def dropped_connections(ctx: Ctx) -> None:
    # No ping before each checkout (docs/decisions.md, API under load 4): a broken connection fails its
    # request, and the pool drops every connection made before it.
    orch, api = ctx["orch"], ctx["api"]
    api.login("admin", orch.secrets.admin_password, expect=200)
    assert api.get("/v1/tasks", token=api.token).status_code == 200  # the pool holds connections now
    url = orch.db.url.replace("postgresql+psycopg://", "postgresql://")
    with psycopg.connect(url, autocommit=True) as conn:
        dropped = conn.execute(
            "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
            "WHERE datname = current_database() AND pid <> pg_backend_pid()"
        ).fetchone()
    assert dropped is not None and dropped[0] >= 1
    raw = orch.app.test_client()  # not the API client: it would wait out the 503 and send again
    headers = {"Authorization": f"Bearer {api.token}"}
    failed = raw.get("/v1/tasks", headers=headers)
    assert failed.status_code == 503, failed.text
    assert int(failed.headers["Retry-After"]) >= 1
    assert failed.json["detail"] == "Database unavailable, retry shortly"
    assert [raw.get("/v1/tasks", headers=headers).status_code for _ in range(3)] == [200, 200, 200]


@then("a new connection gives up after a connect timeout")
def connect_timeout(ctx: Ctx) -> None:
    raw = ctx["orch"].db.engine.raw_connection()
    try:
        params = raw.driver_connection.info.get_parameters()  # type: ignore[union-attr]
    finally:
        raw.close()
    assert 0 < int(params["connect_timeout"]) <= 60


# -- REQ-STANDS-0124: no DDL at request time -------------------------------------


@given("a migrated database and a login role that may only read and write rows")
def dml_only_role(ctx: Ctx, pg: Any, database_url: str) -> Iterator[None]:
    role = "cynode_dml_" + secrets.token_hex(4)
    password = secrets.token_urlsafe(12)
    with psycopg.connect(database_url, autocommit=True) as conn:
        conn.execute(f"CREATE ROLE {role} LOGIN PASSWORD '{password}' NOSUPERUSER NOCREATEDB NOCREATEROLE")
        conn.execute(f"REVOKE CREATE ON SCHEMA public FROM PUBLIC, {role}")
        conn.execute(f"GRANT USAGE ON SCHEMA public TO {role}")
        conn.execute(f"GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA public TO {role}")
        conn.execute(f"GRANT USAGE, SELECT ON ALL SEQUENCES IN SCHEMA public TO {role}")
    ctx["role_url"] = make_url(database_url).set(username=role, password=password).render_as_string(hide_password=False)
    yield
    for orchestrator in ctx.get("role_orchestrators", []):
        orchestrator.close()
    with psycopg.connect(database_url, autocommit=True) as conn:
        conn.execute(f"DROP OWNED BY {role}")
    with psycopg.connect(pg.admin_url, autocommit=True) as conn:
        conn.execute(f"DROP ROLE {role}")


@given("that role cannot create a table")
def role_cannot_create(ctx: Ctx) -> None:
    with psycopg.connect(ctx["role_url"], autocommit=True) as conn:
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            conn.execute("CREATE TABLE ddl_probe (i int)")


@when("the orchestrator runs as that role")
def run_as_role(ctx: Ctx, tmp_path: Path, test_secrets: Any) -> None:
    orchestrator = open_orchestrator(make_settings(tmp_path / "role-home", ctx["role_url"], test_secrets))
    ctx.setdefault("role_orchestrators", []).append(orchestrator)
    ctx["role_api"] = ApiClient.in_process(orchestrator.app)
    ctx["role_secrets"] = test_secrets


@then(
    "logging in, creating and listing tasks, registering a node, fetching and acking its config, "
    "and GET /readyz all work"
)
def everything_works_without_ddl(ctx: Ctx) -> None:
    api, s = ctx["role_api"], ctx["role_secrets"]
    resp = api.login("admin", s.admin_password)
    assert resp.status_code == 200, resp.text
    user = resp.json()["access_token"]
    refreshed = api.post("/v1/auth/refresh", json={"refresh_token": resp.json()["refresh_token"]})
    assert refreshed.status_code == 200, refreshed.text
    created = api.post("/v1/tasks", json={"prompt": "echo hi", "input_mode": "commands"}, token=user)
    assert created.status_code == 201, created.text
    listed = api.get("/v1/tasks", token=user)
    assert listed.status_code == 200 and len(listed.json()["tasks"]) == 1
    node = NodeHandle("node-dml", "http://127.0.0.1:9")
    register(api, s.psk, node)
    fetch_config(api, node)
    ack(api, node, "applied")
    assert api.post("/v1/nodes/capability", json=capability(node.slug, node.url), token=node.jwt).status_code == 204
    # The node's Worker API is not there, so not ready; what matters is that the checks ran.
    ready = api.get("/readyz")
    assert ready.status_code in (200, 503), ready.text
    assert "migrations: ok" in ready.text
    assert api.post("/v1/auth/logout", token=user).status_code == 204


# -- REQ-STANDS-0125, REQ-SCHEMA-0101: cynode db upgrade --------------------------------


@given("an empty database")
def empty_database(ctx: Ctx, pg: Any) -> Iterator[None]:
    name = pg.create_database()
    ctx["empty_url"] = pg.url_for(name)
    yield
    pg.drop_database(name)


def _db_upgrade(ctx: Ctx, tmp_path: Path, processes: list[CynodeProcess]) -> None:
    env = clean_environ(CYNODE_HOME=str(tmp_path / "upgrade-home"), CYNODE_DATABASE_URL=ctx["empty_url"])
    proc = CynodeProcess(["db", "upgrade"], env, tmp_path / f"upgrade-{len(processes)}.log").start()
    processes.append(proc)
    ctx["exit"] = proc.wait(timeout=120)
    ctx["output"] = proc.output


def _revision(url: str) -> str | None:
    engine = make_engine(url, pool_size=1)
    try:
        return migrate.current_revision(engine)
    finally:
        engine.dispose()


@when("I run `cynode db upgrade` against it")
def run_upgrade(ctx: Ctx, tmp_path: Path, processes: list[CynodeProcess]) -> None:
    assert _revision(ctx["empty_url"]) is None
    _db_upgrade(ctx, tmp_path, processes)


@when("I run `cynode db upgrade` against it again")
def run_upgrade_again(ctx: Ctx, tmp_path: Path, processes: list[CynodeProcess]) -> None:
    ctx["revision_before"] = _revision(ctx["empty_url"])
    _db_upgrade(ctx, tmp_path, processes)


@then("it exits 0 and the schema is at the newest migration")
def upgraded(ctx: Ctx) -> None:
    assert ctx["exit"] == 0, ctx["output"]
    assert _revision(ctx["empty_url"]) == migrate.head_revision()


@then("the migrated schema and the models do not differ")
def no_drift(ctx: Ctx) -> None:
    engine = make_engine(ctx["empty_url"], pool_size=1)
    try:
        with engine.connect() as conn:
            context = MigrationContext.configure(conn, opts={"compare_type": True})
            assert list(compare_metadata(context, Base.metadata)) == []
    finally:
        engine.dispose()


@then("it exits 0, says the schema is already at the newest version and the revision is unchanged")
def upgrade_noop(ctx: Ctx) -> None:
    assert ctx["exit"] == 0, ctx["output"]
    assert "already at the newest version" in ctx["output"]
    assert _revision(ctx["empty_url"]) == ctx["revision_before"] == migrate.head_revision()


# -- REQ-MODELS-0120: no provider keys in jobs --------------------------------------


@given("the orchestrator's environment holds provider API keys")
def provider_keys(
    ctx: Ctx,
    monkeypatch: pytest.MonkeyPatch,
    opened: contextlib.ExitStack,
    tmp_path: Path,
    database_url: str,
    test_secrets: Any,
) -> None:
    for name, value in PROVIDER_KEYS.items():
        monkeypatch.setenv(name, value)
    # An orchestrator whose settings were read from that environment.
    settings = make_settings(tmp_path / "keys-home", database_url, test_secrets, environ=dict(PROVIDER_KEYS))
    ctx["orch"] = _open(opened, settings, test_secrets)
    ctx["api"] = ApiClient.in_process(ctx["orch"].app)


@when("I create a command task, an inference command task and a prompt task")
def create_three(ctx: Ctx) -> None:
    api = ctx["api"]
    assert api.login("admin", ctx["orch"].secrets.admin_password).status_code == 200
    bodies = [
        {"prompt": "env", "input_mode": "commands"},
        {"prompt": "env", "input_mode": "commands", "use_inference": True},
        {"prompt": "What is 2+2?"},
    ]
    for body in bodies:
        assert api.post("/v1/tasks", json=body, token=api.token).status_code == 201
    with ctx["orch"].db.session() as session:
        jobs = list(session.scalars(select(Job)))
        ctx["request_bodies"] = [
            RunJobRequest(str(j.task_id), str(j.id), payload_from_storage(j.payload)).to_json() for j in jobs
        ]
    assert len(ctx["request_bodies"]) == 3


@then("the Worker API request body of each job contains none of the key values")
def no_key_values(ctx: Ctx) -> None:
    for body in ctx["request_bodies"]:
        text = json.dumps(body)
        for value in PROVIDER_KEYS.values():
            assert value not in text


@then('no "sandbox.env" of those jobs names an API key, a token or a secret')
def no_key_names(ctx: Ctx) -> None:
    assert any(b["sandbox"].get("env") for b in ctx["request_bodies"]), "expected the inference jobs to carry env"
    for body in ctx["request_bodies"]:
        for name in body["sandbox"].get("env") or {}:
            assert not SECRET_NAME.search(name), name
