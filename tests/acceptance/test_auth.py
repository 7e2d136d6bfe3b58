"""Steps of features/orchestrator/auth.feature."""

from __future__ import annotations

import base64
import hashlib
import logging
import time

import pytest
from acceptance import tokens_forge as forge
from acceptance.conftest import Ctx, assert_problem, audit_rows, is_uuid, sql_scalar
from harness.nodes import NodeHandle, register
from pytest_bdd import given, parsers, scenarios, then, when
from sqlalchemy import select

from cynode_core.orchestrator.models import PasswordCredential, RefreshSession, User
from cynode_core.orchestrator.services import accounts

scenarios("orchestrator/auth.feature")


@pytest.fixture(autouse=True)
def _capture_all_logs(caplog) -> None:  # type: ignore[no-untyped-def]
    caplog.set_level(logging.DEBUG)


def _password(orchestrator, text: str) -> str:  # type: ignore[no-untyped-def]
    return orchestrator.secrets.admin_password if text in ("<admin_password>", "the admin password") else text


def _register_node(api, orchestrator) -> str:  # type: ignore[no-untyped-def]
    node = NodeHandle("node-auth", "http://127.0.0.1:9")
    register(api, orchestrator.secrets.psk, node)
    return node.jwt


# -- login -----------------------------------------------------------------


@when(parsers.parse('I log in as "{handle}" with the admin password'))
def log_in_admin(ctx: Ctx, api, orchestrator, handle: str) -> None:  # type: ignore[no-untyped-def]
    ctx["resp"] = api.login(handle, orchestrator.secrets.admin_password)


@when(parsers.parse('I log in as "{handle}" with password "{password}"'))
def log_in_with(ctx: Ctx, api, orchestrator, handle: str, password: str) -> None:  # type: ignore[no-untyped-def]
    ctx["resp"] = api.login(handle, _password(orchestrator, password))


@then('the body has a non-empty "access_token" and a non-empty "refresh_token"')
def has_tokens(ctx: Ctx) -> None:
    body = ctx.resp.json()
    assert body["access_token"] and body["refresh_token"]


@then('"token_type" is "Bearer" and "expires_in" is the configured access lifetime')
def token_type(ctx: Ctx, orchestrator) -> None:  # type: ignore[no-untyped-def]
    body = ctx.resp.json()
    assert body["token_type"] == "Bearer"
    assert body["expires_in"] == int(orchestrator.settings.access_token_ttl) == 900


@then('the access token expires at most "expires_in" seconds ahead and carries a session id claim')
def token_claims(ctx: Ctx) -> None:
    body = ctx.resp.json()
    claims = forge.claims_of(body["access_token"])
    assert claims["exp"] - time.time() <= body["expires_in"] + 1
    assert claims["iss"] == "cynodeai" and claims["token_type"] == "access" and is_uuid(claims["sid"])
    assert claims["handle"] == "admin" and is_uuid(claims["user_id"]) and is_uuid(claims["jti"])


@then("the body contains no token field")
def no_token(ctx: Ctx) -> None:
    text = ctx.resp.text
    assert "access_token" not in text and "refresh_token" not in text


@when(parsers.parse("I POST the raw body '{body}' to /v1/auth/login"))
def raw_login(ctx: Ctx, api, body: str) -> None:  # type: ignore[no-untyped-def]
    ctx["resp"] = api.post("/v1/auth/login", data=body, headers={"Content-Type": "application/json"})


@when("I POST a form-encoded login body")
def form_login(ctx: Ctx, api) -> None:  # type: ignore[no-untyped-def]
    ctx["resp"] = api.post("/v1/auth/login", data={"handle": "admin", "password": "x"})


@when("I POST a login body of 11 MiB")
def huge_login(ctx: Ctx, api) -> None:  # type: ignore[no-untyped-def]
    blob = '{"handle": "admin", "password": "' + "x" * (11 * 1024 * 1024) + '"}'
    ctx["resp"] = api.post("/v1/auth/login", data=blob, headers={"Content-Type": "application/json"})


