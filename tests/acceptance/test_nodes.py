"""Steps of features/orchestrator/node_registration_and_config.feature.

The control plane is the real orchestrator app (conftest's ``orchestrator``)
on the test's own migrated PostgreSQL database, called through ``api``
(straight into the app); the assertions read the database directly.
"""

from __future__ import annotations

import copy
import datetime as dt
import json
import logging
import re
from typing import Any

import jwt
import pytest
from acceptance import tokens_forge as forge
from acceptance.conftest import Ctx
from harness.nodes import capability, now_rfc3339
from pytest_bdd import given, parsers, scenarios, then, when
from sqlalchemy import func, select

from cynode_core.orchestrator.models import Node, NodeCapability
from cynode_core.orchestrator.services import nodes

scenarios("orchestrator/node_registration_and_config.feature")

PUBLIC_URL = "http://cp.test:12082"
WORKER_URL = "http://127.0.0.1:12090"
RFC3339_UTC = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d+)?Z$")
ULID = re.compile(r"^[0-9A-HJKMNP-TV-Z]{26}$")
SLUG = "node-01"


@pytest.fixture
def settings_overrides() -> dict[str, Any]:
    return {"public_url": PUBLIC_URL}


@pytest.fixture(autouse=True)
def _capture_all_logs(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)


# -- helpers -----------------------------------------------------------------


def at(body: Any, path: str) -> Any:
    """``body["a"]["b"]`` for the path ``a.b``."""
    for part in path.split("."):
        body = body[part]
    return body


def parse_time(text: str) -> dt.datetime:
    return dt.datetime.fromisoformat(text.replace("Z", "+00:00"))


def node_row(orchestrator: Any, slug: str = SLUG) -> Node | None:
    with orchestrator.db.session() as session:
        node = session.scalar(select(Node).where(Node.node_slug == slug))
        if node is not None:
            session.expunge(node)
        return node


def node_count(orchestrator: Any, slug: str | None = None) -> int:
    with orchestrator.db.session() as session:
        stmt = select(func.count()).select_from(Node)
        if slug is not None:
            stmt = stmt.where(Node.node_slug == slug)
        return int(session.scalar(stmt) or 0)


def dispatchable_slugs(orchestrator: Any) -> list[str]:
    with orchestrator.db.session() as session:
        return [row.slug for row in nodes.list_nodes(session, only_dispatchable=True)]


def register(ctx: Ctx, api: Any, orchestrator: Any, cap: dict[str, Any] | None = None) -> Any:
    resp = api.post("/v1/nodes/register", json={"psk": orchestrator.secrets.psk, "capability": cap or ctx["cap"]})
    assert resp.status_code in (200, 201), resp.text
    ctx["jwt"] = resp.json()["auth"]["node_jwt"]
    return resp


def fetch_config(ctx: Ctx, api: Any) -> dict[str, Any]:
    resp = api.get("/v1/nodes/config", token=ctx["jwt"])
    assert resp.status_code == 200, resp.text
    config = resp.json()
    ctx["config_version"] = config["config_version"]
    return config


def ack_body(ctx: Ctx, status: str, **changes: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "version": 1,
        "node_slug": SLUG,
        "config_version": ctx["config_version"],
        "ack_at": now_rfc3339(),
        "status": status,
    }
    body.update(changes)
    return body


# -- background ----------------------------------------------------------------


@given(parsers.parse('the control plane is running with registration PSK <psk> and public URL "{url}"'))
def control_plane(api: Any, orchestrator: Any, url: str) -> None:
    assert orchestrator.settings.control_public_url == url
    assert orchestrator.secrets.psk and orchestrator.settings.node_psk == orchestrator.secrets.psk
    assert api.get("/healthz").status_code == 200


@given(
    parsers.parse(
        'a capability report "cap" with version 1, node.node_slug "{slug}", platform, compute and '
        'worker_api.base_url "{url}"'
    )
)
def capability_report(ctx: Ctx, slug: str, url: str) -> None:
    ctx["cap"] = capability(slug, url)
    assert ctx["cap"]["version"] == 1 and {"platform", "compute"} <= set(ctx["cap"])


# -- registration ----------------------------------------------------------------


@when('the node POSTs /v1/nodes/register with {"psk": <psk>, "capability": cap}')
def post_register(ctx: Ctx, api: Any, orchestrator: Any) -> None:
    ctx["resp"] = api.post("/v1/nodes/register", json={"psk": orchestrator.secrets.psk, "capability": ctx["cap"]})


