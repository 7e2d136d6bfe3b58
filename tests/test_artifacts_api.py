"""``/v1/artifacts*`` in the app on a real PostgreSQL with the built-in ``pg`` blob store (artifacts_contract.md 3, 4).

Upload (raw and multipart), download (whole, ranges, ETag), replace,
delete, list, read grants; who may do what (another user's artifact is a
404, a grantee may read but not change); the limits (upload size, quota,
paths) with clear 4xx and nothing left behind.
"""

from __future__ import annotations

import gc
import hashlib
import os
from typing import Any

import pytest
from acceptance.conftest import assert_problem
from harness.api import ApiClient
from harness.orchestrator import USER_PASSWORD, OrchestratorUnderTest, create_users, rows

ARTIFACTS = "/v1/artifacts"


@pytest.fixture
def people(orchestrator: OrchestratorUnderTest, api: ApiClient) -> dict[str, str]:
    """Access tokens of alice, bob and the admin."""
    create_users(orchestrator.db, "alice", "bob")
    tokens = {h: api.login(h, USER_PASSWORD, expect=200).json()["access_token"] for h in ("alice", "bob")}
    tokens["admin"] = api.login("admin", orchestrator.secrets.admin_password, expect=200).json()["access_token"]
    return tokens


def upload(api: ApiClient, token: str, path: str, content: bytes, **params: Any) -> Any:
    query = {"scope_level": "user", "path": path, **params}
    return api.post(ARTIFACTS, token=token, params=query, data=content, headers={"Content-Type": "text/plain"})


def blob_rows(orchestrator: OrchestratorUnderTest) -> int:
    return len(rows(orchestrator.db, "SELECT key FROM artifact_blobs"))


def test_an_upload_is_stored_with_its_checksum_and_downloads_whole_or_in_ranges(
    api: ApiClient, people: dict[str, str], orchestrator: OrchestratorUnderTest
) -> None:
    content = os.urandom(3 * 1024 * 1024 + 17)  # several 1 MiB chunks
    created = upload(api, people["alice"], "/reports/../data/run 1.bin", content)
    assert_problem(created, 400, "path must not contain parent directory segments")
    created = upload(api, people["alice"], "/data/run 1.bin", content)
    assert created.status_code == 201, created.text
    body = created.json()
    assert body["path"] == "data/run 1.bin" and body["size_bytes"] == len(content)
    assert body["checksum_sha256"] == hashlib.sha256(content).hexdigest()
    assert created.headers["Location"] == f"{ARTIFACTS}/{body['artifact_id']}"
    assert "storage_ref" not in body
    meta = api.get(f"{ARTIFACTS}/{body['artifact_id']}/metadata", token=people["alice"])
    assert meta.status_code == 200 and meta.json() == body
    assert_problem(api.get(f"{ARTIFACTS}/not-an-id/metadata", token=people["alice"]), 400, "invalid artifact id")

    got = api.get(f"{ARTIFACTS}/{body['artifact_id']}", token=people["alice"])
    assert got.status_code == 200 and got.content == content
    assert got.headers["Content-Type"].startswith("text/plain")
    assert got.headers["ETag"] == f'"{body["checksum_sha256"]}"'
    assert got.headers["Content-Disposition"] == "attachment; filename=\"run 1.bin\"; filename*=UTF-8''run%201.bin"
    assert got.headers["X-Content-Type-Options"] == "nosniff"
    again = api.get(
        f"{ARTIFACTS}/{body['artifact_id']}", token=people["alice"], headers={"If-None-Match": got.headers["ETag"]}
    )
    assert again.status_code == 304 and again.content == b""

    for header, expected in (
        ("bytes=0-9", content[:10]),
        (f"bytes={1024 * 1024 - 5}-{1024 * 1024 + 5}", content[1024 * 1024 - 5 : 1024 * 1024 + 6]),
        ("bytes=-7", content[-7:]),
        (f"bytes={len(content) - 3}-", content[-3:]),
    ):
        part = api.get(f"{ARTIFACTS}/{body['artifact_id']}", token=people["alice"], headers={"Range": header})
        assert (part.status_code, part.content) == (206, expected), header
        assert part.headers["Content-Range"].endswith(f"/{len(content)}")
    refused = api.get(
        f"{ARTIFACTS}/{body['artifact_id']}", token=people["alice"], headers={"Range": f"bytes={len(content)}-"}
    )
    assert_problem(refused, 416)
    assert refused.headers["Content-Range"] == f"bytes */{len(content)}"


