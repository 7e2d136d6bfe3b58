"""A listed user logs in through cynode's real gateway (embedded PostgreSQL, real app, real hooks).

The orchestrator builds its own plugin manager here, exactly as
``cynode orchestrator serve`` does: built-in local accounts first, then every
installed entry point, this plugin among them.
"""

from __future__ import annotations

import secrets
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from example_users import CAROL_PASSWORD, DAVE_PASSWORD

from cynode_core.orchestrator.app import create_app
from cynode_core.orchestrator.process import open_resources
from cynode_core.orchestrator.settings import OrchestratorSettings
from cynode_core.settings import load_settings

ADMIN_PASSWORD = secrets.token_urlsafe(12)


@pytest.fixture(scope="module")
def gateway(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    """A Flask test client of an orchestrator on its own embedded PostgreSQL (started once per module)."""
    home = tmp_path_factory.mktemp("cynode-home")
    settings = load_settings(
        OrchestratorSettings,
        environ={},
        overrides={"home": home, "admin_password": ADMIN_PASSWORD, "dispatcher_enabled": False},
    )
    resources = open_resources(settings)
    try:
        yield create_app(resources.settings, resources.db, resources.secrets).test_client()
    finally:
        resources.close()


def login(client: Any, handle: str, password: str) -> Any:
    return client.post("/v1/auth/login", json={"handle": handle, "password": password})


def me(client: Any, access_token: str) -> dict[str, Any]:
    resp = client.get("/v1/users/me", headers={"Authorization": f"Bearer {access_token}"})
    assert resp.status_code == 200, resp.get_json()
    return resp.get_json()


def test_a_listed_user_logs_in_and_gets_a_users_row(gateway: Any, users_file: Path) -> None:
    resp = login(gateway, "carol", CAROL_PASSWORD)
    assert resp.status_code == 200, resp.get_json()
    first = me(gateway, resp.get_json()["access_token"])
    assert (first["handle"], first["email"], first["is_active"]) == ("carol", "carol@example.org", True)
    # The second login finds the same row by (external_source, external_id).
    again = login(gateway, "carol", CAROL_PASSWORD)
    assert me(gateway, again.get_json()["access_token"])["id"] == first["id"]


def test_a_wrong_password_is_401_problem_details(gateway: Any, users_file: Path) -> None:
    resp = login(gateway, "dave", CAROL_PASSWORD)
    assert resp.status_code == 401 and resp.content_type == "application/problem+json"
    assert login(gateway, "dave", DAVE_PASSWORD).status_code == 200


def test_local_accounts_still_log_in_beside_the_plugin(gateway: Any, users_file: Path) -> None:
    resp = login(gateway, "admin", ADMIN_PASSWORD)
    assert resp.status_code == 200
    assert me(gateway, resp.get_json()["access_token"])["handle"] == "admin"
