"""Who calls the orchestrator in the fuzz suite: a user, the admin, a node, an agent, each with a real token."""

from __future__ import annotations

from typing import Any

from harness.api import ApiClient

FUZZ_USER, FUZZ_PASSWORD = "fuzz-user", "fuzz-password-0123"
NODE_SLUG = "fuzz-node"


def capability(slug: str) -> dict[str, Any]:
    """A node_capability_report_v1 of a node on a loopback Worker API URL."""
    return {
        "version": 1,
        "reported_at": "2026-01-01T00:00:00Z",
        "node": {"node_slug": slug, "labels": ["fuzz"]},
        "platform": {"os": "linux", "arch": "amd64"},
        "compute": {"cpu_cores": 2, "ram_mb": 2048},
        "worker_api": {"base_url": "http://127.0.0.1:9"},
    }


class Tokens:
    """Tokens of the fuzz user, the admin, a node and a pm agent of the fuzz user, each made when first needed.

    (argon2 logins are slow.) The agent token is minted by the admin through ``POST /v1/admin/agent-tokens``.
    """

    def __init__(self, url: str, psk: str, admin_password: str) -> None:
        self.url, self.psk, self.admin_password = url, psk, admin_password
        self._tokens: dict[str, str] = {}
        self._user_id: str | None = None

    def _login(self, handle: str, password: str) -> str:
        return str(ApiClient(self.url).login(handle, password, expect=200).json()["access_token"])

    def _make(self, kind: str) -> str:
        if kind == "user":
            return self._login(FUZZ_USER, FUZZ_PASSWORD)
        if kind == "admin":
            return self._login("admin", self.admin_password)
        if kind == "agent":
            body = {"role": "pm", "user_id": self.user_id(), "ttl_seconds": 86_400}
            resp = ApiClient(self.url).post("/v1/admin/agent-tokens", json=body, headers=self.header("admin"))
            assert resp.status_code == 201, resp.text
            return str(resp.json()["token"])
        body = {"psk": self.psk, "capability": capability(NODE_SLUG)}
        resp = ApiClient(self.url).post("/v1/nodes/register", json=body)
        assert resp.status_code == 201, resp.text
        return str(resp.json()["auth"]["node_jwt"])

    def user_id(self) -> str:
        """The fuzz user's id."""
        if self._user_id is None:
            me = ApiClient(self.url).get("/v1/users/me", headers=self.header("user"))
            assert me.status_code == 200, me.text
            self._user_id = str(me.json()["id"])
        return self._user_id

    def header(self, kind: str) -> dict[str, str]:
        """``Authorization`` for ``kind``: "user", "admin", "node", "agent", or none for ""."""
        if not kind:
            return {}
        if kind not in self._tokens:
            self._tokens[kind] = self._make(kind)
        return {"Authorization": f"Bearer {self._tokens[kind]}"}

    def ended(self) -> None:
        """The user's sessions were ended (a logout or a revoke_sessions): log in again when next needed."""
        self._tokens.pop("user", None)