def test_multipart_replace_delete_and_the_same_path_twice(
    api: ApiClient, people: dict[str, str], orchestrator: OrchestratorUnderTest
) -> None:
    made = api.post(
        ARTIFACTS,
        token=people["alice"],
        params={"scope_level": "user"},
        files={"file": ("notes.md", b"# notes\n", "text/markdown")},
    )
    assert made.status_code == 201, made.text
    assert (made.json()["path"], made.json()["content_type"]) == ("notes.md", "text/markdown")
    artifact = made.json()["artifact_id"]
    assert_problem(upload(api, people["alice"], "notes.md", b"again"), 409, "artifact already exists at path")
    assert blob_rows(orchestrator) == 1  # the refused upload's blob is gone

    replaced = api.send("PUT", f"{ARTIFACTS}/{artifact}", token=people["alice"], data=b"# notes v2\n")
    assert replaced.status_code == 200, replaced.text
    assert replaced.json()["checksum_sha256"] == hashlib.sha256(b"# notes v2\n").hexdigest()
    assert api.get(f"{ARTIFACTS}/{artifact}", token=people["alice"]).content == b"# notes v2\n"
    assert blob_rows(orchestrator) == 1  # the old content went with the switch

    assert api.send("DELETE", f"{ARTIFACTS}/{artifact}", token=people["alice"]).status_code == 204
    assert_problem(api.get(f"{ARTIFACTS}/{artifact}", token=people["alice"]), 404, "artifact not found")
    assert blob_rows(orchestrator) == 0
    two_parts = api.post(
        ARTIFACTS,
        token=people["alice"],
        params={"scope_level": "user"},
        files={"file": ("a.txt", b"a"), "other": ("b.txt", b"b")},
    )
    assert_problem(two_parts, 400)


def test_another_users_artifact_is_404_and_a_grantee_reads_but_cannot_change(
    api: ApiClient, people: dict[str, str], orchestrator: OrchestratorUnderTest
) -> None:
    artifact = upload(api, people["alice"], "secret.txt", b"alice's").json()["artifact_id"]
    bob_id = rows(orchestrator.db, "SELECT id FROM users WHERE handle = 'bob'")[0]["id"]
    for method in ("GET", "PUT", "DELETE"):
        assert_problem(
            api.send(method, f"{ARTIFACTS}/{artifact}", token=people["bob"], data=b"x"), 404, "artifact not found"
        )
    assert_problem(api.get(f"{ARTIFACTS}/{artifact}/metadata", token=people["bob"]), 404, "artifact not found")
    assert_problem(api.get(f"{ARTIFACTS}/{artifact}", token=people["admin"]), 404)  # no admin bypass on user scope
    listed = api.get(
        ARTIFACTS,
        token=people["bob"],
        params={
            "scope_level": "user",
            "user_id": str(rows(orchestrator.db, "SELECT id FROM users WHERE handle = 'alice'")[0]["id"]),
        },
    )
    assert_problem(listed, 403, "access denied")

    assert api.send("PUT", f"{ARTIFACTS}/{artifact}/grants/{bob_id}", token=people["alice"]).status_code == 204
    assert api.send("PUT", f"{ARTIFACTS}/{artifact}/grants/{bob_id}", token=people["alice"]).status_code == 204
    assert api.get(f"{ARTIFACTS}/{artifact}", token=people["bob"]).content == b"alice's"
    assert_problem(api.send("PUT", f"{ARTIFACTS}/{artifact}", token=people["bob"], data=b"x"), 403, "access denied")
    assert_problem(api.send("PUT", f"{ARTIFACTS}/{artifact}/grants/{bob_id}", token=people["bob"]), 403)
    grants = api.get(f"{ARTIFACTS}/{artifact}/grants", token=people["alice"]).json()["grants"]
    assert [g["user_id"] for g in grants] == [str(bob_id)]
    assert api.send("DELETE", f"{ARTIFACTS}/{artifact}/grants/{bob_id}", token=people["alice"]).status_code == 204
    assert_problem(api.get(f"{ARTIFACTS}/{artifact}", token=people["bob"]), 404)


