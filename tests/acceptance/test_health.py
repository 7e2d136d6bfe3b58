"""Steps of features/orchestrator/health_and_readiness.feature.

The gateway and the control plane are the one orchestrator app served on two
loopback ports (as ``cynode orchestrator serve`` does), over real HTTP and a
real PostgreSQL database of the test's own. The node is played by the test in
front of a node's real Worker API (``harness.worker``) whose readiness the
steps flip. Start-up scenarios run the real ``cynode orchestrator serve`` process.
"""

from __future__ import annotations

import os
import secrets
import stat
import time
import uuid
import warnings
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import jwt
import psycopg
import pytest
import requests
from acceptance.conftest import Ctx
from harness.api import ApiClient
from harness.nodes import NodeHandle, ack, capability, fetch_config, register
from harness.orchestrator import LiveServer
from harness.processes import CynodeProcess, Orchestrator, clean_environ, port_open
from harness.worker import WorkerNode
from psycopg import sql
from pytest_bdd import given, parsers, scenarios, then, when
from sqlalchemy import func, select
from sqlalchemy.engine import make_url

from cynode_core.orchestrator import migrate
from cynode_core.orchestrator.db import make_engine
from cynode_core.orchestrator.models import Node
from cynode_core.orchestrator.services import readiness

scenarios("orchestrator/health_and_readiness.feature")

CHECK_NAMES = ["database", "migrations", "dispatchable node"]


# -- fixtures --------------------------------------------------------------


@pytest.fixture(autouse=True)
def _no_probe_cache(monkeypatch: pytest.MonkeyPatch) -> None:
    """Node probes are cached 3 s in production; the steps flip the node's readiness faster than that."""
    monkeypatch.setattr(readiness, "PROBE_CACHE_SECONDS", 0.0)


@dataclass
class OwnDatabase:
    name: str
    url: str
    password: str


@pytest.fixture
def test_database(pg: Any, template_db: str) -> Iterator[OwnDatabase]:
    """A migrated database reached through a role with a password, so leaks of it can be looked for."""
    name = pg.create_database(template=template_db)
    role, password = f"r_{uuid.uuid4().hex[:12]}", f"dbpw-{secrets.token_urlsafe(16)}"
    with psycopg.connect(pg.admin_url, autocommit=True) as conn:
        conn.execute(
            sql.SQL("CREATE ROLE {} LOGIN SUPERUSER PASSWORD {}").format(sql.Identifier(role), sql.Literal(password))
        )
    url = make_url(pg.url_for(name)).set(username=role, password=password).render_as_string(hide_password=False)
    yield OwnDatabase(name, url, password)
    with psycopg.connect(pg.admin_url, autocommit=True) as conn:
        conn.execute(sql.SQL("ALTER DATABASE {} WITH ALLOW_CONNECTIONS true").format(sql.Identifier(name)))
    pg.drop_database(name)
    with psycopg.connect(pg.admin_url, autocommit=True) as conn:
        conn.execute(sql.SQL("DROP ROLE IF EXISTS {}").format(sql.Identifier(role)))


@pytest.fixture
def database_url(test_database: OwnDatabase) -> str:
    """Overrides the suite's fixture: this module's orchestrator uses the password role."""
    return test_database.url


@dataclass
class Services:
    """The orchestrator app on its gateway port and its control-plane port."""

    gateway: ApiClient
    control: ApiClient
    orchestrator: Any  # conftest's OrchestratorUnderTest
    bodies: list[str] = field(default_factory=list)

    def api(self, service: str) -> ApiClient:
        return self.gateway if service == "gateway" else self.control

    def get(self, service: str, path: str) -> requests.Response:
        resp = self.api(service).get(path)
        self.bodies.append(resp.text)
        return resp


@pytest.fixture
def services(orchestrator: Any) -> Iterator[Services]:
    gateway, control = LiveServer(orchestrator.app), LiveServer(orchestrator.app)
    yield Services(ApiClient(gateway.url), ApiClient(control.url), orchestrator)
    gateway.stop()
    control.stop()


def set_readiness(worker: WorkerNode, status: int) -> None:
    """The node's Worker API ``/readyz`` answers ``status`` (200 or 503) from now on."""
    if status == 200:
        worker.readiness.mark_ready()
    else:
        worker.readiness.set_not_ready("not ready on purpose")


@pytest.fixture
def empty_database_url(pg: Any) -> Iterator[str]:
    name = pg.create_database()
    yield pg.url_for(name)
    pg.drop_database(name)


# -- a node through the real control plane ---------------------------------


