"""First checks of the gateway's auth routes on a real database."""

from __future__ import annotations

from harness.api import ApiClient


def test_login_me_refresh_logout(api: ApiClient, orchestrator) -> None:  # type: ignore[no-untyped-def]
    resp = api.login("admin", orchestrator.secrets.admin_password, ip="10.9.9.9")
    assert resp.status_code == 200, resp.text
    body = resp.json()
    assert body["token_type"] == "Bearer" and body["expires_in"] == 900
    me = api.get("/v1/users/me", token=body["access_token"])
    assert me.status_code == 200 and me.json()["handle"] == "admin"
    r2 = api.post("/v1/auth/refresh", json={"refresh_token": body["refresh_token"]})
    assert r2.status_code == 200
    out = api.post("/v1/auth/logout", token=r2.json()["access_token"])
    assert out.status_code == 204
    me2 = api.get("/v1/users/me", token=r2.json()["access_token"])
    assert me2.status_code == 401
    assert me2.headers["Content-Type"] == "application/problem+json"