# -- throttling ------------------------------------------------------------


@when(parsers.parse('I send 60 login attempts for different handles from address "{ip}"'))
def sixty_attempts(ctx: Ctx, api, ip: str) -> None:  # type: ignore[no-untyped-def]
    for i in range(60):
        assert api.login(f"user{i}", "x", ip=ip).status_code == 401


@then(parsers.parse('the next attempt from "{ip}" gets a problem response with status 429 and type "{ptype}"'))
def next_attempt_429(ctx: Ctx, api, ip: str, ptype: str) -> None:  # type: ignore[no-untyped-def]
    ctx["resp"] = api.login("user61", "x", ip=ip)
    assert assert_problem(ctx.resp, 429)["type"] == ptype


@then(parsers.parse("the response has a Retry-After header between {low:d} and {high:d} seconds"))
def retry_after(ctx: Ctx, low: int, high: int) -> None:
    value = int(ctx.resp.headers["Retry-After"])
    assert low <= value <= high
    ctx["retry_after"] = value


@then(parsers.parse('a login as "{handle}" with the admin password from "{ip}" also gets 429'))
def admin_also_429(api, orchestrator, handle: str, ip: str) -> None:  # type: ignore[no-untyped-def]
    assert_problem(api.login(handle, orchestrator.secrets.admin_password, ip=ip), 429)


@then(parsers.parse('a login as "{handle}" with the admin password from "{ip}" succeeds'))
def admin_other_ip(api, orchestrator, handle: str, ip: str) -> None:  # type: ignore[no-untyped-def]
    assert api.login(handle, orchestrator.secrets.admin_password, ip=ip).status_code == 200


@then(parsers.re(r'an audit row "(?P<event>[^"]+)" with reason "(?P<reason>[^"]+)" exists$'))
def audit_reason(orchestrator, event: str, reason: str) -> None:  # type: ignore[no-untyped-def]
    assert audit_rows(orchestrator, event_type=event, reason=reason)


@when(parsers.parse('I send 10 logins for "{handle}" with a wrong password from 10 different addresses'))
def ten_wrong(api, handle: str) -> None:  # type: ignore[no-untyped-def]
    for i in range(10):
        assert api.login(handle, "wrong", ip=f"10.2.0.{i}").status_code == 401


@then(
    parsers.parse(
        'a login as "{handle}" with password "{password}" from one of those addresses '
        "gets a problem response with status 429"
    )
)
def failing_address_429(ctx: Ctx, api, handle: str, password: str) -> None:  # type: ignore[no-untyped-def]
    ctx["resp"] = api.login(handle, password, ip="10.2.0.9")
    assert_problem(ctx.resp, 429, "Too many failed logins for this user")


@then(parsers.parse('a login as "{handle}" with password "{password}" from a fresh address succeeds'))
def fresh_address_200(api, handle: str, password: str) -> None:  # type: ignore[no-untyped-def]
    assert api.login(handle, password, ip="10.3.3.3").status_code == 200


@then(parsers.parse('an audit row "{event}" with reason "{reason}" and subject "{handle}" exists'))
def audit_reason_subject(orchestrator, event: str, reason: str, handle: str) -> None:  # type: ignore[no-untyped-def]
    assert audit_rows(orchestrator, event_type=event, reason=reason, subject_handle=handle)


@then(
    parsers.parse(
        'once the Retry-After time has passed "{handle}" can log in with password "{password}" from that address'
    )
)
def after_wait(ctx: Ctx, api, handle: str, password: str) -> None:  # type: ignore[no-untyped-def]
    time.sleep(ctx["retry_after"])
    assert api.login(handle, password, ip="10.2.0.9").status_code == 200


# -- sessions --------------------------------------------------------------


