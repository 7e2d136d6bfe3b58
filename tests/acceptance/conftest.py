"""Steps shared by the orchestrator features (HTTP through the app with ``api``, real database)."""

from __future__ import annotations

import uuid
from typing import Any

import pytest
import requests
from harness.api import ApiClient
from pytest_bdd import given, parsers, then
from sqlalchemy import select, text

from cynode_core.orchestrator.models import AuthAuditLog


class Ctx(dict):
    """State carried between the steps of one scenario."""

    @property
    def resp(self) -> Any:
        return self["resp"]


@pytest.fixture
def ctx() -> Ctx:
    return Ctx()


def audit_rows(orchestrator, **where: Any) -> list[AuthAuditLog]:  # type: ignore[no-untyped-def]
    with orchestrator.db.session() as session:
        stmt = select(AuthAuditLog)
        for key, value in where.items():
            stmt = stmt.where(getattr(AuthAuditLog, key) == value)
        return list(session.scalars(stmt))


def sql_scalar(orchestrator, query: str, **params: Any) -> Any:  # type: ignore[no-untyped-def]
    with orchestrator.db.session() as session:
        return session.execute(text(query), params).scalar()


def assert_problem(resp: requests.Response, status: int, detail: str | None = None) -> dict[str, Any]:
    assert resp.status_code == status, resp.text
    assert resp.headers["Content-Type"] == "application/problem+json"
    body = resp.json()
    assert body["status"] == status
    assert body["type"].startswith(("urn:cynodeai:error:", "https://cynode.ai/specs/"))
    assert isinstance(body["title"], str) and body["title"]
    assert "Traceback" not in resp.text
    if detail is not None:
        assert body.get("detail") == detail
    return body


@given("the gateway is running against an empty migrated database")
def gateway_running(api: ApiClient) -> None:
    assert api.get("/healthz").status_code == 200


@given('the seeded user "admin" has the fixture admin password')
def seeded_admin(orchestrator) -> None:  # type: ignore[no-untyped-def]
    assert orchestrator.secrets.admin_password != "admin123"


@given(parsers.parse('user "{handle}" exists with password "{password}"'))
def user_exists(orchestrator, handle: str, password: str) -> None:  # type: ignore[no-untyped-def]
    from cynode_core.orchestrator.services import accounts

    with orchestrator.db.session() as session:
        accounts.create_user(session, handle, password)


@then(parsers.parse("the status is {status:d}"))
def status_is(ctx: Ctx, status: int) -> None:
    assert ctx.resp.status_code == status, ctx.resp.text


@then(parsers.parse('I get a problem response with status {status:d} and detail "{detail}"'))
def problem_with_detail(ctx: Ctx, status: int, detail: str) -> None:
    assert_problem(ctx.resp, status, detail)


@then(parsers.parse("I get a problem response with status {status:d}"))
def problem_status(ctx: Ctx, status: int) -> None:
    assert_problem(ctx.resp, status)


@then(parsers.parse('an audit row "{event}" with success {success} exists for "{handle}"'))
def audit_for(orchestrator, event: str, success: str, handle: str) -> None:  # type: ignore[no-untyped-def]
    rows = audit_rows(orchestrator, event_type=event, success=(success == "true"))
    assert any(r.subject_handle == handle or r.user_id is not None for r in rows), rows


@then(parsers.parse('an audit row "{event}" with success {success} exists'))
def audit_exists(orchestrator, event: str, success: str) -> None:  # type: ignore[no-untyped-def]
    assert audit_rows(orchestrator, event_type=event, success=(success == "true"))


def is_uuid(value: Any) -> bool:
    try:
        uuid.UUID(str(value))
        return True
    except ValueError:
        return False