def test_listing_filters_and_pages(api: ApiClient, people: dict[str, str]) -> None:
    for n in range(3):
        assert upload(api, people["alice"], f"page/{n}.txt", b"%d" % n).status_code == 201
    first = api.get(ARTIFACTS, token=people["alice"], params={"scope_level": "user", "limit": 2})
    assert first.status_code == 200, first.text
    assert [a["path"] for a in first.json()["artifacts"]] == ["page/2.txt", "page/1.txt"]
    assert first.json()["next_offset"] == 2
    rest = api.get(ARTIFACTS, token=people["alice"], params={"scope_level": "user", "limit": 2, "offset": 2})
    assert [a["path"] for a in rest.json()["artifacts"]] == ["page/0.txt"] and "next_offset" not in rest.json()
    assert_problem(api.get(ARTIFACTS, token=people["alice"], params={}), 400, "scope_level query parameter required")


class TestLimits:
    @pytest.fixture
    def settings_overrides(self) -> dict[str, Any]:
        return {"artifact_max_bytes": 1000, "artifact_quota_bytes": 1500}

    def test_too_large_and_past_the_quota_are_413_and_leave_nothing(
        self, api: ApiClient, people: dict[str, str], orchestrator: OrchestratorUnderTest
    ) -> None:
        assert_problem(upload(api, people["alice"], "big.bin", b"x" * 1001), 413)
        assert upload(api, people["alice"], "one.bin", b"x" * 1000).status_code == 201
        over = upload(api, people["alice"], "two.bin", b"x" * 600)
        assert_problem(over, 413)
        assert "quota" in over.json()["detail"]
        assert upload(api, people["alice"], "three.bin", b"x" * 500).status_code == 201  # exactly the quota
        assert upload(api, people["bob"], "own.bin", b"x" * 900).status_code == 201  # a quota is per user
        assert blob_rows(orchestrator) == 3
        for bad in ("", "a\\b", "a\x01b", "x" * 1025):
            assert_problem(upload(api, people["alice"], bad, b"x"), 400)


def test_a_multipart_upload_that_fails_midway_is_413_and_closes_what_it_spooled(
    api: ApiClient, people: dict[str, str], orchestrator: OrchestratorUnderTest
) -> None:
    """A file part spooled to disk, then a text field past the form memory limit: nothing stays open or stored."""
    part = 'Content-Disposition: form-data; name="{}"{}\r\n\r\n'
    body = b"".join(
        (
            b"--b\r\n" + part.format("file", '; filename="a.bin"').encode() + b"x" * 600_000,
            b"\r\n--b\r\n" + part.format("note", "").encode() + b"y" * 600_000 + b"\r\n--b--\r\n",
        )
    )
    query = {"scope_level": "user", "path": "spooled.bin"}
    headers = {"Content-Type": "multipart/form-data; boundary=b"}
    assert_problem(api.post(ARTIFACTS, token=people["alice"], params=query, data=body, headers=headers), 413)
    gc.collect()  # an unclosed spool would surface here as pytest's unraisable-exception warning (an error)
    assert blob_rows(orchestrator) == 0