def _log_in(ctx: Ctx, api, handle: str, password: str, key: str = "me") -> None:  # type: ignore[no-untyped-def]
    ctx[key] = api.login(handle, password, ip="10.5.5.5", expect=200).json()


@given(parsers.parse('I am logged in as "{handle}"'))
def logged_in(ctx: Ctx, api, orchestrator, handle: str) -> None:  # type: ignore[no-untyped-def]
    _log_in(ctx, api, handle, orchestrator.secrets.admin_password)
    ctx["first"] = dict(ctx["me"])


@given(parsers.parse('I am logged in as "{handle}" with password "{password}"'))
def logged_in_as(ctx: Ctx, api, handle: str, password: str) -> None:  # type: ignore[no-untyped-def]
    _log_in(ctx, api, handle, password)
    ctx["first"] = dict(ctx["me"])


@given("I have refreshed once")
def refreshed_once(ctx: Ctx, api) -> None:  # type: ignore[no-untyped-def]
    resp = api.post("/v1/auth/refresh", json={"refresh_token": ctx["me"]["refresh_token"]})
    assert resp.status_code == 200
    ctx["me"] = resp.json()


@given(parsers.parse('I hold a second, separate login of "{handle}"'))
def second_login(ctx: Ctx, api, orchestrator, handle: str) -> None:  # type: ignore[no-untyped-def]
    _log_in(ctx, api, handle, orchestrator.secrets.admin_password, key="other")


@when("I refresh with my refresh token")
def refresh_mine(ctx: Ctx, api) -> None:  # type: ignore[no-untyped-def]
    ctx["resp"] = api.post("/v1/auth/refresh", json={"refresh_token": ctx["me"]["refresh_token"]})


@when("I refresh with the first refresh token again")
def refresh_first_again(ctx: Ctx, api) -> None:  # type: ignore[no-untyped-def]
    ctx["resp"] = api.post("/v1/auth/refresh", json={"refresh_token": ctx["first"]["refresh_token"]})


@then("the status is 200 with a new access token and a different refresh token")
def rotated(ctx: Ctx) -> None:
    assert ctx.resp.status_code == 200
    body = ctx.resp.json()
    assert body["refresh_token"] != ctx["first"]["refresh_token"]
    assert body["access_token"] != ctx["first"]["access_token"]
    ctx["second"] = body


@then("the database holds only hashes of both refresh tokens and the first session is inactive")
def hashes_only(ctx: Ctx, orchestrator) -> None:  # type: ignore[no-untyped-def]
    with orchestrator.db.session() as session:
        rows = {r.refresh_token_hash: r for r in session.scalars(select(RefreshSession))}
    first = hashlib.sha256(ctx["first"]["refresh_token"].encode()).digest()
    second = hashlib.sha256(ctx["second"]["refresh_token"].encode()).digest()
    assert not rows[first].is_active and rows[second].is_active
    # Every stored value is a 32-byte SHA-256, never the JWT text itself.
    assert sql_scalar(orchestrator, "SELECT count(*) FROM refresh_sessions WHERE length(refresh_token_hash) <> 32") == 0


@then('an audit row "refresh_failure" records the reuse of a rotated token')
def reuse_audited(orchestrator) -> None:  # type: ignore[no-untyped-def]
    rows = audit_rows(orchestrator, event_type="refresh_failure")
    assert any("reuse" in (r.reason or "") for r in rows)


@then("refreshing with the second refresh token of the chain gets 401")
def chain_second_dead(ctx: Ctx, api) -> None:  # type: ignore[no-untyped-def]
    assert_problem(api.post("/v1/auth/refresh", json={"refresh_token": ctx["me"]["refresh_token"]}), 401)


@then("the access token from the refresh now gets 401 on /v1/users/me")
def chain_access_dead(ctx: Ctx, api) -> None:  # type: ignore[no-untyped-def]
    assert_problem(api.get("/v1/users/me", token=ctx["me"]["access_token"]), 401)