def register_and_fetch(svc: Services, node: NodeHandle) -> NodeHandle:
    """``POST /v1/nodes/register`` with the PSK, then ``GET /v1/nodes/config`` as the node does."""
    register(svc.control, svc.orchestrator.secrets.psk, node)
    fetch_config(svc.control, node)
    return node


def parse_checks(body: str) -> dict[str, bool]:
    """``{check name: passing}`` from a ``/readyz`` body (``name: ok|failing (detail)`` lines)."""
    checks = {}
    for line in body.splitlines()[1:]:
        name, sep, rest = line.partition(": ")
        assert sep, f"unexpected readyz line {line!r} in {body!r}"
        checks[name] = rest.startswith("ok")
    return checks


def readyz_both(svc: Services) -> dict[str, requests.Response]:
    return {name: svc.get(name, "/readyz") for name in ("control plane", "gateway")}


# -- services up -----------------------------------------------------------


@given("the control plane and gateway are running with no node registered and no inference container of their own")
@given("the control plane and gateway are running against a migrated database with no node registered")
def services_running(ctx: Ctx, services: Services) -> None:
    ctx["svc"] = services
    with services.orchestrator.db.session() as session:
        assert session.scalar(select(func.count()).select_from(Node)) == 0
    assert migrate.current_revision(services.orchestrator.db.engine) == migrate.head_revision()


@when("I GET /healthz on the control plane and on the gateway without credentials")
def healthz_both(ctx: Ctx) -> None:
    ctx["responses"] = {name: ctx["svc"].get(name, "/healthz") for name in ("control plane", "gateway")}


@then(parsers.parse('both answer 200 with the plain-text body "{body}"'))
def both_ok_text(ctx: Ctx, body: str) -> None:
    for name, resp in ctx["responses"].items():
        assert resp.status_code == 200, (name, resp.text)
        assert resp.headers["Content-Type"].startswith("text/plain"), name
        assert resp.text == body


@when("I GET /readyz on the control plane and on the gateway")
def get_readyz(ctx: Ctx) -> None:
    ctx["responses"] = readyz_both(ctx["svc"])


@then(parsers.parse("both answer {status:d}"))
def both_answer(ctx: Ctx, status: int) -> None:
    for name, resp in ctx["responses"].items():
        assert resp.status_code == status, (name, resp.text)
        assert resp.headers["Content-Type"].startswith("text/plain"), name


@then(
    'each body lists the checks "database", "migrations" and "dispatchable node" with their states, '
    'only "dispatchable node" failing'
)
def only_node_failing(ctx: Ctx) -> None:
    for resp in ctx["responses"].values():
        assert parse_checks(resp.text) == {"database": True, "migrations": True, "dispatchable node": False}, resp.text


@then(parsers.parse('GET /healthz on both still answers 200 "{body}"'))
def healthz_still(ctx: Ctx, body: str) -> None:
    for name in ("control plane", "gateway"):
        resp = ctx["svc"].get(name, "/healthz")
        assert (resp.status_code, resp.text) == (200, body), name


@then("the Project Manager agent plays no part in the answer")
def no_pma(ctx: Ctx) -> None:
    for resp in ctx["responses"].values():
        assert list(parse_checks(resp.text)) == CHECK_NAMES
        lowered = resp.text.lower()
        assert "project manager" not in lowered and "pma" not in lowered


# -- readiness and the node ------------------------------------------------


@given(parsers.parse('node "{slug}" registered and fetched config, its Worker API /readyz answering 200'))
def node_registered(ctx: Ctx, worker: WorkerNode, slug: str) -> None:
    set_readiness(worker, 200)
    ctx["node"] = register_and_fetch(ctx["svc"], NodeHandle.of(slug, worker))


@given("the orchestrator is ready")
def orchestrator_ready(ctx: Ctx, services: Services, worker: WorkerNode) -> None:
    services_running(ctx, services)
    node_registered(ctx, worker, "node-01")
    ack(services.control, ctx["node"], "applied")
    for name, resp in readyz_both(services).items():
        assert resp.status_code == 200, (name, resp.text)


@when(parsers.parse('"{slug}" acks "{status}"'))
@when(parsers.parse('"{slug}" acks that config_version with "{status}"'))
def node_acks(ctx: Ctx, slug: str, status: str) -> None:
    assert ctx["node"].slug == slug
    ack(ctx["svc"].control, ctx["node"], status)


