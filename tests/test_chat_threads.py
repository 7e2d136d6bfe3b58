"""Chat threads over the gateway (issue 13, item 4; chat contract 7): problem+json, owner-only, paging.

Real parts: the orchestrator app on its PostgreSQL database; the threads'
messages are written by the chat service itself, as a turn writes them.
"""

from __future__ import annotations

import uuid
from typing import Any

from harness.api import ApiClient
from harness.orchestrator import USER_PASSWORD, create_users
from sqlalchemy import text

from cynode_core.orchestrator.services import chat_threads
from cynode_core.orchestrator.services.tasks import default_project


def login(orchestrator: Any, handle: str) -> ApiClient:
    client = ApiClient.in_process(orchestrator.app)
    client.login(handle, USER_PASSWORD, expect=200)
    return client


def test_threads_are_created_listed_read_renamed_and_paged(orchestrator: Any) -> None:
    create_users(orchestrator.db, "alice", "bob")
    alice, bob = login(orchestrator, "alice"), login(orchestrator, "bob")
    made = [alice.request("POST", "/v1/chat/threads", json={"title": f"t{i}"}) for i in range(3)]
    assert [r.status_code for r in made] == [201, 201, 201]
    first = made[0].json()
    assert first["id"] == first["thread_id"] and first["title"] == "t0" and "summary" not in first
    assert first["created_at"].endswith("Z")
    with orchestrator.db.session() as session:
        alice_id = uuid.UUID(alice.request("GET", "/v1/users/me").json()["id"])
        assert first["project_id"] == str(default_project(session, alice_id))
        thread = chat_threads.own_thread(session, alice_id, uuid.UUID(first["id"]))
        assert thread is not None
        for n in range(3):
            chat_threads.append_message(session, thread, "user" if n % 2 == 0 else "assistant", f"m{n}", {"n": n})

    page = alice.request("GET", "/v1/chat/threads", params={"limit": 2}).json()
    assert [t["title"] for t in page["data"]] == ["t0", "t2"]  # t0 was touched last by its messages
    assert page["next_offset"] == 2 and page["next_cursor"] == "2"
    rest = alice.request("GET", "/v1/chat/threads", params={"cursor": "2"}).json()
    assert [t["title"] for t in rest["data"]] == ["t1"] and "next_offset" not in rest

    messages = alice.request("GET", f"/v1/chat/threads/{first['id']}/messages", params={"limit": 2}).json()
    assert [m["content"] for m in messages["data"]] == ["m0", "m1"] and messages["total_count"] == 3
    assert messages["data"][1]["metadata"] == {"n": 1} and messages["next_offset"] == 2

    renamed = alice.request("PATCH", f"/v1/chat/threads/{first['id']}", json={"title": "  new name ", "summary": "s"})
    assert renamed.status_code == 200 and renamed.json()["title"] == "new name" and renamed.json()["summary"] == "s"
    cleared = alice.request("PATCH", f"/v1/chat/threads/{first['id']}", json={"title": None})
    assert "title" not in cleared.json()

    # Bob sees none of it: 404, as for an id that does not exist.
    for path in (f"/v1/chat/threads/{first['id']}", f"/v1/chat/threads/{first['id']}/messages"):
        resp = bob.request("GET", path)
        assert resp.status_code == 404 and resp.json()["detail"] == "Thread not found"
        assert resp.headers["Content-Type"] == "application/problem+json"
    assert bob.request("PATCH", f"/v1/chat/threads/{first['id']}", json={"title": "x"}).status_code == 404
    assert bob.request("GET", "/v1/chat/threads").json()["data"] == []


def test_bad_thread_input_is_400_problem_json(orchestrator: Any) -> None:
    create_users(orchestrator.db, "carol")
    carol = login(orchestrator, "carol")
    thread = carol.request("POST", "/v1/chat/threads").json()
    bad: list[tuple[str, str, Any, dict[str, Any] | None]] = [
        ("GET", "/v1/chat/threads/not-a-uuid", None, None),
        ("GET", "/v1/chat/threads", None, {"limit": "0"}),
        ("GET", "/v1/chat/threads", None, {"limit": "101"}),
        ("GET", "/v1/chat/threads", None, {"offset": "-1"}),
        ("GET", "/v1/chat/threads", None, {"project_id": str(uuid.uuid4())}),
        ("POST", "/v1/chat/threads", {"title": ""}, None),
        ("POST", "/v1/chat/threads", {"title": "x" * 201}, None),
        ("POST", "/v1/chat/threads", {"title": 5}, None),
        ("POST", "/v1/chat/threads", {"title": "a\x00b"}, None),
        ("POST", "/v1/chat/threads", {"project_id": "nope"}, None),
        ("PATCH", f"/v1/chat/threads/{thread['id']}", {}, None),
        ("PATCH", f"/v1/chat/threads/{thread['id']}", {"summary": "x" * 501}, None),
    ]
    for method, path, body, params in bad:
        resp = carol.request(method, path, json=body, params=params)
        assert resp.status_code == 400, (method, path, body, params, resp.text)
        assert resp.headers["Content-Type"] == "application/problem+json"
    missing = carol.request("PATCH", f"/v1/chat/threads/{thread['id']}", json={})
    assert missing.json()["detail"] == "title is required in body"


def test_a_new_thread_becomes_the_active_conversation(orchestrator: Any) -> None:
    create_users(orchestrator.db, "dave")
    dave = login(orchestrator, "dave")
    dave_id = uuid.UUID(dave.request("GET", "/v1/users/me").json()["id"])
    with orchestrator.db.session() as session:
        project = default_project(session, dave_id)
        old = chat_threads.active_thread(session, dave_id, project, 7200)
        again = chat_threads.active_thread(session, dave_id, project, 7200)
        assert again.id == old.id
    new = dave.request("POST", "/v1/chat/threads").json()
    with orchestrator.db.session() as session:
        assert str(chat_threads.active_thread(session, dave_id, project, 7200).id) == new["id"]
        session.execute(text("UPDATE chat_threads SET last_activity_at = now() - interval '3 hours'"))
    with orchestrator.db.session() as session:
        fresh = chat_threads.active_thread(session, dave_id, project, 7200)
        assert str(fresh.id) not in (new["id"], str(old.id))
