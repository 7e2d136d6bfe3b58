"""Fixtures: a users file with two users, pointed at by the plugin's variable."""

from __future__ import annotations

from pathlib import Path

import pytest
from cynode_example_auth.directory import ENV_FILE, ENV_USERS, hash_password
from example_users import CAROL_PASSWORD, DAVE_PASSWORD


@pytest.fixture(scope="session")
def hashes() -> dict[str, str]:
    """One argon2id hash per test user, made once (each costs tens of milliseconds)."""
    return {"carol": hash_password(CAROL_PASSWORD), "dave": hash_password(DAVE_PASSWORD)}


@pytest.fixture(autouse=True)
def _no_inherited_config(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(ENV_FILE, raising=False)
    monkeypatch.delenv(ENV_USERS, raising=False)


@pytest.fixture
def users_file(tmp_path: Path, hashes: dict[str, str], monkeypatch: pytest.MonkeyPatch) -> Path:
    """A users file listing carol (with an email) and dave, set as ``CYNODE_EXAMPLE_AUTH_FILE``."""
    path = tmp_path / "users"
    path.write_text(
        f"# handle  argon2id hash  [email]\ncarol {hashes['carol']} carol@example.org\n\ndave {hashes['dave']}\n"
    )
    monkeypatch.setenv(ENV_FILE, str(path))
    return path