@then("every refresh session of that chain is inactive")
def chain_inactive(ctx: Ctx, orchestrator) -> None:  # type: ignore[no-untyped-def]
    sid = forge.claims_of(ctx["first"]["access_token"])["sid"]
    assert (
        sql_scalar(orchestrator, "SELECT count(*) FROM refresh_sessions WHERE family_id = :f AND is_active", f=sid) == 0
    )
    assert sql_scalar(orchestrator, "SELECT count(*) FROM refresh_sessions WHERE family_id = :f", f=sid) == 2


@then("refreshing the separate login still succeeds")
def other_alive(ctx: Ctx, api) -> None:  # type: ignore[no-untyped-def]
    assert api.post("/v1/auth/refresh", json={"refresh_token": ctx["other"]["refresh_token"]}).status_code == 200


@when(parsers.parse("I send {token} to the refresh endpoint"))
def refresh_with(ctx: Ctx, api, orchestrator, token: str) -> None:  # type: ignore[no-untyped-def]
    me = ctx["me"]
    secret = orchestrator.secrets.jwt_secret
    bodies = {
        "an empty JSON object": {},
        "my access token": {"refresh_token": me["access_token"]},
        "a node JWT": {"refresh_token": _register_node(api, orchestrator)},
        "an expired refresh token": {"refresh_token": forge.expired_like(me["refresh_token"], secret)},
        "a refresh token with a bad signature": {"refresh_token": forge.bad_signature(me["refresh_token"])},
    }
    if token == "a body that is not JSON":
        ctx["resp"] = api.post("/v1/auth/refresh", data="not json", headers={"Content-Type": "application/json"})
    else:
        ctx["resp"] = api.post("/v1/auth/refresh", json=bodies[token])


@when("I log out with my access token and my refresh token in the body")
def logout_with_body(ctx: Ctx, api) -> None:  # type: ignore[no-untyped-def]
    ctx["resp"] = api.post(
        "/v1/auth/logout", json={"refresh_token": ctx["me"]["refresh_token"]}, token=ctx["me"]["access_token"]
    )


@when("I log out with my access token and no body")
def logout_no_body(ctx: Ctx, api) -> None:  # type: ignore[no-untyped-def]
    ctx["resp"] = api.post("/v1/auth/logout", token=ctx["me"]["access_token"])


@given("I have logged out")
def logged_out(ctx: Ctx, api) -> None:  # type: ignore[no-untyped-def]
    assert (
        api.post(
            "/v1/auth/logout",
            json={"refresh_token": ctx["me"]["refresh_token"]},
            token=ctx["me"]["access_token"],
        ).status_code
        == 204
    )


@then("the status is 204 with an empty body")
def empty_204(ctx: Ctx) -> None:
    assert ctx.resp.status_code == 204 and ctx.resp.content == b""


@then("refreshing with my refresh token gets 401")
def refresh_dead(ctx: Ctx, api) -> None:  # type: ignore[no-untyped-def]
    assert_problem(api.post("/v1/auth/refresh", json={"refresh_token": ctx["me"]["refresh_token"]}), 401)


@then(parsers.parse("my access token gets 401 on {path}"))
def access_dead(ctx: Ctx, api, path: str) -> None:  # type: ignore[no-untyped-def]
    assert_problem(api.get(path, token=ctx["me"]["access_token"]), 401)


@when("I GET /v1/users/me with my access token")
def get_me(ctx: Ctx, api) -> None:  # type: ignore[no-untyped-def]
    ctx["resp"] = api.get("/v1/users/me", token=ctx["me"]["access_token"])


@then('the status is 200 and the body has a UUID "id", "handle" "admin" and "is_active" true')
def me_body(ctx: Ctx) -> None:
    body = ctx.resp.json()
    assert (
        ctx.resp.status_code == 200 and is_uuid(body["id"]) and body["handle"] == "admin" and body["is_active"] is True
    )