@then(parsers.parse('"version" is 1 and "issued_at" is an RFC 3339 UTC time'))
def bootstrap_version(ctx: Ctx) -> None:
    body = ctx.resp.json()
    assert body["version"] == 1
    assert RFC3339_UTC.match(body["issued_at"]), body["issued_at"]


@then(parsers.re(r'^"(?P<path>[^"]+)" is "(?P<value>[^"]*)"$'))
def json_value(ctx: Ctx, path: str, value: str) -> None:
    assert at(ctx.resp.json(), path) == value


@then(parsers.re(r'^"(?P<path>[^"]+)" ends with "(?P<suffix>[^"]+)"$'))
def json_suffix(ctx: Ctx, path: str, suffix: str) -> None:
    assert str(at(ctx.resp.json(), path)).endswith(suffix)


@then('"auth.node_jwt" is a JWT and "auth.expires_at" is an RFC 3339 time in the future')
def node_jwt(ctx: Ctx, orchestrator: Any) -> None:
    auth = ctx.resp.json()["auth"]
    claims = jwt.decode(auth["node_jwt"], orchestrator.settings.jwt_secret, algorithms=["HS256"])
    assert claims["token_type"] == "node" and claims["node_slug"] == SLUG
    assert RFC3339_UTC.match(auth["expires_at"])
    assert parse_time(auth["expires_at"]) > dt.datetime.now(dt.UTC)


@then(parsers.parse('the nodes row "{slug}" exists with worker_api_target_url "{url}"'))
def row_with_url(orchestrator: Any, slug: str, url: str) -> None:
    node = node_row(orchestrator, slug)
    assert node is not None and node.worker_api_target_url == url


@then("the capability snapshot is stored and capability_hash is set")
def snapshot_stored(ctx: Ctx, orchestrator: Any) -> None:
    node = node_row(orchestrator)
    assert node is not None and node.capability_hash == nodes.capability_hash(ctx["cap"])
    with orchestrator.db.session() as session:
        snapshots = list(
            session.scalars(select(NodeCapability.capability_snapshot).where(NodeCapability.node_id == node.id))
        )
    assert snapshots == [ctx["cap"]]


@then('the same request with an extra unknown field "future_field" in cap is also accepted and stored as sent')
def unknown_field(ctx: Ctx, api: Any, orchestrator: Any) -> None:
    cap = copy.deepcopy(ctx["cap"])
    cap["future_field"] = {"anything": [1, "two"]}
    resp = api.post("/v1/nodes/register", json={"psk": orchestrator.secrets.psk, "capability": cap})
    assert resp.status_code in (200, 201), resp.text
    node = node_row(orchestrator)
    assert node is not None
    with orchestrator.db.session() as session:
        assert nodes.latest_capability(session, node.id) == cap


@given(parsers.parse('node "{slug}" is registered'))
def registered(ctx: Ctx, api: Any, orchestrator: Any, slug: str) -> None:
    register(ctx, api, orchestrator)
    ctx["first_jwt"] = ctx["jwt"]


@when("the node registers again with the same PSK and slug")
def register_again(ctx: Ctx, api: Any, orchestrator: Any) -> None:
    ctx["resp"] = api.post("/v1/nodes/register", json={"psk": orchestrator.secrets.psk, "capability": ctx["cap"]})


@then('the status is 200 with a fresh "auth.node_jwt"')
def fresh_jwt(ctx: Ctx, orchestrator: Any) -> None:
    assert ctx.resp.status_code == 200, ctx.resp.text
    token = ctx.resp.json()["auth"]["node_jwt"]
    assert token != ctx["first_jwt"]
    assert jwt.decode(token, orchestrator.settings.jwt_secret, algorithms=["HS256"])["node_slug"] == SLUG


@then(parsers.parse('exactly one nodes row has node_slug "{slug}"'))
def one_row(orchestrator: Any, slug: str) -> None:
    assert node_count(orchestrator, slug) == 1


@when(parsers.parse("a client POSTs /v1/nodes/register with psk {psk_value} and capability cap"))
def register_with_psk(ctx: Ctx, api: Any, orchestrator: Any, psk_value: str) -> None:
    psk = orchestrator.secrets.psk
    submitted = {
        '"wrong-psk"': "wrong-psk",
        '""': "",
        "(field absent)": None,
        "<psk> with a trailing space": psk + " ",
    }[psk_value]
    body: dict[str, Any] = {"capability": ctx["cap"]}
    if submitted is not None:
        body["psk"] = submitted
    ctx["submitted_psk"] = submitted
    ctx["resp"] = api.post("/v1/nodes/register", json=body)


