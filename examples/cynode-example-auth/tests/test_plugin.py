"""The plugin as cynode calls it: through a plugin manager built from the installed entry points."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest
from cynode_example_auth.directory import ENV_USERS, SOURCE, DirectoryError, parse_entries
from example_users import CAROL_PASSWORD, DAVE_PASSWORD

from cynode_core.contract import Identity
from cynode_core.plugin_manager import get_plugin_manager, plugin_names


def authenticate(handle: str, password: str, **manager_options: object) -> Identity | None:
    """What core's login does: ask every ``cynode_authenticate`` implementation, first answer wins."""
    pm = get_plugin_manager(**manager_options)  # type: ignore[arg-type]
    return pm.hook.cynode_authenticate(handle=handle, password=password)


def test_a_listed_user_with_the_right_password_is_vouched_for(users_file: Path) -> None:
    assert authenticate("carol", CAROL_PASSWORD) == Identity(
        handle="carol", email="carol@example.org", external_source=SOURCE, external_id="carol"
    )
    identity = authenticate("dave", DAVE_PASSWORD)
    assert identity is not None and identity.email is None and identity.user_id is None


def test_a_wrong_password_or_an_unlisted_handle_defers(users_file: Path) -> None:
    assert authenticate("carol", DAVE_PASSWORD) is None
    assert authenticate("Carol", CAROL_PASSWORD) is None  # handles are case-sensitive
    assert authenticate("admin", "anything") is None  # left to the next plugin (local accounts)


def test_users_can_come_from_the_environment_variable(hashes: dict[str, str], monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(ENV_USERS, f"carol {hashes['carol']} carol@example.org; dave {hashes['dave']}")
    assert authenticate("carol", CAROL_PASSWORD) is not None
    assert authenticate("dave", DAVE_PASSWORD) is not None


def test_an_edited_file_is_read_again_without_a_restart(users_file: Path, hashes: dict[str, str]) -> None:
    pm = get_plugin_manager()
    assert pm.hook.cynode_authenticate(handle="dave", password=DAVE_PASSWORD) is not None
    users_file.write_text(f"carol {hashes['carol']}\n")  # dave removed
    assert pm.hook.cynode_authenticate(handle="dave", password=DAVE_PASSWORD) is None
    assert pm.hook.cynode_authenticate(handle="carol", password=CAROL_PASSWORD) is not None


def test_nothing_configured_means_the_plugin_defers() -> None:
    assert authenticate("carol", CAROL_PASSWORD) is None


@pytest.mark.parametrize(
    "content",
    ["carol not-a-hash\n", "carol\n", "carol {carol} a@b extra\n", "carol {carol}\ncarol {dave}\n"],
    ids=["bad-hash", "no-hash", "too-many-fields", "duplicate"],
)
def test_a_broken_file_fails_closed_and_says_why(
    users_file: Path, hashes: dict[str, str], content: str, caplog: pytest.LogCaptureFixture
) -> None:
    users_file.write_text(content.format(**hashes))
    with caplog.at_level(logging.ERROR, logger="cynode_example_auth.plugin"):
        assert authenticate("carol", CAROL_PASSWORD) is None
    assert "example-auth: users unreadable" in caplog.text


def test_a_missing_file_fails_closed(users_file: Path, caplog: pytest.LogCaptureFixture) -> None:
    users_file.unlink()
    with caplog.at_level(logging.ERROR, logger="cynode_example_auth.plugin"):
        assert authenticate("carol", CAROL_PASSWORD) is None
    assert "No such file" in caplog.text


def test_parse_errors_name_the_source_and_the_entry() -> None:
    with pytest.raises(DirectoryError, match=r"users.txt, entry 2 \(carol\): not an argon2id hash"):
        argon2i = "$argon2i$v=19$m=65536,t=3,p=4$c2FsdHNhbHQ$aGFzaGhhc2hoYXNo"
        parse_entries(f"# comment\ncarol {argon2i}\n", origin="users.txt")


def test_blocking_the_plugin_by_name_turns_it_off(users_file: Path) -> None:
    # What CYNODE_DISABLE_PLUGINS=example-auth does in the orchestrator.
    assert "example-auth" not in plugin_names(get_plugin_manager(disabled=["example-auth"]))
    assert authenticate("carol", CAROL_PASSWORD, disabled=["example-auth"]) is None