@then(parsers.re(r"GET /readyz on both is (?:still )?(?P<status>\d+)$"))
def readyz_is(ctx: Ctx, status: str) -> None:
    ctx["responses"] = readyz_both(ctx["svc"])
    for name, resp in ctx["responses"].items():
        assert resp.status_code == int(status), (name, resp.text)


@then(parsers.parse("GET /readyz on both is 200 and the body lists every check as passing"))
def readyz_all_pass(ctx: Ctx) -> None:
    readyz_is(ctx, "200")
    for resp in ctx["responses"].values():
        assert resp.text.startswith("ready\n")
        assert parse_checks(resp.text) == dict.fromkeys(CHECK_NAMES, True), resp.text


@then(parsers.parse('GET /readyz on both is {status:d} with the "{check}" check failing'))
def readyz_check_failing(ctx: Ctx, status: int, check: str) -> None:
    readyz_is(ctx, str(status))
    for resp in ctx["responses"].values():
        assert parse_checks(resp.text)[check] is False, resp.text


@when(parsers.re(r"node-01's Worker API /readyz (?:starts answering|answers) (?P<status>\d+)(?: again)?$"))
def flip_readiness(ctx: Ctx, status: str) -> None:
    set_readiness(ctx["node"].worker, int(status))


@when("the orchestrator issues node-01 a new config_version that it has not acked yet")
def new_config_version(ctx: Ctx) -> None:
    # Registering again is how a node is issued a fresh config (and a rotated
    # Worker API token); the node fetches it but has not acked it.
    old = ctx["node"].config_version
    register_and_fetch(ctx["svc"], ctx["node"])
    assert ctx["node"].config_version != old


# -- lost database ---------------------------------------------------------


@when("PostgreSQL becomes unreachable")
def database_lost(pg: Any, test_database: OwnDatabase) -> None:
    # No new connection is allowed and every open one is cut: for this
    # orchestrator the server is gone.
    with psycopg.connect(pg.admin_url, autocommit=True) as conn:
        name = sql.Identifier(test_database.name)
        conn.execute(sql.SQL("ALTER DATABASE {} WITH ALLOW_CONNECTIONS false").format(name))
        conn.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = %s AND pid <> pg_backend_pid()",
            (test_database.name,),
        )


@then("no response body contains the database password")
def no_db_password(ctx: Ctx, test_database: OwnDatabase) -> None:
    svc: Services = ctx["svc"]
    # A request that needs the database on each service, for good measure. Sent once each with the client's
    # session: the API client would wait out the 503 (Retry-After) and send again five times, 10 s a request.
    gateway, control = svc.gateway, svc.control
    login = gateway.http.post(f"{gateway.url}/v1/auth/login", json={"handle": "admin", "password": "x"}, timeout=10)
    registration = control.http.post(
        f"{control.url}/v1/nodes/register", json={"psk": "x", "capability": {}}, timeout=10
    )
    for resp in (login, registration):
        assert resp.status_code == 503 and resp.headers["Content-Type"] == "application/problem+json", resp.text
        svc.bodies.append(resp.text)
    assert svc.bodies
    for body in svc.bodies:
        assert test_database.password not in body
        assert test_database.name not in body


# -- migrations ------------------------------------------------------------


@given("the database schema is one migration behind head")
def one_behind(ctx: Ctx, test_database: OwnDatabase) -> None:
    from alembic.script import ScriptDirectory

    script = ScriptDirectory.from_config(migrate.alembic_config(test_database.url))
    head_revision = migrate.head_revision()
    assert head_revision is not None
    head = script.get_revision(head_revision)
    target = head.down_revision or "base"  # a single revision: "behind" is the empty schema
    assert isinstance(target, str), "a merge revision at head: pick the parent explicitly"
    engine = make_engine(test_database.url, pool_size=1)
    try:
        migrate.downgrade(engine, test_database.url, target)
        assert migrate.current_revision(engine) == (None if target == "base" else target)
    finally:
        engine.dispose()
    ctx["downgraded_to"] = target


@then(parsers.parse('each body shows the "{failing}" check failing and the "{passing}" check passing'))
def check_states(ctx: Ctx, failing: str, passing: str) -> None:
    for resp in ctx["responses"].values():
        checks = parse_checks(resp.text)
        assert checks[failing] is False and checks[passing] is True, resp.text


@when("the missing migration is applied")
def apply_missing(ctx: Ctx, test_database: OwnDatabase) -> None:
    engine = make_engine(test_database.url, pool_size=1)
    try:
        assert migrate.upgrade(engine, test_database.url)
    finally:
        engine.dispose()
    if ctx["downgraded_to"] == "base":
        # Down to base dropped every table, the node with them: it registers again, as a real one would.
        register_and_fetch(ctx["svc"], ctx["node"])
        ack(ctx["svc"].control, ctx["node"], "applied")