@then(parsers.parse('no nodes row "{slug}" exists'))
def no_row(orchestrator: Any, slug: str) -> None:
    assert node_count(orchestrator, slug) == 0


@then("no log line of the control plane contains the submitted PSK value")
def psk_not_logged(ctx: Ctx, orchestrator: Any, caplog: pytest.LogCaptureFixture) -> None:
    # pytest-bdd logs the step texts themselves, which name the submitted value.
    lines = [r.getMessage() for r in caplog.records if not r.name.startswith("pytest_bdd")]
    assert lines, "nothing was logged at all: the check would prove nothing"
    # An empty or absent PSK has nothing to leak; the real PSK must never appear either.
    for secret in (ctx["submitted_psk"], orchestrator.secrets.psk):
        if secret:
            assert not [line for line in lines if secret.strip() in line]


@when(parsers.re(r"^a client POSTs /v1/nodes/register with (?P<body>(?!psk ).+)$"))
def register_malformed(ctx: Ctx, api: Any, orchestrator: Any, body: str) -> None:
    psk = orchestrator.secrets.psk
    cap = copy.deepcopy(ctx["cap"])
    if body == "a truncated JSON document":
        raw = json.dumps({"psk": psk, "capability": cap})[:40]
    elif body == 'the right PSK and cap with "version" 2':
        raw = json.dumps({"psk": psk, "capability": {**cap, "version": 2}})
    elif body == "the right PSK and cap without node.node_slug":
        del cap["node"]["node_slug"]
        raw = json.dumps({"psk": psk, "capability": cap})
    elif body == "the right PSK and a JSON array instead of an object":
        raw = json.dumps([psk, cap])
    else:
        raise AssertionError(f"unknown body {body!r}")
    ctx["resp"] = api.post("/v1/nodes/register", data=raw, headers={"Content-Type": "application/json"})


@then("no nodes row is created")
def no_rows(orchestrator: Any) -> None:
    assert node_count(orchestrator) == 0


# -- capability reports ------------------------------------------------------------


@given(parsers.parse('node "{slug}" is registered and holds node JWT J'))
def registered_with_jwt(ctx: Ctx, api: Any, orchestrator: Any, slug: str) -> None:
    register(ctx, api, orchestrator)
    node = node_row(orchestrator, slug)
    assert node is not None
    ctx["before"] = node


@when(parsers.parse('the node POSTs /v1/nodes/capability with bearer J and cap changed to worker_api.base_url "{url}"'))
def post_capability(ctx: Ctx, api: Any, url: str) -> None:
    ctx["changed_cap"] = {**ctx["cap"], "worker_api": {"base_url": url}}
    ctx["resp"] = api.post("/v1/nodes/capability", json=ctx["changed_cap"], token=ctx["jwt"])


@then("last_capability_at is updated and capability_hash differs from the previous value")
def capability_updated(ctx: Ctx, orchestrator: Any) -> None:
    before, after = ctx["before"], node_row(orchestrator)
    assert after is not None
    assert after.last_capability_at > before.last_capability_at
    assert after.capability_hash and after.capability_hash != before.capability_hash


@then(parsers.parse('worker_api_target_url for "{slug}" is "{url}"'))
def target_url(orchestrator: Any, slug: str, url: str) -> None:
    node = node_row(orchestrator, slug)
    assert node is not None and node.worker_api_target_url == url


@then("posting the identical report again leaves capability_hash unchanged")
def identical_report(ctx: Ctx, api: Any, orchestrator: Any) -> None:
    before = node_row(orchestrator)
    resp = api.post("/v1/nodes/capability", json=ctx["changed_cap"], token=ctx["jwt"])
    assert resp.status_code == 204, resp.text
    after = node_row(orchestrator)
    assert before is not None and after is not None
    assert after.capability_hash == before.capability_hash
    assert after.last_capability_at > before.last_capability_at  # stored again, same content


# -- node authentication -------------------------------------------------------------


