"""Personal API keys (``/v1/auth/api-keys``, docs/wire_contract.md#api-keys) on a real database.

The app runs in this process (``api``); the assertions also read the
database, where the key must never be (only its hash and prefix).
"""

from __future__ import annotations

import hashlib
import json
import re
from typing import Any

import pytest
import requests
from harness.api import ApiClient
from harness.orchestrator import USER_PASSWORD, create_users, rows

from cynode_core.orchestrator.services import accounts

KEYS = "/v1/auth/api-keys"
INVALID = "Invalid or expired token"


@pytest.fixture
def alice(orchestrator: Any, api: ApiClient) -> ApiClient:
    """alice, logged in (her access token is ``alice.token``)."""
    create_users(orchestrator.db, "alice", "bob")
    api.login("alice", USER_PASSWORD, expect=200)
    return api


def new_key(api: ApiClient, token: str, **body: Any) -> dict[str, Any]:
    resp = api.post(KEYS, token=token, json={"name": "editor", **body})
    assert resp.status_code == 201, resp.text
    return dict(resp.json())


def detail(resp: requests.Response) -> str:
    assert resp.headers["Content-Type"] == "application/problem+json", resp.headers
    return str(resp.json()["detail"])


def audit_events(orchestrator: Any, event: str) -> list[Any]:
    return rows(orchestrator.db, "SELECT * FROM auth_audit_log WHERE event_type = :e ORDER BY created_at", e=event)


def test_create_list_revoke(alice: ApiClient, orchestrator: Any) -> None:
    first = new_key(alice, alice.token, name="  first key  ")
    assert set(first) == {"id", "name", "key", "prefix", "created_at"}  # no expires_at: never expires
    assert re.fullmatch(r"cyk_[A-Za-z0-9_-]{43}", first["key"]) and first["prefix"] == first["key"][:12]
    assert first["name"] == "first key"
    second = new_key(alice, alice.token, name="second", expires_in_days=30)
    assert second["expires_at"] > second["created_at"]

    listed = alice.get(KEYS, token=alice.token)
    assert listed.status_code == 200
    data = listed.json()["data"]
    assert [k["id"] for k in data] == [second["id"], first["id"]]  # newest first
    assert all("key" not in k for k in data) and first["key"] not in listed.text
    assert data[1] == {k: first[k] for k in ("id", "name", "prefix", "created_at")}

    assert alice.send("DELETE", f"{KEYS}/{first['id']}", token=alice.token).status_code == 204
    assert alice.send("DELETE", f"{KEYS}/{first['id']}", token=alice.token).status_code == 204  # already revoked
    after = {k["id"]: k for k in alice.get(KEYS, token=alice.token).json()["data"]}
    assert "revoked_at" in after[first["id"]] and "revoked_at" not in after[second["id"]]
    # One row of each, the revocation that changed nothing adds none; the key is in no audit row.
    assert len(audit_events(orchestrator, "api_key_created")) == 2
    revoked = audit_events(orchestrator, "api_key_revoked")
    assert [r["reason"] for r in revoked] == [f"key {first['id']}"]
    everything = json.dumps([dict(r) for r in rows(orchestrator.db, "SELECT * FROM auth_audit_log")], default=str)
    assert first["key"] not in everything and first["prefix"] not in everything