# -- framework errors ------------------------------------------------------


@when(parsers.parse("I send {request} to the {service}"))
def send_request(ctx: Ctx, request: str, service: str) -> None:
    api = ctx["svc"].api(service)
    if request == "a login body of 11 MiB":
        blob = '{"handle": "admin", "password": "' + "x" * (11 * 1024 * 1024) + '"}'
        ctx["resp"] = api.post("/v1/auth/login", data=blob, headers={"Content-Type": "application/json"})
    else:
        method, path = request.split(" ", 1)
        ctx["resp"] = api.send(method, path)


@then(
    parsers.parse(
        'I get a problem response with status {status:d}, "Content-Type" "{ctype}" and a "type" URN from the contracts'
    )
)
def problem_details(ctx: Ctx, status: int, ctype: str) -> None:
    resp = ctx["resp"]
    assert resp.status_code == status, resp.text
    assert resp.headers["Content-Type"] == ctype
    body = resp.json()
    assert body["status"] == status and body["title"] and body["detail"]
    assert body["type"].startswith("urn:cynodeai:error:")


@then("the body holds no stack trace and no secret value")
def no_trace_no_secret(ctx: Ctx, test_database: OwnDatabase) -> None:
    text = ctx["resp"].text
    s = ctx["svc"].orchestrator.secrets
    assert "Traceback" not in text and 'File "' not in text
    for secret in (s.admin_password, s.psk, s.jwt_secret, test_database.password):
        assert secret not in text


# -- secrets at first start ------------------------------------------------


SECRET_FILES = ("jwt-secret", "node-psk", "admin-password")


def _stored_files(home: Path) -> dict[str, tuple[str, int]]:
    """Content and modification time of each generated secret file."""
    return {name: ((home / name).read_text(), (home / name).stat().st_mtime_ns) for name in SECRET_FILES}


def _serve(ctx: Ctx, processes: list[CynodeProcess], tmp_path: Path, database_url: str, **extra: str) -> None:
    """``cynode orchestrator serve`` on ``ctx["home"]`` (not started yet), with only ``extra`` as secrets."""
    env = clean_environ(
        CYNODE_HOME=str(ctx["home"]), CYNODE_DATABASE_URL=database_url, CYNODE_DISPATCHER_ENABLED="false", **extra
    )
    proc = Orchestrator(env, tmp_path, "serve")
    processes.append(proc)
    ctx.update(proc=proc, env=env, gw=ApiClient(proc.gateway), cp=ApiClient(proc.control))


@given(
    "an empty CYNODE_HOME and no JWT secret, node registration PSK or bootstrap admin password "
    "in the environment or the bootstrap file"
)
def empty_home(ctx: Ctx, tmp_path: Path, empty_database_url: str, processes: list[CynodeProcess]) -> None:
    ctx["home"] = tmp_path / "cynode-home"
    assert not ctx["home"].exists()
    _serve(ctx, processes, tmp_path, empty_database_url)
    assert "CYNODE_CONFIG" not in ctx["env"]


@when("the control plane and gateway start for the first time")
def first_start(ctx: Ctx) -> None:
    ctx["proc"].start().wait_healthy()


@then(
    "a JWT secret of at least 32 bytes, a node PSK and an admin password are generated "
    "and each stored in a file under CYNODE_HOME with mode 0600"
)
def secrets_stored(ctx: Ctx) -> None:
    stored = {}
    for name in SECRET_FILES:
        path = ctx["home"] / name
        assert path.is_file(), name
        assert stat.S_IMODE(os.stat(path).st_mode) == 0o600, name
        stored[name] = path.read_text().strip()
        assert stored[name]
    assert len(stored["jwt-secret"].encode()) >= 32
    assert len(set(stored.values())) == 3
    assert "change-me-in-production" not in stored.values() and "default-psk-change-me" not in stored.values()
    assert stored["admin-password"] != "admin123"
    ctx["stored"] = stored


@then("the start-up output prints the path of the admin password file but not the password itself")
def output_path_only(ctx: Ctx) -> None:
    out = ctx["proc"].output
    assert str(ctx["home"] / "admin-password") in out, out
    for value in ctx["stored"].values():
        assert value not in out