@when(parsers.parse('a client calls {method} {path} with Authorization "{header}"'))
def call_with_header(ctx: Ctx, api: Any, orchestrator: Any, method: str, path: str, header: str) -> None:
    register(ctx, api, orchestrator)
    node_jwt = ctx["jwt"]
    tokens = api.login("admin", orchestrator.secrets.admin_password).json()
    values = {
        "(absent)": None,
        "Bearer <user access token>": f"Bearer {tokens['access_token']}",
        "Bearer <user refresh token>": f"Bearer {tokens['refresh_token']}",
        "Bearer <node JWT, expired>": f"Bearer {forge.expired_like(node_jwt, orchestrator.settings.jwt_secret)}",
        "Bearer <node JWT, signature broken>": f"Bearer {forge.bad_signature(node_jwt)}",
    }
    value = values[header]
    headers = {"Authorization": value} if value is not None else {}
    # A body the route would accept from the node itself, so only the token can be refused.
    body = None
    if path == "/v1/nodes/config" and method == "POST":
        fetch_config(ctx, api)
        body = ack_body(ctx, "applied")
    elif path == "/v1/nodes/capability":
        body = ctx["cap"]
    ctx["resp"] = api.send(method, path, headers=headers, json=body)


# -- configuration --------------------------------------------------------------------


@when("the node GETs /v1/nodes/config with bearer J")
def get_config(ctx: Ctx, api: Any) -> None:
    ctx["resp"] = api.get("/v1/nodes/config", token=ctx["jwt"])


@then("the status is 200 with a node_configuration_payload_v1")
def config_payload(ctx: Ctx) -> None:
    assert ctx.resp.status_code == 200, ctx.resp.text
    assert ctx.resp.headers["Content-Type"] == "application/json"
    body = ctx.resp.json()
    assert {"version", "config_version", "issued_at", "node_slug", "orchestrator", "worker_api"} <= set(body)
    assert RFC3339_UTC.match(body["issued_at"])
    assert {"worker_api_target_url", "node_report_url"} <= set(body["orchestrator"]["endpoints"])


@then(parsers.parse('"version" is 1, "node_slug" is "{slug}" and "config_version" is a non-empty ULID'))
def config_ids(ctx: Ctx, slug: str) -> None:
    body = ctx.resp.json()
    assert (body["version"], body["node_slug"]) == (1, slug)
    assert ULID.match(body["config_version"]), body["config_version"]


@then(
    parsers.parse(
        '"worker_api.orchestrator_bearer_token" equals the Worker API bearer token the control plane holds for "{slug}"'
    )
)
def config_token(ctx: Ctx, orchestrator: Any, slug: str) -> None:
    served = ctx.resp.json()["worker_api"]["orchestrator_bearer_token"]
    node = node_row(orchestrator, slug)
    assert node is not None
    cipher = orchestrator.app.extensions["cynode"].cipher
    assert served and nodes.worker_token(cipher, node) == served
    assert len(served) >= 32


@then(parsers.parse('a second GET returns the same "config_version"'))
def same_config_version(ctx: Ctx, api: Any) -> None:
    first = ctx.resp.json()["config_version"]
    assert fetch_config(ctx, api)["config_version"] == first


@then(parsers.parse('the nodes row stores worker_api_target_url and worker_api_bearer_token for "{slug}"'))
def row_stores(ctx: Ctx, orchestrator: Any, slug: str) -> None:
    node = node_row(orchestrator, slug)
    assert node is not None and node.worker_api_target_url == WORKER_URL
    served = ctx.resp.json()["worker_api"]["orchestrator_bearer_token"]
    # Stored, and encrypted at rest: the column never holds the token itself.
    assert node.worker_api_bearer_token and served not in node.worker_api_bearer_token


@given(
    parsers.parse(
        'node "{slug}" registered with capability inference.supported {supported} and '
        "inference.existing_service {existing}"
    )
)
def registered_with_inference(ctx: Ctx, api: Any, orchestrator: Any, slug: str, supported: str, existing: str) -> None:
    cap = copy.deepcopy(ctx["cap"])
    cap["inference"] = {"supported": supported == "true"}
    if existing == "true":
        cap["inference"]["existing_service"] = True
    register(ctx, api, orchestrator, cap)


@when("the node fetches its configuration")
def fetches_config(ctx: Ctx, api: Any) -> None:
    ctx["resp"] = api.get("/v1/nodes/config", token=ctx["jwt"])
    assert ctx.resp.status_code == 200, ctx.resp.text


@then(parsers.parse('"inference_backend" is {expectation}'))
def inference_instruction(ctx: Ctx, orchestrator: Any, expectation: str) -> None:
    config = ctx.resp.json()
    backend = config.get("inference_backend")
    if expectation == 'present with "enabled" true':
        assert backend is not None and backend["enabled"] is True
        assert backend["selected_model"] == orchestrator.settings.inference_model
    elif expectation == 'absent or has "enabled" false':
        assert backend is None or backend.get("enabled", False) is False
    elif expectation == "absent":
        assert "inference_backend" not in config
    else:
        raise AssertionError(f"unknown expectation {expectation!r}")


