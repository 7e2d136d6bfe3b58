"""First checks of the gateway's auth routes on a real database."""

from __future__ import annotations


def login(client, handle, password, ip="10.9.9.9"):  # type: ignore[no-untyped-def]
    return client.post("/v1/auth/login", json={"handle": handle, "password": password}, headers={"X-Forwarded-For": ip})


def test_login_me_refresh_logout(client, orchestrator) -> None:  # type: ignore[no-untyped-def]
    resp = login(client, "admin", orchestrator.secrets.admin_password)
    assert resp.status_code == 200, resp.get_data(as_text=True)
    body = resp.get_json()
    assert body["token_type"] == "Bearer" and body["expires_in"] == 900
    me = client.get("/v1/users/me", headers={"Authorization": f"Bearer {body['access_token']}"})
    assert me.status_code == 200 and me.get_json()["handle"] == "admin"
    r2 = client.post("/v1/auth/refresh", json={"refresh_token": body["refresh_token"]})
    assert r2.status_code == 200
    out = client.post("/v1/auth/logout", headers={"Authorization": f"Bearer {r2.get_json()['access_token']}"})
    assert out.status_code == 204
    me2 = client.get("/v1/users/me", headers={"Authorization": f"Bearer {r2.get_json()['access_token']}"})
    assert me2.status_code == 401
    assert me2.content_type == "application/problem+json"