def test_the_key_is_never_logged(alice: ApiClient, json_log_lines: Any, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level("DEBUG", logger="cynode_core")
    created = new_key(alice, alice.token)
    assert alice.post("/v1/tasks", token=created["key"], json={"prompt": "x", "input_mode": "commands"}).ok
    alice.send("DELETE", f"{KEYS}/{created['id']}", token=alice.token)
    assert alice.get("/v1/tasks", token=created["key"]).status_code == 401
    assert caplog.records, "nothing was logged: the check below would be empty"
    assert created["key"] not in json_log_lines.getvalue() + caplog.text


def test_expires_in_days_sets_the_end(alice: ApiClient, orchestrator: Any) -> None:
    created = new_key(alice, alice.token, expires_in_days=3650)
    [row] = rows(orchestrator.db, "SELECT created_at, expires_at FROM api_keys WHERE id = :id", id=created["id"])
    assert (row["expires_at"] - row["created_at"]).days == 3650


def test_the_database_holds_the_hash_never_the_key(alice: ApiClient, orchestrator: Any) -> None:
    created = new_key(alice, alice.token)
    [row] = rows(orchestrator.db, "SELECT * FROM api_keys")
    assert row["key_hash"] == hashlib.sha256(created["key"].encode()).hexdigest()
    assert row["prefix"] == created["key"][:12]
    assert created["key"] not in json.dumps(dict(row), default=str)


def test_a_key_authenticates_user_routes(alice: ApiClient, orchestrator: Any) -> None:
    key = new_key(alice, alice.token)["key"]
    me = alice.get("/v1/users/me", token=key)
    assert me.status_code == 200 and me.json()["handle"] == "alice"
    made = alice.post("/v1/tasks", token=key, json={"prompt": "echo hi", "input_mode": "commands"})
    assert made.status_code == 201, made.text
    listed = alice.get("/v1/tasks", token=key)
    assert listed.status_code == 200 and [t["id"] for t in listed.json()["tasks"]] == [made.json()["id"]]
    [task] = rows(orchestrator.db, "SELECT u.handle FROM tasks t JOIN users u ON u.id = t.created_by")
    assert task["handle"] == "alice"
    # The scheme is case-insensitive, as for JWTs.
    assert alice.get("/v1/tasks", headers={"Authorization": f"bearer {key}"}).status_code == 200


@pytest.mark.parametrize("token", ["cyk_", "cyk_short", "cyk_" + "A" * 43, "cyk_" + "A" * 44])
def test_a_key_that_is_not_one_is_refused_as_a_bad_token(alice: ApiClient, token: str) -> None:
    resp = alice.get("/v1/tasks", token=token)
    assert resp.status_code == 401 and detail(resp) == INVALID


def test_a_revoked_key_stops_at_once(alice: ApiClient) -> None:
    created = new_key(alice, alice.token)
    assert alice.get("/v1/tasks", token=created["key"]).status_code == 200
    assert alice.send("DELETE", f"{KEYS}/{created['id']}", token=alice.token).status_code == 204
    resp = alice.get("/v1/tasks", token=created["key"])
    assert resp.status_code == 401 and detail(resp) == INVALID


def test_an_expired_key_is_refused(alice: ApiClient, orchestrator: Any) -> None:
    created = new_key(alice, alice.token, expires_in_days=1)
    assert alice.get("/v1/tasks", token=created["key"]).status_code == 200
    rows(orchestrator.db, "UPDATE api_keys SET expires_at = now() - interval '1 second' RETURNING id")
    resp = alice.get("/v1/tasks", token=created["key"])
    assert resp.status_code == 401 and detail(resp) == INVALID
    listed = alice.get(KEYS, token=alice.token).json()["data"]
    assert "expires_at" in listed[0] and "revoked_at" not in listed[0]  # listed still, as it is


def test_an_inactive_users_keys_stop_at_once(alice: ApiClient, orchestrator: Any) -> None:
    key = new_key(alice, alice.token)["key"]
    # The per-request check alone (the flag flipped under the app's feet) ...
    rows(orchestrator.db, "UPDATE users SET is_active = false WHERE handle = 'alice' RETURNING id")
    resp = alice.get("/v1/tasks", token=key)
    assert resp.status_code == 401 and detail(resp) == INVALID
    rows(orchestrator.db, "UPDATE users SET is_active = true WHERE handle = 'alice' RETURNING id")
    assert alice.get("/v1/tasks", token=key).status_code == 200
    # ... and disabling the user (cynode admin user disable) revokes the keys for good.
    with orchestrator.db.session() as session:
        accounts.set_active(session, "alice", False)
    assert alice.get("/v1/tasks", token=key).status_code == 401
    with orchestrator.db.session() as session:
        accounts.set_active(session, "alice", True)
    assert alice.get("/v1/tasks", token=key).status_code == 401
    [row] = rows(orchestrator.db, "SELECT revoked_at FROM api_keys")
    assert row["revoked_at"] is not None


def test_a_deleted_users_keys_are_gone(orchestrator: Any, api: ApiClient) -> None:
    create_users(orchestrator.db, "carol")
    api.login("carol", USER_PASSWORD, expect=200)
    key = new_key(api, api.token)["key"]
    rows(orchestrator.db, "DELETE FROM users WHERE handle = 'carol' RETURNING id")
    assert rows(orchestrator.db, "SELECT id FROM api_keys") == []
    assert api.get("/v1/tasks", token=key).status_code == 401


def test_another_users_key_or_an_unknown_id_is_404(alice: ApiClient, orchestrator: Any) -> None:
    created = new_key(alice, alice.token)
    bob = ApiClient.in_process(orchestrator.app)
    bob.login("bob", USER_PASSWORD, expect=200)
    for key_id in (created["id"], "00000000-0000-4000-8000-000000000000", "not-a-uuid"):
        resp = bob.send("DELETE", f"{KEYS}/{key_id}", token=bob.token)
        assert resp.status_code == 404 and detail(resp) == "No such API key", key_id
    assert bob.get(KEYS, token=bob.token).json() == {"data": []}
    assert alice.get("/v1/tasks", token=created["key"]).status_code == 200  # still alive


def test_a_key_cannot_manage_keys_or_log_out(alice: ApiClient, orchestrator: Any) -> None:
    created = new_key(alice, alice.token)
    key = created["key"]
    for method, path, body in (
        ("POST", KEYS, {"name": "successor"}),
        ("POST", KEYS, {"name": ""}),  # refused before the body is read
        ("GET", KEYS, None),
        ("DELETE", f"{KEYS}/{created['id']}", None),
        ("POST", "/v1/auth/logout", None),
    ):
        resp = alice.send(method, path, token=key, json=body)
        assert resp.status_code == 403, (method, path, resp.text)
        assert detail(resp) == "This needs a login session; an API key cannot do it"
    assert rows(orchestrator.db, "SELECT count(*) AS n FROM api_keys WHERE revoked_at IS NULL")[0]["n"] == 1
    assert alice.get("/v1/tasks", token=key).status_code == 200
    assert alice.get("/v1/tasks", token=alice.token).status_code == 200  # the session lives on


def test_use_is_marked_at_most_once_a_minute(alice: ApiClient, orchestrator: Any) -> None:
    created = new_key(alice, alice.token)
    assert "last_used_at" not in alice.get(KEYS, token=alice.token).json()["data"][0]
    for _ in range(5):
        assert alice.get("/v1/tasks", token=created["key"], headers={"User-Agent": "openai-test"}).status_code == 200
    used = audit_events(orchestrator, "api_key_used")
    assert len(used) == 1
    assert (used[0]["reason"], used[0]["user_agent"]) == (f"key {created['id']}", "openai-test")
    first_mark = alice.get(KEYS, token=alice.token).json()["data"][0]["last_used_at"]
    # A minute later (moved back in the database), the next use marks again, once.
    rows(orchestrator.db, "UPDATE api_keys SET last_used_at = last_used_at - interval '61 seconds' RETURNING id")
    for _ in range(3):
        assert alice.get("/v1/tasks", token=created["key"]).status_code == 200
    assert len(audit_events(orchestrator, "api_key_used")) == 2
    assert alice.get(KEYS, token=alice.token).json()["data"][0]["last_used_at"] >= first_mark


BAD_BODIES = [
    {},
    {"name": ""},
    {"name": "   "},
    {"name": "x" * 101},
    {"name": "a\u0000b"},
    {"name": "line\nbreak"},
    {"name": 5},
    {"name": None},
    {"name": "ok", "expires_in_days": 0},
    {"name": "ok", "expires_in_days": 3651},
    {"name": "ok", "expires_in_days": -1},
    {"name": "ok", "expires_in_days": "30"},
    {"name": "ok", "expires_in_days": 30.5},
    {"name": "ok", "expires_in_days": 30.0},
    {"name": "ok", "expires_in_days": True},
    {"name": "ok", "expires_in_days": 10**30},
    ["name"],
]


@pytest.mark.parametrize("body", BAD_BODIES, ids=[json.dumps(b)[:40] for b in BAD_BODIES])
def test_bad_input_is_400(alice: ApiClient, orchestrator: Any, body: Any) -> None:
    resp = alice.post(KEYS, token=alice.token, json=body)
    assert resp.status_code == 400, resp.text
    assert resp.json()["type"] == "urn:cynodeai:error:validation"
    assert rows(orchestrator.db, "SELECT id FROM api_keys") == []


def test_a_lone_surrogate_in_the_name_is_400(alice: ApiClient) -> None:
    resp = alice.post(
        KEYS, token=alice.token, data=b'{"name": "a\\ud800b"}', headers={"Content-Type": "application/json"}
    )
    assert resp.status_code == 400 and detail(resp) == "Invalid request body"


def test_the_edges_of_the_input_are_accepted(alice: ApiClient) -> None:
    assert new_key(alice, alice.token, name="x" * 100, expires_in_days=1)["name"] == "x" * 100
    assert new_key(alice, alice.token, name="é" * 100, expires_in_days=None)["name"] == "é" * 100


def test_at_most_100_live_keys(alice: ApiClient, orchestrator: Any) -> None:
    user = rows(orchestrator.db, "SELECT id FROM users WHERE handle = 'alice'")[0]["id"]
    rows(
        orchestrator.db,
        "INSERT INTO api_keys (id, user_id, name, prefix, key_hash) "
        "SELECT gen_random_uuid(), :u, 'k' || n, 'cyk_xxxxxxxx', md5(n::text) FROM generate_series(1, 99) n "
        "RETURNING id",
        u=user,
    )
    last = new_key(alice, alice.token, name="the hundredth")
    refused = alice.post(KEYS, token=alice.token, json={"name": "one too many"})
    assert refused.status_code == 409
    assert refused.json()["type"] == "https://cynode.ai/specs/conflict"
    assert "revoke one first" in detail(refused)
    # Revoked and expired keys do not count.
    assert alice.send("DELETE", f"{KEYS}/{last['id']}", token=alice.token).status_code == 204
    new_key(alice, alice.token, name="in its place")
    assert alice.post(KEYS, token=alice.token, json={"name": "over again"}).status_code == 409
    rows(orchestrator.db, "UPDATE api_keys SET expires_at = now() - interval '1 day' WHERE name = 'k1' RETURNING id")
    new_key(alice, alice.token, name="after an expiry")
    assert len(alice.get(KEYS, token=alice.token).json()["data"]) == 102