@then("the body contains no password hash and no token")
def me_clean(ctx: Ctx) -> None:
    text = ctx.resp.text
    assert "argon2" not in text and "password" not in text and "token" not in text


@when(parsers.parse("I GET /v1/users/me with the Authorization header {header}"))
def me_with_header(ctx: Ctx, api, orchestrator, header: str) -> None:  # type: ignore[no-untyped-def]
    access = ctx["me"]["access_token"]
    basic = base64.b64encode(f"admin:{orchestrator.secrets.admin_password}".encode()).decode()
    values = {
        "absent": None,
        '"Bearer" alone': "Bearer",
        "Basic with the admin password": f"Basic {basic}",
        "Bearer and an expired access token": f"Bearer {forge.expired_like(access, orchestrator.secrets.jwt_secret)}",
        "Bearer and an access token with an edited payload": f"Bearer {forge.edited_payload(access)}",
        "Bearer and an access token with alg none": f"Bearer {forge.alg_none(access)}",
        "Bearer and an access token signed with another secret": f"Bearer {forge.other_secret(access)}",
        "Bearer and my refresh token": f"Bearer {ctx['me']['refresh_token']}",
        "Bearer and a node JWT": f"Bearer {_register_node(api, orchestrator)}",
    }
    value = values[header]
    ctx["resp"] = api.get("/v1/users/me", headers={"Authorization": value} if value else {})


@when(parsers.parse('an administrator disables "{handle}"'))
def disable(orchestrator, handle: str) -> None:  # type: ignore[no-untyped-def]
    with orchestrator.db.session() as session:
        accounts.set_active(session, handle, False)


@then(parsers.parse('a login as "{handle}" with password "{password}" gets 401'))
def login_401(api, handle: str, password: str) -> None:  # type: ignore[no-untyped-def]
    assert_problem(api.login(handle, password), 401, "Invalid credentials")


@then(
    parsers.parse(
        'a login as "{handle}" with password "{password}" gets a problem response with status 401 and detail "{detail}"'
    )
)
def login_401_detail(api, handle: str, password: str, detail: str) -> None:  # type: ignore[no-untyped-def]
    assert_problem(api.login(handle, password), 401, detail)


@then(parsers.parse('the users row for "{handle}" still exists'))
@then(parsers.parse('a users row with handle "{handle}" exists'))
def user_row(orchestrator, handle: str) -> None:  # type: ignore[no-untyped-def]
    with orchestrator.db.session() as session:
        assert session.scalar(select(User).where(User.handle == handle)) is not None


@then("the password credential row holds an argon2id hash, not the admin password")
def argon_hash(orchestrator) -> None:  # type: ignore[no-untyped-def]
    with orchestrator.db.session() as session:
        cred = session.scalar(select(PasswordCredential).join(User).where(User.handle == "admin"))
    assert cred.hash_alg == "argon2id"
    assert cred.password_hash.startswith(b"$argon2id$v=19$m=65536,t=3,p=2$")
    assert orchestrator.secrets.admin_password.encode() not in cred.password_hash


@then("no database column and no log line contains the admin password or any issued token")
def nothing_leaks(ctx: Ctx, orchestrator, caplog) -> None:  # type: ignore[no-untyped-def]
    needles = [
        orchestrator.secrets.admin_password,
        ctx["first"]["access_token"],
        ctx["first"]["refresh_token"],
        ctx["me"]["access_token"],
        ctx["me"]["refresh_token"],
    ]
    with orchestrator.db.session() as session:
        from sqlalchemy import text

        tables = [r[0] for r in session.execute(text("SELECT tablename FROM pg_tables WHERE schemaname = 'public'"))]
        dump = "".join(
            str(session.execute(text(f'SELECT json_agg(t)::text FROM "{t}" t')).scalar() or "") for t in tables
        )
    logs = "\n".join(r.getMessage() for r in caplog.records)
    for needle in needles:
        assert needle not in dump and needle not in logs