# -- config acks ------------------------------------------------------------------------


@given(parsers.parse('node "{slug}" has fetched config with config_version V'))
def fetched_config(ctx: Ctx, api: Any, orchestrator: Any, slug: str) -> None:
    register(ctx, api, orchestrator)
    fetch_config(ctx, api)


@when(
    'it POSTs /v1/nodes/config with {"version": 1, "node_slug": "node-01", "config_version": V, '
    '"ack_at": now, "status": "applied"}'
)
def post_ack_applied(ctx: Ctx, api: Any) -> None:
    ctx["ack"] = ack_body(ctx, "applied")
    ctx["resp"] = api.post("/v1/nodes/config", json=ctx["ack"], token=ctx["jwt"])


@then(
    parsers.parse('the nodes row has config_ack_status "{status}", config_version V and config_ack_at equal to ack_at')
)
def ack_recorded(ctx: Ctx, orchestrator: Any, status: str) -> None:
    node = node_row(orchestrator)
    assert node is not None
    assert node.config_ack_status == status
    assert node.config_version == node.config_ack_version == ctx["config_version"]
    assert node.config_ack_at == parse_time(ctx["ack"]["ack_at"])


@then(parsers.parse('node "{slug}" is in the dispatchable set'))
def dispatchable(orchestrator: Any, slug: str) -> None:
    assert slug in dispatchable_slugs(orchestrator)


@when(parsers.parse('it acks with status "{status}" and error {error}'))
def post_ack_failed(ctx: Ctx, api: Any, status: str, error: str) -> None:
    ctx["ack"] = ack_body(ctx, status, error=json.loads(error))
    ctx["resp"] = api.post("/v1/nodes/config", json=ctx["ack"], token=ctx["jwt"])


@then(parsers.parse('the nodes row has config_ack_status "{status}" and config_ack_error "{error}"'))
def ack_failed_recorded(ctx: Ctx, orchestrator: Any, status: str, error: str) -> None:
    node = node_row(orchestrator)
    assert node is not None
    assert (node.config_ack_status, node.config_ack_error) == (status, error)
    assert node.config_ack_version == ctx["config_version"]


@then(parsers.parse('node "{slug}" is not in the dispatchable set and GET /readyz on the control plane is 503'))
def not_dispatchable(api: Any, orchestrator: Any, slug: str) -> None:
    assert slug not in dispatchable_slugs(orchestrator)
    resp = api.get("/readyz")
    assert resp.status_code == 503
    assert "dispatchable node: failing" in resp.text


@given(parsers.parse('node "{slug}" has acked config_version V with status "{status}"'))
def acked(ctx: Ctx, api: Any, orchestrator: Any, slug: str, status: str) -> None:
    register(ctx, api, orchestrator)
    fetch_config(ctx, api)
    resp = api.post("/v1/nodes/config", json=ack_body(ctx, status), token=ctx["jwt"])
    assert resp.status_code == 204, resp.text
    ctx["acked"] = node_row(orchestrator, slug)


@when(parsers.parse('it POSTs /v1/nodes/config with bearer of "{slug}" and {ack}'))
def post_bad_ack(ctx: Ctx, api: Any, slug: str, ack: str) -> None:
    changes: dict[str, dict[str, Any]] = {
        'a valid ack with node_slug "node-02"': {"node_slug": "node-02"},
        'a valid ack with status "ok"': {"status": "ok"},
        'a valid ack with status "APPLIED"': {"status": "APPLIED"},
        'a valid ack with status ""': {"status": ""},
        'a valid ack with "version" 2': {"version": 2},
    }
    if ack == "a body that is not JSON":
        ctx["resp"] = api.post(
            "/v1/nodes/config",
            data='{"version": 1, "status": applied',
            headers={"Content-Type": "application/json"},
            token=ctx["jwt"],
        )
        return
    body = {**ack_body(ctx, "applied"), **changes[ack]}
    ctx["resp"] = api.post("/v1/nodes/config", json=body, token=ctx["jwt"])


@then('the nodes row still has config_ack_status "applied" for config_version V')
def ack_unchanged(ctx: Ctx, orchestrator: Any) -> None:
    node, before = node_row(orchestrator), ctx["acked"]
    assert node is not None
    assert (node.config_ack_status, node.config_ack_version, node.config_ack_at) == (
        "applied",
        ctx["config_version"],
        before.config_ack_at,
    )
    assert SLUG in dispatchable_slugs(orchestrator)