@then(parsers.parse('logging in as "admin" with the stored admin password succeeds, and with "{bad}" gets 401'))
def admin_login(ctx: Ctx, bad: str) -> None:
    ok = ctx["gw"].login("admin", ctx["stored"]["admin-password"])
    assert ok.status_code == 200, ok.text
    ctx["tokens"] = ok.json()
    assert ctx["gw"].login("admin", bad).status_code == 401


@then(parsers.parse('registering a node with psk "{bad}" gets 401, while the stored PSK is accepted'))
def psk_check(ctx: Ctx, bad: str) -> None:
    cap = capability("node-secrets", "http://127.0.0.1:9")
    refused = ctx["cp"].post("/v1/nodes/register", json={"psk": bad, "capability": cap})
    assert refused.status_code == 401 and refused.headers["Content-Type"] == "application/problem+json"
    accepted = ctx["cp"].post("/v1/nodes/register", json={"psk": ctx["stored"]["node-psk"], "capability": cap})
    assert accepted.status_code == 201, accepted.text


@then(parsers.parse('a user access token signed with "{weak}" gets 401'))
def weak_signed(ctx: Ctx, weak: str) -> None:
    claims = jwt.decode(ctx["tokens"]["access_token"], options={"verify_signature": False})
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # PyJWT warns about the short key: that is the point
        forged = jwt.encode(claims, weak, algorithm="HS256")
    assert ctx["gw"].get("/v1/users/me", token=forged).status_code == 401
    # The genuine token of the same claims works, so the signature alone made the difference.
    assert ctx["gw"].get("/v1/users/me", token=ctx["tokens"]["access_token"]).status_code == 200


@when("the services are restarted with the same CYNODE_HOME")
def restart(ctx: Ctx) -> None:
    ctx["proc"].stop()
    ctx["before"] = _stored_files(ctx["home"])
    ctx["proc"].start().wait_healthy()


@then("the stored values are reused unchanged and a token issued before the restart still works")
def reused(ctx: Ctx) -> None:
    assert _stored_files(ctx["home"]) == ctx["before"]
    resp = ctx["gw"].get("/v1/users/me", token=ctx["tokens"]["access_token"])
    assert resp.status_code == 200 and resp.json()["handle"] == "admin"
    assert ctx["gw"].login("admin", ctx["stored"]["admin-password"]).status_code == 200
    for value in ctx["stored"].values():
        assert value not in ctx["proc"].output


# -- short JWT secrets -----------------------------------------------------


@given(parsers.parse("{variable} is set to a secret of {length:d} bytes and CYNODE_HOME holds no generated secret"))
def short_secret(
    ctx: Ctx, tmp_path: Path, empty_database_url: str, processes: list[CynodeProcess], variable: str, length: int
) -> None:
    secret = secrets.token_urlsafe(64)[:length]
    assert len(secret.encode()) == length
    ctx["secret"], ctx["home"] = secret, tmp_path / "cynode-home"
    _serve(ctx, processes, tmp_path, empty_database_url, **{variable: secret})


@when("the control plane and gateway start")
def start_with_secret(ctx: Ctx) -> None:
    proc: Orchestrator = ctx["proc"].start()
    urls = [f"{proc.gateway}/healthz", f"{proc.control}/healthz"]
    deadline = time.monotonic() + 60
    while proc.alive() and time.monotonic() < deadline:
        try:
            if all(requests.get(url, timeout=1).status_code == 200 for url in urls):
                ctx["healthz"] = True
                return
        except requests.RequestException:
            pass
        time.sleep(0.1)
    assert not proc.alive(), f"neither exited nor served within 60 s:\n{proc.output}"


@then("both exit non-zero with an error naming the JWT secret length, serving nothing")
def refused_at_start(ctx: Ctx) -> None:
    proc: Orchestrator = ctx["proc"]
    assert proc.wait(timeout=30) != 0
    out = proc.output
    length = len(ctx["secret"].encode())
    assert "JWT secret" in out and f"{length} bytes" in out and "32" in out, out
    assert not any(port_open(p) for p in (proc.gateway_port, proc.control_port))
    assert not (ctx["home"] / "jwt-secret").exists()


@then("both start and GET /healthz answers 200")
def started(ctx: Ctx) -> None:
    assert ctx.get("healthz"), ctx["proc"].output
    assert ctx["proc"].alive()
    assert not (ctx["home"] / "jwt-secret").exists()  # the configured secret is used, none generated


@then("no output of the services contains the secret value")
def secret_not_in_output(ctx: Ctx) -> None:
    ctx["proc"].stop()
    assert ctx["secret"] not in ctx["proc"].output
